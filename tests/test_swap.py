"""swap() on the real filesystem of this machine."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from conftest import as_nobody, write

import atomicswap
from atomicswap import exchange, swap


class CustomPath:
    """An os.PathLike that is not a pathlib.Path."""

    def __init__(self, path: str | bytes) -> None:
        self.path = path

    def __fspath__(self) -> str | bytes:
        return self.path


def test_swap_exchanges_contents_and_inodes(tmp_path: Path) -> None:
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")
    inode_a, inode_b = a.stat().st_ino, b.stat().st_ino

    swap(a, b)

    assert (a.read_text(), b.read_text()) == ("bravo", "alpha")
    assert (a.stat().st_ino, b.stat().st_ino) == (inode_b, inode_a)


def test_exchange_is_swap() -> None:
    assert exchange is swap


@pytest.mark.parametrize(
    "convert",
    [str, os.fsencode, Path, lambda p: CustomPath(str(p)), lambda p: CustomPath(os.fsencode(p))],
    ids=["str", "bytes", "Path", "PathLike-str", "PathLike-bytes"],
)
def test_swap_accepts_every_path_type(tmp_path: Path, convert: object) -> None:
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    swap(convert(a), convert(b))  # type: ignore[operator]

    assert a.read_text() == "bravo"
    assert b.read_text() == "alpha"


def test_swap_accepts_undecodable_bytes_names(tmp_path: Path) -> None:
    a = os.path.join(os.fsencode(tmp_path), b"\xff-a")
    b = os.path.join(os.fsencode(tmp_path), b"\xfe-b")
    for path, content in ((a, b"alpha"), (b, b"bravo")):
        with open(path, "wb") as f:
            f.write(content)

    swap(a, os.fsdecode(b))  # str with surrogate escapes names the same file

    with open(a, "rb") as f:
        assert f.read() == b"bravo"


def test_swap_resolves_relative_paths_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "a", "alpha")
    write(tmp_path / "b", "bravo")
    monkeypatch.chdir(tmp_path)

    swap("a", "b")

    assert (Path("a").read_text(), Path("b").read_text()) == ("bravo", "alpha")


def test_swap_resolves_relative_paths_against_their_dir_fds(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a, b = write(tmp_path / "one" / "x", "alpha"), write(tmp_path / "two" / "x", "bravo")
    one = os.open(tmp_path / "one", os.O_RDONLY)
    two = os.open(tmp_path / "two", os.O_RDONLY)
    try:
        swap("x", "x", first_dir_fd=one, second_dir_fd=two)
    finally:
        os.close(one)
        os.close(two)

    assert (a.read_text(), b.read_text()) == ("bravo", "alpha")


def test_swap_mixes_a_dir_fd_with_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    a, b = write(tmp_path / "sub" / "a", "alpha"), write(tmp_path / "b", "bravo")
    monkeypatch.chdir(tmp_path)
    sub = os.open("sub", os.O_RDONLY)
    try:
        swap("a", "b", first_dir_fd=sub)
    finally:
        os.close(sub)

    assert (a.read_text(), b.read_text()) == ("bravo", "alpha")


def test_swap_ignores_the_dir_fd_of_an_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")
    elsewhere = os.open(tmp_path / "elsewhere", os.O_RDONLY)
    try:
        swap(a, str(b), first_dir_fd=elsewhere, second_dir_fd=elsewhere)
    finally:
        os.close(elsewhere)

    assert (a.read_text(), b.read_text()) == ("bravo", "alpha")


def test_swap_exchanges_non_empty_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a" / "from-a", "1")
    write(tmp_path / "b" / "from-b", "2")

    swap(tmp_path / "a", tmp_path / "b")

    assert os.listdir(tmp_path / "a") == ["from-b"]
    assert os.listdir(tmp_path / "b") == ["from-a"]


def test_swap_exchanges_symlinks_without_following_them(tmp_path: Path) -> None:
    target_a, target_b = write(tmp_path / "ta", "alpha"), write(tmp_path / "tb", "bravo")
    (tmp_path / "a").symlink_to(target_a)
    (tmp_path / "b").symlink_to(target_b)

    swap(tmp_path / "a", tmp_path / "b")

    assert os.readlink(tmp_path / "a") == str(target_b)
    assert os.readlink(tmp_path / "b") == str(target_a)
    assert (target_a.read_text(), target_b.read_text()) == ("alpha", "bravo")


def test_swap_exchanges_a_file_with_a_directory(tmp_path: Path) -> None:
    write(tmp_path / "a", "alpha")
    (tmp_path / "b").mkdir()
    write(tmp_path / "b" / "inside", "x")

    swap(tmp_path / "a", tmp_path / "b")

    assert (tmp_path / "a" / "inside").read_text() == "x"
    assert (tmp_path / "b").read_text() == "alpha"


def test_swap_exchanges_a_directory_with_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").symlink_to("somewhere")

    swap(tmp_path / "a", tmp_path / "b")

    assert os.readlink(tmp_path / "a") == "somewhere"
    assert (tmp_path / "b").is_dir() and not (tmp_path / "b").is_symlink()


@pytest.mark.parametrize("missing", ["first", "second"])
def test_swap_raises_file_not_found_naming_both_paths(tmp_path: Path, missing: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(b if missing == "first" else a, "present")

    with pytest.raises(FileNotFoundError) as raised:
        swap(a, b)

    assert raised.value.errno == errno.ENOENT
    assert (raised.value.filename, raised.value.filename2) == (str(a), str(b))
    assert f"'{a}' -> '{b}'" in str(raised.value)
    assert (b if missing == "first" else a).read_text() == "present"


def test_swap_across_filesystems_raises_exdev(tmp_path: Path) -> None:
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm is not a separate filesystem here")
    a = write(tmp_path / "a", "alpha")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        b = write(Path(shm) / "b", "bravo")

        with pytest.raises(OSError) as raised:
            swap(a, b)

        assert raised.value.errno == errno.EXDEV
        assert "different filesystems" in (raised.value.strerror or "")
        assert (raised.value.filename, raised.value.filename2) == (str(a), str(b))
        assert (a.read_text(), b.read_text()) == ("alpha", "bravo")


def test_swap_of_a_directory_with_its_own_subdirectory_raises_einval(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)

    with pytest.raises(OSError) as raised:
        swap(tmp_path / "d", tmp_path / "d" / "sub")

    assert raised.value.errno == errno.EINVAL
    assert "inside itself" in (raised.value.strerror or "")
    assert (tmp_path / "d" / "sub").is_dir()


def test_swap_with_a_closed_dir_fd_raises_ebadf(tmp_path: Path) -> None:
    write(tmp_path / "a", "alpha")
    write(tmp_path / "b", "bravo")
    fd = os.open(tmp_path, os.O_RDONLY)
    os.close(fd)

    with pytest.raises(OSError) as raised:
        swap("a", "b", first_dir_fd=fd, second_dir_fd=fd)

    assert raised.value.errno == errno.EBADF
    assert (raised.value.filename, raised.value.filename2) == ("a", "b")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, "b"), {}, "first should be str, bytes or os.PathLike, not int"),
        (("a", None), {}, "second should be str, bytes or os.PathLike, not NoneType"),
        (("a", "b"), {"first_dir_fd": "3"}, "first_dir_fd should be int or None, not str"),
        (("a", "b"), {"second_dir_fd": 3.0}, "second_dir_fd should be int or None, not float"),
        (("a", "b"), {"first_dir_fd": True}, "first_dir_fd should be int or None, not bool"),
    ],
)
def test_swap_rejects_wrong_types_naming_the_argument(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    message: str,
) -> None:
    write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(TypeError, match=message):
        swap(*args, **kwargs)  # type: ignore[arg-type]

    assert (Path("a").read_text(), Path("b").read_text()) == ("alpha", "bravo")


class SneakyBytes(bytes):
    def __contains__(self, item: object) -> bool:
        return False


class SneakyStr(str):
    def __contains__(self, item: object) -> bool:
        return False


@pytest.mark.parametrize(
    "path",
    ["a\0b", b"a\0b", Path("a\0b"), CustomPath(b"a\0b"), SneakyBytes(b"a\0b"), SneakyStr("a\0b")],
    ids=["str", "bytes", "Path", "PathLike-bytes", "bytes-subclass", "str-subclass"],
)
@pytest.mark.parametrize("position", ["first", "second"])
def test_swap_rejects_an_embedded_nul(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: object, position: str
) -> None:
    """ctypes would cut the path at the NUL and exchange the wrong names."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a", "alpha")
    write(tmp_path / "other", "other")
    args = (path, "other") if position == "first" else ("other", path)

    with pytest.raises(ValueError, match=f"{position}: embedded null byte"):
        swap(*args)

    assert ((tmp_path / "a").read_text(), (tmp_path / "other").read_text()) == ("alpha", "other")


