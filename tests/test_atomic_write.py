"""atomic_write(): a file is all old or all new, for readers and after a failure."""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import as_nobody, run_under_strace, write

import atomicswap
from atomicswap import atomic_write


def entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture(params=["O_TMPFILE", "named temporary"])
def temporary(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of making the temporary, for real: the anonymous O_TMPFILE one,
    and the hidden named one used on macOS and filesystems without O_TMPFILE."""
    if request.param == "named temporary":
        monkeypatch.setattr(atomicswap, "_O_TMPFILE", 0)
    elif not atomicswap._O_TMPFILE:
        pytest.skip("no O_TMPFILE on this platform")
    return str(request.param)


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_write_creates_a_file(tmp_path: Path, temporary: str) -> None:
    with atomic_write(tmp_path / "f.txt") as f:
        f.write("hello\n")

    assert (tmp_path / "f.txt").read_text() == "hello\n"
    assert entries(tmp_path) == ["f.txt"]


def test_atomic_write_replaces_a_file_with_a_new_inode(tmp_path: Path, temporary: str) -> None:
    target = write(tmp_path / "f", "old")
    old_inode = target.stat().st_ino

    with atomic_write(target, "wb") as f:
        f.write(b"new")

    assert target.read_bytes() == b"new"
    assert target.stat().st_ino != old_inode
    assert entries(tmp_path) == ["f"]


def test_the_target_keeps_its_old_content_until_the_block_ends(tmp_path: Path, temporary: str) -> None:
    target = write(tmp_path / "f", "old")

    with atomic_write(target) as f:
        f.write("new")
        f.flush()
        assert target.read_text() == "old"

    assert target.read_text() == "new"


def test_the_temporary_lives_in_the_targets_directory(tmp_path: Path, temporary: str) -> None:
    """Never in TMPDIR: on another filesystem the final rename would fail."""
    with atomic_write(tmp_path / "f") as f:
        written = os.fstat(f.fileno())
        during = entries(tmp_path)

    assert written.st_dev == tmp_path.stat().st_dev
    if temporary == "O_TMPFILE":
        assert written.st_nlink == 0  # anonymous: nothing in the directory to leave behind
        assert during == []
    else:
        assert written.st_nlink == 1
        assert len(during) == 1 and re.fullmatch(r"\.f\.[0-9a-f]{12}\.tmp", during[0])
    assert (tmp_path / "f").stat().st_ino == written.st_ino


@pytest.mark.parametrize("mode", ["r", "rb", "rt", "x", "xb", "x+", "wa", "ww", "wbt", "w++", "rw", "q", ""])
def test_atomic_write_rejects_modes_that_do_not_write_or_are_not_opens(tmp_path: Path, mode: str) -> None:
    """Read-only and exclusive modes, and what open() would not take either."""
    with pytest.raises(ValueError, match="mode"):
        atomic_write(tmp_path / "f", mode)  # type: ignore[call-overload]
    assert entries(tmp_path) == []


def test_atomic_write_passes_encoding_and_newline_to_open(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "f", "wt", encoding="utf-16", newline="\r\n") as f:
        f.write("é\n")

    assert (tmp_path / "f").read_bytes() == "é\r\n".encode("utf-16")


def test_atomic_write_rejects_bad_arguments_before_touching_the_disk(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="path should be str"):
        atomic_write(3.5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="perms should be int"):
        atomic_write(tmp_path / "f", perms="644")  # type: ignore[call-overload]
    with pytest.raises(TypeError), atomic_write(tmp_path / "f", closefd=True):  # type: ignore[call-overload]
        pass
    for perms in (-1, 0o10000, 2**40):  # -1 would reach fchmod() as 0o7777
        with pytest.raises(ValueError, match="perms should be a mode from 0 to 0o7777"):
            atomic_write(tmp_path / "f", perms=perms)
    assert entries(tmp_path) == []


def test_an_exception_in_the_block_changes_nothing(tmp_path: Path, temporary: str) -> None:
    target = write(tmp_path / "f", "old")

    with pytest.raises(RuntimeError, match="midway"), atomic_write(target) as f:
        f.write("partial")
        raise RuntimeError("midway")

    assert target.read_text() == "old"
    assert entries(tmp_path) == ["f"]


def test_a_file_closed_in_the_block_is_still_committed(tmp_path: Path, temporary: str) -> None:
    with atomic_write(tmp_path / "f") as f:
        f.write("closed early")
        f.close()

    assert (tmp_path / "f").read_text() == "closed early"
    assert entries(tmp_path) == ["f"]


def test_a_directory_at_the_target_raises_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()

    with pytest.raises(IsADirectoryError), atomic_write(tmp_path / "d"):
        pass

    assert entries(tmp_path) == ["d"] and entries(tmp_path / "d") == []


def test_a_missing_directory_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "nope" / "f"):
        pass


def test_overwrite_false_creates_a_new_file(tmp_path: Path, temporary: str) -> None:
    with atomic_write(tmp_path / "f", overwrite=False) as f:
        f.write("first")

    assert (tmp_path / "f").read_text() == "first"


def test_overwrite_false_refuses_an_existing_file_leaving_no_trace(tmp_path: Path, temporary: str) -> None:
    target = write(tmp_path / "f", "old")

    with pytest.raises(FileExistsError) as raised, atomic_write(target, overwrite=False) as f:
        f.write("new")

    assert raised.value.filename == str(target)
    assert target.read_text() == "old"
    assert entries(tmp_path) == ["f"]


def test_overwrite_false_checks_at_commit_not_at_open(tmp_path: Path, temporary: str) -> None:
    target = tmp_path / "f"

    with pytest.raises(FileExistsError), atomic_write(target, overwrite=False) as f:
        f.write("mine")
        write(target, "theirs")  # someone else creates it meanwhile

    assert target.read_text() == "theirs"
    assert entries(tmp_path) == ["f"]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_new_file_gets_what_open_gives_not_0600(
    tmp_path: Path, temporary: str, umask: None, mask: int, expected: int
) -> None:
    os.umask(mask)
    with atomic_write(tmp_path / "f") as f:
        f.write("x")
    with open(tmp_path / "by-open", "w") as f:
        f.write("x")

    assert mode_of(tmp_path / "f") == mode_of(tmp_path / "by-open") == expected


@pytest.mark.parametrize("mask", [0o022, 0o077])
@pytest.mark.parametrize("existing", [0o640, 0o604, 0o755, 0o400])
def test_a_replaced_file_keeps_its_permission_bits(
    tmp_path: Path, temporary: str, umask: None, mask: int, existing: int
) -> None:
    target = write(tmp_path / "f", "old")
    target.chmod(existing)
    os.umask(mask)

    with atomic_write(target) as f:
        f.write("new")

    assert mode_of(target) == existing


@pytest.mark.parametrize("perms", [0o600, 0o755, 0o444])
def test_perms_sets_the_permission_bits(tmp_path: Path, temporary: str, umask: None, perms: int) -> None:
    write(tmp_path / "old", "old").chmod(0o640)
    os.umask(0o077)

    for name in ("new", "old"):
        with atomic_write(tmp_path / name, perms=perms) as f:
            f.write("x")

    assert mode_of(tmp_path / "new") == mode_of(tmp_path / "old") == perms


def test_a_symlink_is_written_through(tmp_path: Path, temporary: str) -> None:
    (tmp_path / "real").mkdir()
    real = write(tmp_path / "real" / "config", "old")
    real.chmod(0o640)
    link = tmp_path / "config"
    link.symlink_to("real/config")
    (tmp_path / "link-to-link").symlink_to("config")

    with atomic_write(tmp_path / "link-to-link") as f:
        f.write("new")

    assert os.readlink(link) == "real/config" and os.readlink(tmp_path / "link-to-link") == "config"
    assert real.read_text() == "new"
    assert mode_of(real) == 0o640
    assert entries(tmp_path / "real") == ["config"]


def test_a_dangling_symlink_is_written_through_as_open_does(tmp_path: Path, temporary: str) -> None:
    (tmp_path / "link").symlink_to("target")

    with atomic_write(tmp_path / "link") as f:
        f.write("new")

    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "target").read_text() == "new"


def write_new_with_fsync_failing(tmp_path: Path, temporary: str, which: str) -> str:
    """Run atomic_write(tmp_path / "f") in a child whose fsync calls strace
    makes fail with EIO (*which*: "" for all of them, ":when=2" for the
    second only); return what the child printed of the OSError it got."""
    code = "import errno, atomicswap\n"
    if temporary != "O_TMPFILE":
        code += "atomicswap._O_TMPFILE = 0\n"
    code += (
        "try:\n"
        "    with atomicswap.atomic_write('f') as f:\n"
        "        f.write('new')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno], e)\n"
    )
    inject = ("-e", "trace=fsync", "-e", f"inject=fsync:error=EIO{which}")
    result = run_under_strace(code, *inject, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_failed_fsync_of_the_file_leaves_the_target_and_no_temporary(
    tmp_path: Path, temporary: str
) -> None:
    target = write(tmp_path / "f", "old")

    printed = write_new_with_fsync_failing(tmp_path, temporary, "")

    assert printed.startswith("EIO ")
    assert target.read_text() == "old"
    assert entries(tmp_path) == ["f"]


def test_a_failed_fsync_of_the_directory_says_the_content_is_not_yet_durable(
    tmp_path: Path, temporary: str
) -> None:
    target = write(tmp_path / "f", "old")

    printed = write_new_with_fsync_failing(tmp_path, temporary, ":when=2")  # the directory's

    assert printed.startswith("EIO ")
    assert "; the new content is in place, but not yet durable: 'f'" in printed
    assert target.read_text() == "new"
    assert entries(tmp_path) == ["f"]


SYNC_CALLS = "fsync,fdatasync,sync,syncfs,sync_file_range,msync"


def traced_syncs(tmp_path: Path, durable: bool) -> list[str]:
    log = tmp_path.parent / f"{tmp_path.name}.strace"
    result = run_under_strace(
        f"import atomicswap\nwith atomicswap.atomic_write('f', durable={durable}) as f:\n    f.write('x')\n",
        *("-e", f"trace={SYNC_CALLS}"),
        cwd=tmp_path,
        log=log,
    )
    assert result.returncode == 0, result.stderr
    return re.findall(r"^\d+\s+(\w+)\(", log.read_text(), re.MULTILINE)


def test_durable_syncs_the_file_then_the_directory(tmp_path: Path) -> None:
    assert traced_syncs(tmp_path, durable=True) == ["fsync", "fsync"]
    # strace -y names each descriptor's file: first the data, then its directory.
    log = tmp_path.parent / f"{tmp_path.name}.strace"
    run_under_strace(
        "import atomicswap\nwith atomicswap.atomic_write('f') as f:\n    f.write('x')\n",
        *("-y", "-e", "trace=fsync"),
        cwd=tmp_path,
        log=log,
    )
    synced = re.findall(r"fsync\(\d+<([^>]*)>", log.read_text())
    assert len(synced) == 2
    assert synced[0] != str(tmp_path) and synced[0].startswith(str(tmp_path) + "/")
    assert synced[1] == str(tmp_path)


def test_durable_false_makes_no_sync_calls(tmp_path: Path) -> None:
    assert traced_syncs(tmp_path, durable=False) == []
    assert (tmp_path / "f").read_text() == "x"


def test_the_binding_is_made_before_any_temporary_exists() -> None:
    """Binding imports ctypes: done between linking the temporary in and the
    rename, those milliseconds would widen the window a crash leaves it in
    (12 of 200 kills in test_crash did, before)."""
    from conftest import run_python

    result = run_python(
        "import os, tempfile, atomicswap\n"
        "with atomicswap.atomic_write(os.path.join(tempfile.mkdtemp(), 'f')) as f:\n"
        "    print(atomicswap._binding is not None)\n"
    )
    assert result.stdout == "True\n", result.stderr


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_only_regular_files_are_replaced(tmp_path: Path, kind: str) -> None:
    """open() would write to a FIFO or a device; replacing one with a file
    (atomic_write("/dev/null") as root) would be far worse."""
    node = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(node)
    elif os.geteuid() == 0:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null
    else:
        pytest.skip("making a device node needs root")
    before = node.lstat()

    with pytest.raises(OSError, match="not a regular file") as raised, atomic_write(node):
        pass

    assert raised.value.filename == str(node)
    assert (node.lstat().st_mode, node.lstat().st_ino) == (before.st_mode, before.st_ino)
    assert entries(tmp_path) == [kind]


def test_root_keeps_the_owner_and_all_bits_of_the_file_it_replaces(tmp_path: Path, temporary: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    target = write(tmp_path / "f", "old")
    os.chown(target, 65534, 65534)
    target.chmod(0o4750)

    with atomic_write(target) as f:
        f.write("new")

    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o4750)


def test_a_writer_who_cannot_keep_the_owner_drops_setuid_and_setgid() -> None:
    """As uid 65534, emptying root's setuid file in a directory 65534 owns:
    the new file is 65534's, and must not be setuid 65534. (Writing data
    would make the kernel drop the bits itself; an empty file gets none.)"""
    import tempfile

    directory = Path(tempfile.mkdtemp())
    try:
        target = write(directory / "tool", "old")
        target.chmod(0o6755)
        if os.geteuid() == 0:
            os.chown(directory, 65534, 65534)

        def empty() -> dict[str, object]:
            with atomic_write(target):
                pass
            st = target.stat()
            return {"uid": st.st_uid, "mode": stat.S_IMODE(st.st_mode)}

        report = as_nobody(empty) if os.geteuid() == 0 else pytest.skip("needs root to set up")
        assert report == {"uid": 65534, "mode": 0o755}
        assert target.read_text() == ""
    finally:
        import shutil

        shutil.rmtree(directory)


def test_a_name_near_name_max_still_gets_a_temporary(tmp_path: Path, temporary: str) -> None:
    name = "n" * 250

    with atomic_write(tmp_path / name) as f:
        f.write("x")

    assert entries(tmp_path) == [name]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_no_descriptor_is_left_open(tmp_path: Path, temporary: str) -> None:
    before = open_descriptors()
    with atomic_write(tmp_path / "f") as f:
        f.write("x")
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "f") as f:
        raise RuntimeError
    with pytest.raises(FileExistsError), atomic_write(tmp_path / "f", overwrite=False):
        pass
    with pytest.raises(LookupError), atomic_write(tmp_path / "g", encoding="no-such-codec"):
        pass

    assert open_descriptors() == before
    assert entries(tmp_path) == ["f"]


def test_one_atomic_write_cannot_be_entered_twice_at_once(tmp_path: Path) -> None:
    writer = atomic_write(tmp_path / "f")
    with writer as f, pytest.raises(RuntimeError, match="already in use"):
        f.write("outer")
        writer.__enter__()

    assert (tmp_path / "f").read_text() == "outer"
    with writer as f:  # and again afterwards
        f.write("again")
    assert (tmp_path / "f").read_text() == "again"


def test_overwrite_false_treats_a_dangling_symlink_as_existing(tmp_path: Path, temporary: str) -> None:
    """As open(path, "x") does."""
    (tmp_path / "link").symlink_to("target")

    with pytest.raises(FileExistsError), atomic_write(tmp_path / "link", overwrite=False) as f:
        f.write("x")

    assert os.readlink(tmp_path / "link") == "target"
    assert entries(tmp_path) == ["link"]


def test_a_failed_rename_names_the_target_not_the_temporary(tmp_path: Path) -> None:
    result = run_under_strace(
        "import errno, atomicswap\n"
        "try:\n"
        "    with atomicswap.atomic_write('f') as f:\n"
        "        f.write('x')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno], e.filename, e.filename2)\n",
        *("-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:error=EPERM"),
        cwd=tmp_path,
    )
    assert result.stdout == "EPERM f None\n", result.stderr
    assert entries(tmp_path) == []


def test_the_directory_is_held_for_the_whole_write(tmp_path: Path, temporary: str) -> None:
    """The file is made and renamed in the directory that held the target when
    the block began, even if that directory is renamed meanwhile."""
    (tmp_path / "d").mkdir()

    with atomic_write(tmp_path / "d" / "f") as f:
        f.write("new")
        (tmp_path / "d").rename(tmp_path / "moved")
        (tmp_path / "d").mkdir()

    assert (tmp_path / "moved" / "f").read_text() == "new"
    assert entries(tmp_path / "d") == []
    assert entries(tmp_path / "moved") == ["f"]


def test_a_directory_that_cannot_be_read_is_written_into_all_the_same() -> None:
    """A -wx drop box: the directory is held by O_PATH, which needs only search
    permission, and synced through the new file, since it cannot be fsynced."""
    import tempfile

    box = Path(tempfile.mkdtemp())
    try:
        if os.geteuid() == 0:
            os.chown(box, 65534, 65534)
        box.chmod(0o333)

        def write_into_box() -> dict[str, object]:
            with atomic_write(box / "f") as f:
                f.write("x")
            return {"content": (box / "f").read_text()}

        report = as_nobody(write_into_box) if os.geteuid() == 0 else write_into_box()
        assert report == {"content": "x"}
        box.chmod(0o755)
        assert os.listdir(box) == ["f"]
    finally:
        box.chmod(0o755)
        for name in os.listdir(box):
            os.unlink(box / name)
        box.rmdir()


def test_a_block_that_closes_the_files_descriptor_is_refused_leaving_the_file_that_took_its_number(
    tmp_path: Path, temporary: str
) -> None:
    """A helper closes f.fileno() in the block, and the next open() gets that
    number: that other file is neither chmodded nor put at the target."""
    target = write(tmp_path / "config", "old config")
    target.chmod(0o600)
    log_path = write(tmp_path / "unrelated.log", "log line\n")
    log_path.chmod(0o644)

    with pytest.raises(OSError) as raised, atomic_write(target) as f:
        f.write("new config")
        f.flush()
        number = f.fileno()
        os.close(number)
        log = open(log_path, "a")  # noqa: SIM115 (closed below, after the checks)
        assert log.fileno() == number

    try:
        assert raised.value.errno == errno.EBADF
        assert target.read_text() == "old config"
        assert stat.S_IMODE(log_path.stat().st_mode) == 0o644
        assert log_path.read_text() == "log line\n"
        assert entries(tmp_path) == ["config", "unrelated.log"]
    finally:
        with contextlib.suppress(OSError):
            log.close()
        with contextlib.suppress(OSError):
            f.close()  # its number was log's: this only marks the wrapper closed


@pytest.mark.parametrize("mode", ["w", "wb", "a"])
def test_what_the_block_left_in_the_buffer_never_reaches_the_file_that_took_its_number(
    tmp_path: Path, mode: str
) -> None:
    """The same, with data still in the file object's buffer: once the job is
    refused, neither closing that object nor collecting it writes it out."""
    target = write(tmp_path / "config", "old config")
    log_path = write(tmp_path / "unrelated.log", "log line\n")

    with pytest.raises(OSError) as raised, atomic_write(target, mode) as f:  # type: ignore[call-overload]
        f.write(b"meant for config" if "b" in mode else "meant for config")
        number = f.fileno()
        os.close(number)
        log = open(log_path, "a")  # noqa: SIM115 (closed below, after the checks)
        assert log.fileno() == number
    try:
        f.close()
        del f
        gc.collect()
    finally:
        log.close()

    assert raised.value.errno == errno.EBADF
    assert target.read_text() == "old config"
    assert log_path.read_text() == "log line\n"
    assert entries(tmp_path) == ["config", "unrelated.log"]


@pytest.mark.parametrize("temporary_kind", ["anonymous", "named"])
def test_a_block_that_closes_its_descriptor_and_raises_leaves_the_file_that_took_it_alone(
    tmp_path: Path, temporary_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback must neither flush the block's buffered data into that
    file nor close its descriptor, which the program goes on using."""
    if temporary_kind == "named":
        monkeypatch.setattr(atomicswap, "_O_TMPFILE", 0)
    target = write(tmp_path / "config", "old config")
    log_path = write(tmp_path / "unrelated.log", "log line\n")

    with pytest.raises(RuntimeError, match="the block's own"), atomic_write(target) as f:
        f.write("meant for config")
        os.close(f.fileno())
        log = open(log_path, "a")  # noqa: SIM115 (closed below)
        raise RuntimeError("the block's own error")
    try:
        log.write("next line\n")
        log.flush()  # the descriptor is still log's
        f.close()
        del f
        gc.collect()
    finally:
        log.close()

    assert target.read_text() == "old config"
    assert log_path.read_text() == "log line\nnext line\n"
    assert entries(tmp_path) == ["config", "unrelated.log"]


