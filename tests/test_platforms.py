"""Every platform gets every job it can do atomically, and ENOTSUP only for
what it cannot.

FreeBSD and macOS are not here: their bindings are tested through a fake C
library that records what it receives and answers with their errnos, while
the jobs' fallbacks (link and unlink, named temporaries, per-file fsync) run
for real on this machine's filesystem. The portable path of other POSIX
systems runs for real here with sys.platform set to theirs. Windows is
simulated (tests/winsim.py): its os, on this filesystem.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, run_python, run_under_strace, write

import atomicswap
from atomicswap import atomic_dir, atomic_write, rename_noreplace, replace, swap, symlink


class FakeLibc:
    """Stands in for a C library that cannot be loaded here: records the
    library opened, the symbols looked up and every call's arguments. It has
    only the symbols in *symbols*; a call whose flags are in *refuse* fails
    with that errno, as a filesystem without the flag answers; any other call
    does nothing and succeeds (the fake renames nothing)."""

    def __init__(self, symbols: tuple[str, ...], refuse: dict[int, int] | None = None) -> None:
        self.symbols, self.refuse = symbols, refuse or {}
        self.opened: list[object] = []
        self.looked_up: list[str] = []
        self.calls: list[tuple[object, ...]] = []
        self.restype: object = None

    def open(self, ctypes_module: object, name: object) -> FakeLibc:
        self.opened.append(name)
        return self

    def __getitem__(self, name: str) -> FakeLibc:
        self.looked_up.append(name)
        if name not in self.symbols:
            raise AttributeError(name)
        return self

    def __call__(self, *args: object) -> int:
        self.calls.append(args)
        flags = args[-1]
        if flags in self.refuse:
            ctypes.set_errno(self.refuse[flags])
            return -1
        return 0


@pytest.fixture
def portable(monkeypatch: pytest.MonkeyPatch, fresh_binding: None) -> Iterator[None]:
    """What a POSIX system without an exchange has: no O_TMPFILE, no syncfs()."""
    monkeypatch.setattr(atomicswap, "_O_TMPFILE", 0)
    yield


def platform(monkeypatch: pytest.MonkeyPatch, name: str, libc: FakeLibc | None = None) -> None:
    monkeypatch.setattr(sys, "platform", name)
    if libc is not None:
        monkeypatch.setattr(atomicswap, "_open_libc", libc.open)


# ---- FreeBSD 15.1 and later: renameat2() in libc.so.7 ----------------------------


def test_freebsd_swap_calls_renameat2_with_at_rename_exchange(
    monkeypatch: pytest.MonkeyPatch, portable: None
) -> None:
    libc = FakeLibc(symbols=("renameat2",))
    platform(monkeypatch, "freebsd15", libc)

    swap("a", b"b")
    rename_noreplace("c", "d", src_dir_fd=3, dst_dir_fd=4)

    assert libc.opened == ["libc.so.7"]
    assert libc.looked_up == ["renameat2"]
    # AT_FDCWD is -100 on FreeBSD too; AT_RENAME_EXCHANGE 0x2, AT_RENAME_NOREPLACE 0x1.
    assert libc.calls == [(-100, b"a", -100, b"b", 0x2), (3, b"c", 4, b"d", 0x1)]


def test_freebsd_rename_noreplace_falls_back_where_the_filesystem_answers_eopnotsupp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portable: None
) -> None:
    """The flag is refused (as by a filesystem without it), so link() and unlink() run, for real."""
    libc = FakeLibc(symbols=("renameat2",), refuse={0x1: errno.EOPNOTSUPP})
    platform(monkeypatch, "freebsd15", libc)
    write(tmp_path / "src", "new")

    rename_noreplace(tmp_path / "src", tmp_path / "dst")

    assert os.listdir(tmp_path) == ["dst"]
    assert (tmp_path / "dst").read_text() == "new"
    assert libc.calls[-1][-1] == 0x1


def test_freebsd_before_15_1_swap_says_what_is_needed_and_the_jobs_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portable: None
) -> None:
    libc = FakeLibc(symbols=())
    platform(monkeypatch, "freebsd14", libc)
    write(tmp_path / "a", "a")
    write(tmp_path / "b", "b")

    with pytest.raises(OSError) as raised:
        swap(tmp_path / "a", tmp_path / "b")
    with atomic_write(tmp_path / "a") as f:
        f.write("new a")
    rename_noreplace(tmp_path / "b", tmp_path / "c")

    assert raised.value.errno == errno.ENOTSUP
    assert "FreeBSD 15.1 or later is needed" in str(raised.value)
    assert sorted(os.listdir(tmp_path)) == ["a", "c"]
    assert (tmp_path / "a").read_text() == "new a"
    assert libc.opened == ["libc.so.7"]  # once: the missing function is remembered


# ---- macOS: renameatx_np() in libSystem -------------------------------------------


def test_macos_rename_noreplace_falls_back_where_the_filesystem_answers_enotsup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portable: None
) -> None:
    """RENAME_EXCL refused with ENOTSUP (as by a filesystem without it): link() and unlink(), for real."""
    libc = FakeLibc(symbols=("renameatx_np",), refuse={0x4: errno.ENOTSUP})
    platform(monkeypatch, "darwin", libc)
    write(tmp_path / "src", "new")

    rename_noreplace(tmp_path / "src", tmp_path / "dst")

    assert os.listdir(tmp_path) == ["dst"]
    assert libc.calls[-1][-1] == 0x4  # RENAME_EXCL


def test_macos_before_10_12_swap_says_what_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portable: None
) -> None:
    platform(monkeypatch, "darwin", FakeLibc(symbols=()))

    with pytest.raises(OSError) as raised:
        swap(tmp_path / "a", tmp_path / "b")

    assert raised.value.errno == errno.ENOTSUP
    assert "macOS 10.12 or later is needed" in str(raised.value)


# ---- Other POSIX systems: the portable path, for real ---------------------------


@pytest.fixture
def openbsd(monkeypatch: pytest.MonkeyPatch, portable: None) -> None:
    opened: list[object] = []
    platform(monkeypatch, "openbsd7")
    monkeypatch.setattr(atomicswap, "_open_libc", lambda ctypes_module, name: opened.append(name))


def test_other_posix_swap_raises_enotsup_naming_the_platform(tmp_path: Path, openbsd: None) -> None:
    write(tmp_path / "a", "a")
    write(tmp_path / "b", "b")

    with pytest.raises(OSError) as raised:
        swap(tmp_path / "a", tmp_path / "b")

    assert raised.value.errno == errno.ENOTSUP
    assert "'openbsd7' has no atomic exchange" in str(raised.value)
    assert (raised.value.filename, raised.value.filename2) == (str(tmp_path / "a"), str(tmp_path / "b"))
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("a", "b")


def test_other_posix_atomic_write_replaces_and_creates_through_a_named_temporary(
    tmp_path: Path, openbsd: None
) -> None:
    write(tmp_path / "f", "old")

    with atomic_write(tmp_path / "f") as f:
        f.write("new")
    with atomic_write(tmp_path / "g", overwrite=False) as f:
        f.write("g")
    with pytest.raises(FileExistsError), atomic_write(tmp_path / "g", overwrite=False) as f:
        f.write("again")

    assert sorted(os.listdir(tmp_path)) == ["f", "g"]
    assert ((tmp_path / "f").read_text(), (tmp_path / "g").read_text()) == ("new", "g")


def test_other_posix_replace_does_what_a_rename_can(tmp_path: Path, openbsd: None) -> None:
    write(tmp_path / "file", "new")
    write(tmp_path / "old-file", "old")
    (tmp_path / "dir").mkdir()
    write(tmp_path / "dir" / "inside", "new")
    (tmp_path / "empty").mkdir()

    replace(tmp_path / "file", tmp_path / "old-file")
    replace(tmp_path / "dir", tmp_path / "empty")

    assert sorted(os.listdir(tmp_path)) == ["empty", "old-file"]
    assert (tmp_path / "empty" / "inside").read_text() == "new"


def test_other_posix_replace_of_a_non_empty_directory_is_enotsup_and_changes_nothing(
    tmp_path: Path, openbsd: None
) -> None:
    for name in ("new", "old"):
        (tmp_path / name).mkdir()
        write(tmp_path / name / "inside", name)

    with pytest.raises(OSError) as raised:
        replace(tmp_path / "new", tmp_path / "old")

    assert raised.value.errno == errno.ENOTSUP
    assert "only an atomic exchange could replace what is there" in str(raised.value)
    assert "nothing was changed" in str(raised.value)
    assert [(tmp_path / name / "inside").read_text() for name in ("new", "old")] == ["new", "old"]


def test_other_posix_rename_noreplace_moves_files_by_link_and_refuses_directories(
    tmp_path: Path, openbsd: None
) -> None:
    write(tmp_path / "src", "src")
    (tmp_path / "dir").mkdir()

    rename_noreplace(tmp_path / "src", tmp_path / "dst")
    with pytest.raises(OSError) as raised:
        rename_noreplace(tmp_path / "dir", tmp_path / "moved")

    assert raised.value.errno == errno.ENOTSUP
    assert sorted(os.listdir(tmp_path)) == ["dir", "dst"]


def test_other_posix_atomic_dir_publishes_at_a_free_path_and_over_an_empty_directory(
    tmp_path: Path, openbsd: None
) -> None:
    with atomic_dir(tmp_path / "site") as staging:
        write(staging / "v", "1")
    with atomic_dir(tmp_path / "new", overwrite=False) as staging:
        write(staging / "v", "1")
    (tmp_path / "empty").mkdir()
    with atomic_dir(tmp_path / "empty") as staging:
        write(staging / "v", "1")

    assert sorted(os.listdir(tmp_path)) == ["empty", "new", "site"]
    assert all((tmp_path / name / "v").read_text() == "1" for name in ("empty", "new", "site"))


def test_other_posix_atomic_dir_over_a_non_empty_tree_is_enotsup_before_anything_is_made(
    tmp_path: Path, openbsd: None
) -> None:
    (tmp_path / "site").mkdir()
    write(tmp_path / "site" / "old", "old")

    with pytest.raises(OSError) as raised, atomic_dir(tmp_path / "site"):
        pytest.fail("the block must not run")

    assert raised.value.errno == errno.ENOTSUP
    assert os.listdir(tmp_path) == ["site"]
    assert os.listdir(tmp_path / "site") == ["old"]


def test_other_posix_symlink_repoints_through_a_rename(tmp_path: Path, openbsd: None) -> None:
    (tmp_path / "current").symlink_to("old")

    symlink("new", tmp_path / "current")

    assert os.readlink(tmp_path / "current") == "new"
    assert os.listdir(tmp_path) == ["current"]


def test_other_posix_durable_atomic_dir_fsyncs_file_by_file(tmp_path: Path) -> None:
    """No syncfs() there: every staged file and directory is fsynced."""
    log = tmp_path.parent / f"{tmp_path.name}.strace"
    result = run_under_strace(
        "import sys, atomicswap\nsys.platform = 'openbsd7'\natomicswap._bind_early('')\n"
        "with atomicswap.atomic_dir('site') as s:\n    (s / 'f').write_text('x')\n",
        "-e",
        "trace=fsync,syncfs",
        cwd=tmp_path,
        log=log,
    )

    assert result.returncode == 0, result.stderr
    calls = [line.split("(")[0].split()[-1] for line in log.read_text().splitlines() if "(" in line]
    assert calls == ["fsync", "fsync", "fsync"]  # the file, the staging directory, the parent


def test_the_portable_path_imports_no_ctypes(tmp_path: Path) -> None:
    result = run_python(
        "import sys, json\nsys.platform = 'openbsd7'\nimport atomicswap\n"
        "with atomicswap.atomic_write('f') as f:\n    f.write('x')\n"
        "atomicswap.replace('f', 'g')\n"
        "try:\n    atomicswap.swap('g', 'f')\nexcept OSError as e:\n    print(e.errno)\n"
        "print('ctypes' in sys.modules)\n",
        cwd=tmp_path,
    )

    assert result.stdout == f"{errno.ENOTSUP}\nFalse\n", result.stderr


# ---- Linux without renameat2 (before 3.15, WSL1, sandboxes) ----------------------

ENOSYS_RENAMEAT2 = ("-e", "trace=renameat2", "-e", "inject=renameat2:error=ENOSYS")


def test_through_syscall_a_kernel_without_renameat2_is_named_as_such(tmp_path: Path) -> None:
    """A C library without renameat2() (glibc before 2.28, musl before 1.2.5)
    is reached through syscall(), where the kernel's own ENOSYS arrives."""
    write(tmp_path / "a", "a")
    write(tmp_path / "b", "b")
    result = run_under_strace(
        "import ctypes, atomicswap\n"
        "class Libc(ctypes.CDLL):\n"
        "    def __getitem__(self, name):\n"
        "        if name == 'renameat2':\n"
        "            raise AttributeError(name)\n"
        "        return super().__getitem__(name)\n"
        "atomicswap._open_libc = lambda ctypes, name: Libc(name, use_errno=True)\n"
        "try:\n    atomicswap.swap('a', 'b')\nexcept OSError as e:\n    print(e)\n",
        *ENOSYS_RENAMEAT2,
        cwd=tmp_path,
    )

    assert result.stdout == (
        "[Errno 38] Function not implemented (the kernel has no renameat2;"
        " Linux 3.15 or later is needed): 'a' -> 'b'\n"
    ), result.stderr


