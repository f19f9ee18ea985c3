"""Paths resolve as the kernel resolves them, and every error names the
caller's path as they spelled it and says whether anything changed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MARKER, ROOT, inject_after_marker, inject_at_call_on, write

from atomicswap import atomic_dir, atomic_write, rename_noreplace, replace, swap, symlink


@pytest.fixture
def linked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path/work with current -> real/inner, and a results directory both at
    real/results (where the kernel resolves current/../results) and at
    work/results (where a lexical normalisation would put it)."""
    work = tmp_path / "work"
    (work / "real" / "inner").mkdir(parents=True)
    (work / "current").symlink_to("real/inner")
    for results in (work / "real" / "results", work / "results"):
        results.mkdir()
        write(results / "kept", str(results))
    monkeypatch.chdir(work)
    return work


def test_atomic_dir_publishes_where_the_kernel_resolves_dotdot_after_a_symlink(linked: Path) -> None:
    with atomic_dir("current/../results") as staging:
        write(staging / "new", "new")

    assert os.listdir(linked / "real" / "results") == ["new"]
    assert (linked / "results" / "kept").read_text() == str(linked / "results")  # untouched
    assert sorted(os.listdir(linked / "real")) == ["inner", "results"]


def test_replace_puts_the_tree_where_the_kernel_resolves_dotdot_after_a_symlink(linked: Path) -> None:
    (linked / "new").mkdir()
    write(linked / "new" / "new", "new")

    replace("new", "current/../results")

    assert os.listdir(linked / "real" / "results") == ["new"]
    assert (linked / "results" / "kept").read_text() == str(linked / "results")


@pytest.mark.parametrize("path", [".", "..", "", "/", "sub/.", "sub/..", "./", "../"])
def test_atomic_dir_refuses_a_path_that_names_no_replaceable_entry(linked: Path, path: str) -> None:
    """The kernel answers EBUSY or EINVAL to renaming these; atomic_dir(".")
    must not empty the current directory instead."""
    (linked / "sub").mkdir()
    before = sorted(os.listdir(linked))

    with pytest.raises(OSError) as raised, atomic_dir(path):
        pass

    assert raised.value.errno == errno.EINVAL
    assert raised.value.filename == path
    assert "nothing was changed" in str(raised.value)
    assert sorted(os.listdir(linked)) == before
    assert (linked / "results" / "kept").exists()


@pytest.mark.parametrize("path", [".", "..", "", "sub/..", "../"])
def test_replace_refuses_a_destination_that_names_no_replaceable_entry(linked: Path, path: str) -> None:
    (linked / "sub").mkdir()
    write(linked / "src", "src")
    before = sorted(os.listdir(linked))

    with pytest.raises(OSError) as raised:
        replace("src", path)

    assert raised.value.errno == errno.EINVAL
    assert raised.value.filename == path
    assert sorted(os.listdir(linked)) == before


def test_replace_of_a_file_over_a_missing_directory_ends_with_the_kernels_error(tmp_path: Path) -> None:
    """rename() says ENOTDIR and the exchange ENOENT: 0.3.0 retried forever."""
    write(tmp_path / "a", "a")
    code = (
        "import atomicswap\n"
        "try:\n"
        "    atomicswap.replace('a', 'missing/')\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=20,
    )

    assert result.stdout == f"{errno.ENOTDIR}\n", result.stderr
    assert os.listdir(tmp_path) == ["a"]