@pytest.mark.parametrize("raises", [False, True])
def test_a_new_file_that_takes_the_closed_descriptor_is_never_taken_for_the_temporary(
    tmp_path: Path, raises: bool
) -> None:
    """An anonymous temporary whose only descriptor the block closes would free
    its inode, and ext4 gives the next new file the same inode number: that
    file, on the same descriptor number, must still not pass for the job's."""
    target = write(tmp_path / "config", "old config")

    with pytest.raises((OSError, RuntimeError)) as raised, atomic_write(target) as f:
        f.write("meant for config")
        os.close(f.fileno())
        other = open(tmp_path / "other.db", "w")  # noqa: SIM115 (closed below)
        other.write("their data\n")
        other.flush()
        assert other.fileno() == f.fileno()
        if raises:
            raise RuntimeError("the block's own error")
    try:
        os.fstat(other.fileno())  # still open: the job did not close it
        f.close()
        del f
        gc.collect()
    finally:
        other.close()

    assert isinstance(raised.value, RuntimeError if raises else OSError)
    assert target.read_text() == "old config"
    assert (tmp_path / "other.db").read_text() == "their data\n"
    assert entries(tmp_path) == ["config", "other.db"]


def test_a_block_that_detaches_its_file_and_raises_keeps_its_exception_and_leaves_nothing(
    tmp_path: Path, temporary: str
) -> None:
    target = write(tmp_path / "data", "old")
    before = open_descriptors()

    with pytest.raises(RuntimeError, match="the block's own"), atomic_write(target) as f:
        assert isinstance(f, io.TextIOWrapper)
        raw = f.detach()  # the documented way to switch a text file to binary
        raw.write(b"new")
        raise RuntimeError("the block's own error")
    with contextlib.suppress(OSError):
        raw.close()

    assert target.read_text() == "old"
    assert entries(tmp_path) == ["data"]
    assert open_descriptors() == before