def test_a_kernel_without_renameat2_still_writes_replaces_and_renames_without_replacing(
    tmp_path: Path,
) -> None:
    write(tmp_path / "f", "old")
    write(tmp_path / "src", "src")
    result = run_under_strace(
        "import atomicswap\n"
        "with atomicswap.atomic_write('f') as f:\n    f.write('new')\n"
        "atomicswap.rename_noreplace('src', 'dst')\n"
        "with atomicswap.atomic_dir('site', overwrite=False) as s:\n    (s / 'v').write_text('1')\n"
        "try:\n    atomicswap.swap('f', 'dst')\nexcept OSError as e:\n    print(e)\n",
        *ENOSYS_RENAMEAT2,
        cwd=tmp_path,
    )

    # glibc answers EINVAL for a kernel's ENOSYS, as the kernel answers an unknown flag.
    assert result.stdout.startswith(f"[Errno {errno.EINVAL}] Invalid argument (exchanging"), result.stderr
    assert "kernel (Linux before 3.15, WSL1)" in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["dst", "f", "site"]
    assert (tmp_path / "f").read_text() == "new"


# ---- Windows, simulated -----------------------------------------------------------

WINDOWS = """
import json, os, sys
sys.path.insert(0, {tests!r})
import winsim
winsim.simulate()
import atomicswap
results = {{}}

def attempt(name, action):
    try:
        action()
        results[name] = "ok"
    except OSError as e:
        results[name] = [e.errno, os.fsdecode(e.filename or ""), str(e)]

{body}
results["ctypes imported"] = "ctypes" in sys.modules and sys.modules["ctypes"] is not None
print(json.dumps(results))
"""


