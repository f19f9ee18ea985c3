"""atomic_write()'s append and update modes, write_bytes() and write_text().

Appends and edits are transactions: the file starts as a copy of the old one,
and readers, and a crash, see the old file or the whole new one. The copy
shares the old file's blocks where the filesystem can: that is measured on
xfs and btrfs images loop-mounted from /dev/shm (root only), by the free
space a copy of a large file costs.
"""

from __future__ import annotations

import array
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import inject_at_call_on, run_python, run_under_strace, write

from atomicswap import atomic_write, write_bytes, write_text


def test_append_starts_from_the_old_content_at_its_end(tmp_path: Path) -> None:
    target = write(tmp_path / "log", "one\n")
    inode = target.stat().st_ino

    with atomic_write(target, "a") as f:
        assert f.tell() == len("one\n")
        f.write("two\n")
        f.flush()
        assert target.read_text() == "one\n"  # readers see the old file until the end

    assert target.read_text() == "one\ntwo\n"
    assert target.stat().st_ino != inode
    assert os.listdir(tmp_path) == ["log"]


def test_append_to_a_missing_file_starts_empty(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "log", "ab") as f:
        f.write(b"first\n")

    assert (tmp_path / "log").read_bytes() == b"first\n"


def test_an_append_that_fails_leaves_the_old_file(tmp_path: Path) -> None:
    target = write(tmp_path / "log", "one\n")

    with pytest.raises(RuntimeError), atomic_write(target, "a") as f:
        f.write("half")
        raise RuntimeError

    assert target.read_text() == "one\n"
    assert os.listdir(tmp_path) == ["log"]


def test_update_reads_and_rewrites_the_old_content_from_its_start(tmp_path: Path) -> None:
    target = write(tmp_path / "counter", "41 apples")

    with atomic_write(target, "r+") as f:
        count = int(f.read().split()[0])
        f.seek(0)
        f.write(str(count + 1))

    assert target.read_text() == "42 apples"


def test_update_of_a_missing_file_is_file_not_found_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised, atomic_write(tmp_path / "missing", "rb+"):
        pass

    assert raised.value.filename == str(tmp_path / "missing")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mode", ["w+", "wb+", "a+", "ab+", "r+b", "+r", "at", "ba"])
def test_every_spelling_of_a_writing_mode_reads_back_what_it_holds(tmp_path: Path, mode: str) -> None:
    target = write(tmp_path / "f", "old")
    binary = "b" in mode
    data = b"new" if binary else "new"

    with atomic_write(target, mode) as f:  # type: ignore[call-overload]
        f.write(data)
        if "+" in mode:
            f.seek(0)
            held = f.read()

    expected = {"w": "new", "a": "oldnew", "r": "new"}[next(c for c in mode if c in "war")]
    assert target.read_text() == expected
    if "+" in mode:
        assert held == (expected.encode() if binary else expected)


@pytest.mark.parametrize("mode", ["a", "r+"])
def test_append_and_update_refuse_overwrite_false(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ValueError, match="overwrite=False"):
        atomic_write(tmp_path / "f", mode, overwrite=False)  # type: ignore[call-overload]


def test_append_keeps_the_mode_owner_and_attributes_like_any_write(tmp_path: Path) -> None:
    target = write(tmp_path / "log", "one\n")
    target.chmod(0o640)
    os.setxattr(target, "user.origin", b"kept")

    with atomic_write(target, "a") as f:
        f.write("two\n")

    assert target.stat().st_mode & 0o777 == 0o640
    assert os.getxattr(target, "user.origin") == b"kept"


def test_write_bytes_takes_any_bytes_like_object_and_returns_its_size(tmp_path: Path) -> None:
    numbers = array.array("i", [1, 2, 3])

    assert write_bytes(tmp_path / "a", b"abc") == 3
    assert write_bytes(tmp_path / "b", memoryview(b"abcdef")[2:]) == 4
    assert write_bytes(tmp_path / "c", numbers) == numbers.itemsize * 3
    assert write_bytes(tmp_path / "d", bytearray(b"xy"), perms=0o600) == 2

    assert (tmp_path / "b").read_bytes() == b"cdef"
    assert (tmp_path / "c").read_bytes() == numbers.tobytes()
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o600