def test_a_buffer_the_block_detached_never_writes_into_the_file_that_takes_its_number(
    tmp_path: Path, temporary: str
) -> None:
    """The abandoned write's descriptor is closed, and its number is free for
    the next open(): the detached buffer must refuse, not write there."""
    target = write(tmp_path / "data", "old")

    with pytest.raises(RuntimeError), atomic_write(target) as f:
        assert isinstance(f, io.TextIOWrapper)
        buffer = f.detach()
        raise RuntimeError
    with open(tmp_path / "other", "wb"), pytest.raises(ValueError):  # it may take the number
        buffer.write(b"abandoned")
        buffer.flush()

    assert (tmp_path / "other").read_bytes() == b""
    assert target.read_text() == "old"


def test_a_block_that_detaches_its_file_and_returns_leaves_no_temporary_and_no_descriptor(
    tmp_path: Path, temporary: str
) -> None:
    target = write(tmp_path / "data", "old")
    before = open_descriptors()

    with contextlib.suppress(ValueError), atomic_write(target) as f:
        assert isinstance(f, io.TextIOWrapper)
        raw = f.detach()
        raw.write(b"new")
    with contextlib.suppress(OSError):
        raw.close()

    assert entries(tmp_path) == ["data"]
    assert open_descriptors() == before