def test_replace_of_a_file_onto_a_directory_named_with_a_trailing_slash_is_enotdir_changing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trailing slash says dst is a directory and stays one, as os.replace() reads "dst/"."""
    write(tmp_path / "f", "new")
    (tmp_path / "dst").mkdir()
    write(tmp_path / "dst" / "precious", "data")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(NotADirectoryError) as raised:
        replace("f", "dst/")

    assert raised.value.errno == errno.ENOTDIR
    assert (tmp_path / "f").read_text() == "new"
    assert os.listdir(tmp_path / "dst") == ["precious"]
    assert (tmp_path / "dst" / "precious").read_text() == "data"
    assert sorted(os.listdir(tmp_path)) == ["dst", "f"]


class IntPath:
    """A PathLike whose __fspath__ breaks its contract."""

    def __fspath__(self) -> int:
        return 3


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda bad: swap(bad, "b"), "first"),
        (lambda bad: replace("a", bad), "dst"),
        (lambda bad: rename_noreplace(bad, "b"), "src"),
        (lambda bad: symlink("t", bad), "link_path"),
        (lambda bad: atomic_write(bad), "path"),
        (lambda bad: atomic_dir(bad), "path"),
    ],
)
def test_a_pathlike_returning_neither_str_nor_bytes_is_a_type_error_naming_the_argument(
    tmp_path: Path, call: object, name: str
) -> None:
    with pytest.raises(TypeError, match=f"^{name}: "):
        call(IntPath())  # type: ignore[operator]
    assert os.listdir(tmp_path) == []


def test_errors_keep_a_bytes_path_as_bytes(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised, atomic_write(bytes(tmp_path / "missing" / "f")):
        pass

    assert raised.value.filename == bytes(tmp_path / "missing" / "f")
    assert "nothing was changed" in str(raised.value)


def test_a_link_in_a_missing_directory_is_named_not_its_temporary(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        symlink("target", tmp_path / "missing" / "current")

    assert raised.value.filename == str(tmp_path / "missing" / "current")
    assert raised.value.filename2 is None


def test_a_failed_staging_mkdir_names_the_path(tmp_path: Path) -> None:
    result = inject_after_marker(
        f"import os, atomicswap\natomicswap._bind_early('')\n{MARKER}\n"
        "try:\n    with atomicswap.atomic_dir('site'):\n        pass\n"
        "except OSError as e:\n    print(e.errno, repr(e.filename), e)\n",
        "mkdir,mkdirat",
        "error=EROFS",
        cwd=tmp_path,
    )

    assert result.stdout.startswith(f"{errno.EROFS} 'site' "), result.stderr
    assert "nothing was changed" in result.stdout
    assert os.listdir(tmp_path) == []


WRITE_F = (
    "import os, atomicswap\natomicswap._bind_early('')\n{setup}\n"
    + f"{MARKER}\n"
    + "try:\n"
    + "    with atomicswap.atomic_write('f') as f:\n"
    + "        f.write('new')\n"
    + "except OSError as e:\n"
    + "    print(e.errno, repr(e.filename), e)\n"
)


# Each fault is aimed at one call by what it acts on (strace -y shows each
# descriptor's path), so that calls the interpreter makes around it (PyPy's
# os.urandom() opens and closes /dev/urandom) cannot shift it.
TEMPORARY = r"<[^>]*(/#\d+>\(deleted\)|/\.f\.[0-9a-f]{12}\.tmp>)"  # anonymous, or named


@pytest.mark.parametrize(
    ("setup", "syscall", "call", "errno_name"),
    [
        ("", "openat", r"O_TMPFILE", "EROFS"),  # creating the anonymous temporary
        ("atomicswap._O_TMPFILE = 0", "openat", r"O_EXCL", "EACCES"),  # creating the named one
        ("", "openat", r"O_TMPFILE", "EMFILE"),
        ("", "write", r'"new"', "ENOSPC"),  # the commit's flush
        ("", "write", r'"new"', "EDQUOT"),
        ("", "fsync", TEMPORARY, "EIO"),  # the file's fsync
        ("", "fchmod", TEMPORARY, "EPERM"),
        ("", "linkat", r"/proc/self/fd", "ENOSPC"),  # the anonymous file's temporary name
        ("", "close", TEMPORARY, "EIO"),  # closing it before the rename (NFS reports write errors there)
        ("atomicswap._O_TMPFILE = 0", "close", TEMPORARY, "EIO"),
    ],
)
def test_a_write_failing_before_the_rename_names_the_path_and_changes_nothing(
    tmp_path: Path, setup: str, syscall: str, call: str, errno_name: str
) -> None:
    write(tmp_path / "f", "old")

    code = WRITE_F.format(setup=setup)
    result = inject_at_call_on(code, syscall, f"error={errno_name}", call, cwd=tmp_path)

    number = getattr(errno, errno_name)
    assert result.stdout.startswith(f"{number} 'f' "), result.stderr
    assert "nothing was changed" in result.stdout
    assert (tmp_path / "f").read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_an_os_error_without_a_filename_from_the_block_gets_the_path(tmp_path: Path) -> None:
    """The block's own write fails (a flush, here): the error names the file it was for."""
    code = WRITE_F.replace("f.write('new')", "f.write('new'); f.flush()").format(setup="")

    result = inject_after_marker(code, "write", "error=ENOSPC", cwd=tmp_path)

    assert result.stdout.startswith(f"{errno.ENOSPC} 'f' "), result.stderr
    assert "nothing was changed" in result.stdout
    assert os.listdir(tmp_path) == []