def test_write_text_encodes_and_returns_the_characters_written(tmp_path: Path) -> None:
    assert write_text(tmp_path / "f", "é\n", encoding="utf-16", newline="\r\n") == 2
    assert (tmp_path / "f").read_bytes() == "é\r\n".encode("utf-16")


def test_one_shot_writes_refuse_the_wrong_data_before_touching_the_disk(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_bytes(tmp_path / "f", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text should be str"):
        write_text(tmp_path / "f", b"bytes")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_one_shot_writes_keep_overwrite_false(tmp_path: Path) -> None:
    write(tmp_path / "f", "old")

    with pytest.raises(FileExistsError):
        write_text(tmp_path / "f", "new", overwrite=False)

    assert (tmp_path / "f").read_text() == "old"


def test_a_replaced_file_is_a_new_inode_so_other_hard_links_keep_the_old_content(tmp_path: Path) -> None:
    target = write(tmp_path / "f", "old")
    os.link(target, tmp_path / "other-name")

    write_text(target, "new")

    assert (target.read_text(), (tmp_path / "other-name").read_text()) == ("new", "old")


# ---- The copy: shared blocks where the filesystem can ----------------------------

SIZE = 64 << 20  # large enough that a real copy shows in the free space


@pytest.fixture(params=["xfs", "btrfs", "ext4"])
def filesystem(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """A fresh filesystem in a sparse image on /dev/shm, loop-mounted."""
    kind = str(request.param)
    if os.geteuid() != 0:
        pytest.skip("loop-mounting an image needs root")
    if shutil.which(f"mkfs.{kind}") is None:
        pytest.skip(f"mkfs.{kind} is not installed")
    scratch = Path(tempfile.mkdtemp(dir="/dev/shm"))
    image, point = scratch / "image", scratch / "mnt"
    point.mkdir()
    try:
        with open(image, "wb") as f:
            f.truncate(320 << 20)  # mkfs.xfs wants 300 MB
        subprocess.run([f"mkfs.{kind}", "-q", *(["-F"] if kind == "ext4" else []), str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(point)], check=True)
        try:
            yield kind, point
        finally:
            subprocess.run(["umount", str(point)], check=True)
    finally:
        shutil.rmtree(scratch)


def shared_bytes(path: Path) -> int:
    """How many bytes of *path* sit in extents it shares with another file,
    from FIEMAP (filefrag -v), in the filesystem's blocks."""
    report = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True, check=True).stdout
    block = int(report.split("blocksize of ")[1].split()[0]) if "blocksize of " in report else 4096
    shared = 0
    for line in report.splitlines():
        fields = line.replace(":", " ").replace("..", " ").split()
        if "shared" in line and fields and fields[0].isdigit():
            shared += int(fields[5]) * block  # ext, logical start, end, physical start, end, length
    return shared


def test_an_append_shares_the_old_files_blocks_where_the_filesystem_can(filesystem: tuple[str, Path]) -> None:
    """A hard link keeps the old file, so that what the new one shares with it shows."""
    kind, point = filesystem
    target = point / "big"
    with open(target, "wb") as f:
        f.write(os.urandom(1 << 20) * (SIZE >> 20))
    os.link(target, point / "old")
    os.sync()

    with atomic_write(target, "ab") as f:
        f.write(b"one more line\n")

    assert target.stat().st_size == SIZE + len(b"one more line\n")
    assert target.read_bytes()[:SIZE] == (point / "old").read_bytes()
    shared = shared_bytes(target)
    if kind == "ext4":  # no reflink on ext4: a real copy
        assert shared == 0
    else:
        assert shared >= SIZE * 0.9, shared


def test_where_blocks_cannot_be_shared_the_kernel_copies(tmp_path: Path) -> None:
    """On ext4 FICLONE fails and copy_file_range() does the copy; PyPy has no
    os.copy_file_range and reads and writes."""
    write(tmp_path / "log", "one\n" * 1000)
    log = tmp_path.parent / f"{tmp_path.name}.strace"

    result = run_under_strace(
        "import atomicswap\nwith atomicswap.atomic_write('log', 'a') as f:\n    f.write('two\\n')\n",
        "-e",
        "trace=ioctl,copy_file_range",
        cwd=tmp_path,
        log=log,
    )

    assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert "FICLONE" in calls
    assert ("copy_file_range(" in calls) == hasattr(os, "copy_file_range")
    assert (tmp_path / "log").read_text() == "one\n" * 1000 + "two\n"


# ---- Sparse files and btrfs No_COW files --------------------------------------

HOLEY = 64 << 20
PIECES = {0: b"head", 20 << 20: b"middle" * 1000, 40 << 20: b"x" * 8192}  # then a hole to the end


def make_sparse(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(HOLEY)
        for offset, data in PIECES.items():
            f.seek(offset)
            f.write(data)


def assert_same_data(path: Path, extra: bytes) -> None:
    with open(path, "rb") as f:
        content = f.read()
    assert len(content) == HOLEY + len(extra)
    expected = bytearray(HOLEY)
    for offset, data in PIECES.items():
        expected[offset : offset + len(data)] = data
    assert content == bytes(expected) + extra


@pytest.mark.parametrize("where", ["tmp_path", "/dev/shm"])
def test_a_sparse_file_keeps_its_holes_where_blocks_cannot_be_shared(where: str, tmp_path: Path) -> None:
    """ext4 (the tests' own filesystem here) and tmpfs have no reflink: only the
    data is copied, and the holes stay holes, as cp --sparse=auto does."""
    directory = tmp_path if where == "tmp_path" else Path(tempfile.mkdtemp(dir=where))
    try:
        target = directory / "disk.img"
        make_sparse(target)
        allocated = target.stat().st_blocks * 512

        with atomic_write(target, "ab") as f:
            f.write(b"tail")

        assert_same_data(target, b"tail")
        assert target.stat().st_blocks * 512 <= allocated + (64 << 10), (allocated, target.stat().st_blocks)
    finally:
        if directory != tmp_path:
            shutil.rmtree(directory)


def test_a_sparse_file_larger_than_the_free_space_can_still_be_appended_to(tmp_path: Path) -> None:
    """A 1 GiB sparse file on an 8 MiB tmpfs: open(p, "ab") can append to it,
    and so must atomic_write(), which a copy of its holes would fill."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    point = tmp_path / "small"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "small", str(point)], check=True, timeout=30)
    try:
        target = point / "core"
        with open(target, "wb") as f:
            f.truncate(1 << 30)
            f.write(b"start")

        with atomic_write(target, "ab") as f:
            f.write(b"end")

        with open(target, "rb") as f:
            assert f.read(5) == b"start"
            f.seek((1 << 30) - 5)
            assert f.read() == bytes(5) + b"end"
        assert os.listdir(point) == ["core"]
    finally:
        subprocess.run(["umount", str(point)], check=True, timeout=30)


@pytest.mark.parametrize(
    ("syscall", "line"),
    [("lseek", "SEEK_DATA"), ("lseek", "SEEK_HOLE"), ("ftruncate", r"^(?!.*/disk\.img>)")],
)
def test_a_failing_sparse_copy_leaves_the_file_as_it_was(tmp_path: Path, syscall: str, line: str) -> None:
    # The script makes the file: the copy of tmp_path that finds the call would fill its holes.
    code = (
        "import atomicswap\n"
        f"with open('disk.img', 'wb') as f:\n"
        f"    f.truncate({HOLEY})\n"
        + "".join(f"    f.seek({offset})\n    f.write({data!r})\n" for offset, data in PIECES.items())
        + "try:\n"
        "    with atomicswap.atomic_write('disk.img', 'ab') as f:\n"
        "        f.write(b'tail')\n"
        "except OSError as e:\n"
        "    print(e.errno, e.filename, e)\n"
    )

    result = inject_at_call_on(code, syscall, "error=EIO", line, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("5 disk.img "), result.stdout
    assert "nothing was changed" in result.stdout
    assert_same_data(tmp_path / "disk.img", b"")
    assert os.listdir(tmp_path) == ["disk.img"]


@pytest.mark.parametrize("whence", ["SEEK_DATA", "SEEK_HOLE"])
def test_a_sparse_file_truncated_during_the_copy_is_copied_as_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whence: str
) -> None:
    """logrotate's copytruncate empties the log as an append looks for its
    holes: the copy is of what is there (nothing), not an error (ENXIO) nor
    zeros up to the old size. The truncation is made to land just before the
    chosen lseek() call, by a wrapper that then makes the real call."""
    target = tmp_path / "app.log"
    make_sparse(target)
    real_lseek, numbers = os.lseek, {"SEEK_DATA": 3, "SEEK_HOLE": 4}
    truncated: list[int] = []

    def lseek(fd: int, position: int, how: int) -> int:
        if how == numbers[whence] and not truncated:
            os.truncate(target, 0)
            truncated.append(position)
        return real_lseek(fd, position, how)

    monkeypatch.setattr(os, "lseek", lseek)
    with atomic_write(target, "ab") as f:
        f.write(b"after rotation\n")
    monkeypatch.undo()

    assert truncated
    assert target.read_bytes() == b"after rotation\n"


@pytest.mark.parametrize("filesystem", ["btrfs"], indirect=True)
def test_a_btrfs_no_cow_file_stays_no_cow_and_shares_its_blocks(filesystem: tuple[str, Path]) -> None:
    """btrfs clones only between two No_COW files or two ordinary ones: the
    copy of a chattr +C file (a database, a VM image) is made No_COW first."""
    _, point = filesystem
    target = point / "db"
    target.touch()
    subprocess.run(["chattr", "+C", str(target)], check=True)
    with open(target, "ab") as f:
        f.write(os.urandom(1 << 20) * 16)
    os.link(target, point / "old")
    os.sync()

    with atomic_write(target, "ab") as f:
        f.write(b"row\n")

    attributes = subprocess.run(["lsattr", str(target)], capture_output=True, text=True, check=True).stdout
    assert "C" in attributes.split()[0], attributes
    assert target.read_bytes() == (point / "old").read_bytes() + b"row\n"
    assert shared_bytes(target) >= (16 << 20) * 0.9


def test_append_mode_writes_at_the_end_after_a_seek_as_open_does(tmp_path: Path) -> None:
    target = write(tmp_path / "log", "line1\nline2\n")

    with atomic_write(target, "a") as f:
        f.seek(0)
        f.write("X")

    assert target.read_text() == "line1\nline2\nX"


def test_the_modules_a_copy_needs_are_loaded_before_any_temporary_exists() -> None:
    """A writer that cannot read the standard library (uid 65534 and a Python
    under /root) must not fail halfway, between two of the job's calls."""
    result = run_python(
        "import sys, atomicswap\natomicswap._bind_early('')\nprint('fcntl' in sys.modules)\n", flags=("-S",)
    )

    assert result.stdout == "True\n", result.stderr


@pytest.mark.parametrize("filesystem", ["btrfs"], indirect=True)
def test_a_file_in_a_directory_made_no_cow_later_keeps_its_blocks_and_its_place(
    filesystem: tuple[str, Path],
) -> None:
    """A file written while its directory compressed (btrfs.compression set
    on it), then the directory made No_COW: a new file there is No_COW, which
    cannot take that attribute (EINVAL, skipped as a refusal) nor clone an
    ordinary file (so the copy is made ordinary again, as the old file is)."""
    _, point = filesystem
    directory = point / "data"
    directory.mkdir()
    subprocess.run(["btrfs", "property", "set", str(directory), "compression", "zstd"], check=True)
    target = directory / "table"
    target.write_bytes(os.urandom(1 << 20) * 16)
    assert "btrfs.compression" in os.listxattr(target)
    subprocess.run(["btrfs", "property", "set", str(directory), "compression", ""], check=True)
    subprocess.run(["chattr", "+C", str(directory)], check=True)
    os.link(target, point / "old")
    os.sync()

    with atomic_write(target, "ab") as f:
        f.write(b"row\n")

    attributes = subprocess.run(["lsattr", str(target)], capture_output=True, text=True, check=True).stdout
    assert "C" not in attributes.split()[0], attributes
    assert target.read_bytes() == (point / "old").read_bytes() + b"row\n"
    assert shared_bytes(target) >= (16 << 20) * 0.9

    with atomic_write(target, "wb") as f:  # a new No_COW file, as the directory makes them
        f.write(b"rewritten")

    assert target.read_bytes() == b"rewritten"
    assert "btrfs.compression" not in os.listxattr(target)