def test_atomic_write_of_an_empty_path_raises_file_not_found_before_the_block_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ran = []

    with pytest.raises(FileNotFoundError), atomic_write(""):
        ran.append(True)

    assert ran == []
    assert entries(tmp_path) == []


def test_atomic_write_of_a_path_ending_in_a_slash_raises_is_a_directory_before_the_block_runs(
    tmp_path: Path,
) -> None:
    """As open("d/", "w") does, whether d exists or not."""
    (tmp_path / "d").mkdir()
    ran = []

    for path in (f"{tmp_path}/d/", f"{tmp_path}/new/"):
        with pytest.raises(IsADirectoryError), atomic_write(path):
            ran.append(path)

    assert ran == []
    assert entries(tmp_path) == ["d"]
    assert entries(tmp_path / "d") == []


def test_an_unknown_open_keyword_is_a_type_error_before_anything_is_made(tmp_path: Path) -> None:
    """Raised by the call itself: nothing was entered, so no system call was made."""
    with pytest.raises(TypeError, match="'bogus'"):
        atomic_write(tmp_path / "f", bogus=1)  # type: ignore[call-overload]

    assert entries(tmp_path) == []


@pytest.mark.parametrize("links", [1, 40, 41])
def test_a_chain_of_symlinks_is_followed_as_open_follows_it(tmp_path: Path, links: int) -> None:
    """The kernel follows 40 links, and answers ELOOP at the 41st."""
    for job in ("open", "atomic_write"):
        top = tmp_path / job
        top.mkdir()
        write(top / "file", "old")
        for n in range(links):
            os.symlink("file" if n == 0 else f"link{n - 1}", top / f"link{n}")
        path = top / f"link{links - 1}"
        try:
            with open(path, "w") if job == "open" else atomic_write(path) as f:
                f.write("new")
            outcome = "written"
        except OSError as e:
            outcome = errno.errorcode[e.errno or 0]
        assert (outcome, (top / "file").read_text()) == (
            ("written", "new") if links <= 40 else ("ELOOP", "old")
        ), job
        assert (top / "link0").is_symlink()