@pytest.mark.parametrize("fd", [2**31, -(2**31) - 1, 2**40])
@pytest.mark.parametrize("position", ["first", "second"])
def test_swap_rejects_a_dir_fd_that_is_no_c_int(fd: int, position: str) -> None:
    with pytest.raises(OverflowError, match=f"{position}_dir_fd"):
        swap("a", "b", **{f"{position}_dir_fd": fd})  # type: ignore[arg-type]


def test_an_error_inside_fspath_is_not_reported_as_a_wrong_type() -> None:
    class Broken:
        def __fspath__(self) -> str:
            raise TypeError("broken inside")

    with pytest.raises(TypeError, match="broken inside"):
        swap(Broken(), "b")


def test_swap_of_a_path_with_itself_or_two_names_of_one_file_changes_nothing(tmp_path: Path) -> None:
    a = write(tmp_path / "a", "alpha")
    os.link(a, tmp_path / "also-a")

    swap(a, a)
    swap(a, tmp_path / "also-a")

    assert a.read_text() == (tmp_path / "also-a").read_text() == "alpha"


def test_swap_checks_types_before_binding_the_c_library() -> None:
    """A bad argument is rejected before the C library is even loaded."""
    from conftest import run_python

    result = run_python(
        "import sys, atomicswap\n"
        "try:\n"
        "    atomicswap.swap(b'a', 1)\n"
        "except TypeError:\n"
        "    print('ctypes' in sys.modules, atomicswap._binding)\n"
    )
    assert result.stdout.split() == ["False", "None"], result.stderr


def test_swap_as_an_unprivileged_user_raises_permission_error() -> None:
    """Files in a directory the caller may not write: the kernel answers EACCES.

    As root, a forked child drops to uid/gid 65534 before calling swap().
    """
    directory = tempfile.mkdtemp()
    try:
        os.chmod(directory, 0o755)
        a, b = write(Path(directory) / "a", "alpha"), write(Path(directory) / "b", "bravo")
        if os.geteuid() != 0:
            os.chmod(directory, 0o555)
            outcome = _swap_and_report(a, b)
        else:
            outcome = as_nobody(lambda: _swap_and_report(a, b))
        assert outcome == {
            "type": "PermissionError",
            "errno": errno.EACCES,
            "filenames": [str(a), str(b)],
        }
        assert (a.read_text(), b.read_text()) == ("alpha", "bravo")
    finally:
        os.chmod(directory, 0o755)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def _swap_and_report(a: Path, b: Path) -> dict[str, object]:
    try:
        atomicswap.swap(a, b)
    except OSError as e:
        return {"type": type(e).__name__, "errno": e.errno, "filenames": [str(e.filename), str(e.filename2)]}
    return {"type": None}