def on_windows(tmp_path: Path, body: str) -> dict[str, object]:
    result = run_python(WINDOWS.format(tests=str(ROOT / "tests"), body=body), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    assert report.pop("ctypes imported") is False
    return report


def test_windows_atomic_write_replaces_and_creates_with_fsync_and_no_directory_sync(tmp_path: Path) -> None:
    """The simulated os cannot open a directory: a directory fsync would fail the job."""
    write(tmp_path / "f", "old")

    report = on_windows(
        tmp_path,
        "def write(path, **options):\n"
        "    with atomicswap.atomic_write(path, **options) as f:\n"
        "        f.write('new\\n')\n"
        "attempt('replace', lambda: write('f'))\n"
        "attempt('create', lambda: write('g', perms=0o444))\n"
        "attempt('no clobber', lambda: write('g', overwrite=False))\n"
        "attempt('new, no clobber', lambda: write('h', overwrite=False))\n",
    )

    assert report["replace"] == report["create"] == report["new, no clobber"] == "ok"
    assert report["no clobber"][:2] == [errno.EEXIST, "g"]  # type: ignore[index]
    assert sorted(os.listdir(tmp_path)) == ["f", "g", "h"]
    assert (tmp_path / "f").read_bytes() == b"new\n"  # O_BINARY: no newline translation
    assert (tmp_path / "g").stat().st_mode & 0o777 == 0o444  # chmod by name: no fchmod


def test_windows_replace_does_files_and_refuses_directories_with_enotsup(tmp_path: Path) -> None:
    write(tmp_path / "a", "new")
    write(tmp_path / "b", "old")
    for name in ("d1", "d2", "empty"):
        (tmp_path / name).mkdir()
    write(tmp_path / "d1" / "inside", "x")

    report = on_windows(
        tmp_path,
        "attempt('file', lambda: atomicswap.replace('a', 'b'))\n"
        "attempt('dir over dir', lambda: atomicswap.replace('d1', 'd2'))\n"
        "attempt('dir over empty dir', lambda: atomicswap.replace('d1', 'empty'))\n"
        "attempt('dir to a free name', lambda: atomicswap.replace('d1', 'd3'))\n",
    )

    assert report["file"] == report["dir to a free name"] == "ok"
    for case in ("dir over dir", "dir over empty dir"):
        assert report[case][0] == errno.ENOTSUP  # type: ignore[index]
        assert "Windows cannot replace a directory" in report[case][2]  # type: ignore[index]
    assert sorted(os.listdir(tmp_path)) == ["b", "d2", "d3", "empty"]


def test_windows_replace_of_a_file_held_open_is_the_permission_error_windows_gives(tmp_path: Path) -> None:
    write(tmp_path / "a", "new")
    write(tmp_path / "b", "old")

    report = on_windows(
        tmp_path,
        "winsim.LOCKED.add('b')\nattempt('locked', lambda: atomicswap.replace('a', 'b'))\n",
    )

    assert report["locked"][:2] == [errno.EACCES, "a"]  # type: ignore[index]
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("new", "old")


def test_windows_rename_noreplace_and_atomic_dir_use_renames_that_never_replace(tmp_path: Path) -> None:
    write(tmp_path / "src", "src")
    write(tmp_path / "taken", "taken")
    (tmp_path / "dir").mkdir()

    report = on_windows(
        tmp_path,
        "attempt('file', lambda: atomicswap.rename_noreplace('src', 'dst'))\n"
        "attempt('taken', lambda: atomicswap.rename_noreplace('dst', 'taken'))\n"
        "attempt('dir', lambda: atomicswap.rename_noreplace('dir', 'moved'))\n"
        "def publish(path, **options):\n"
        "    with atomicswap.atomic_dir(path, **options) as s:\n"
        "        (s / 'v').write_text('1')\n"
        "attempt('site', lambda: publish('site'))\n"
        "attempt('site again', lambda: publish('site'))\n"
        "attempt('new, no clobber', lambda: publish('new', overwrite=False))\n",
    )

    assert report["file"] == report["dir"] == report["site"] == report["new, no clobber"] == "ok"
    assert report["taken"][0] == errno.EEXIST  # type: ignore[index]
    assert report["site again"][0] == errno.ENOTSUP  # type: ignore[index]
    assert sorted(os.listdir(tmp_path)) == ["dst", "moved", "new", "site", "taken"]


def test_windows_swap_is_enotsup_saying_why(tmp_path: Path) -> None:
    write(tmp_path / "a", "a")
    write(tmp_path / "b", "b")

    report = on_windows(tmp_path, "attempt('swap', lambda: atomicswap.swap('a', 'b'))\n")

    assert report["swap"][0] == errno.ENOTSUP  # type: ignore[index]
    assert "Windows cannot exchange two names atomically" in report["swap"][2]  # type: ignore[index]


def test_windows_symlink_repoints_through_a_replace(tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to("old")

    report = on_windows(tmp_path, "attempt('symlink', lambda: atomicswap.symlink('new', 'current'))\n")

    assert report["symlink"] == "ok"
    assert os.readlink(tmp_path / "current") == "new"
