"""replace(): put src at dst atomically, whatever dst is."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import as_nobody, inject_at_call_on, run_under_strace, write

from atomicswap import replace


def make(path: Path, kind: str) -> None:
    """Make *path* a file, a symlink, or an empty or a non-empty directory."""
    if kind == "file":
        write(path, f"old {path.name}")
    elif kind == "symlink":
        path.symlink_to("old-target")
    else:
        path.mkdir()
        if kind == "non-empty directory":
            write(path / "old-entry", "old")
            (path / "old-subdir").mkdir()
            write(path / "old-subdir" / "deep", "old")


KINDS = ["file", "symlink", "empty directory", "non-empty directory"]


@pytest.mark.parametrize("src_kind", KINDS)
@pytest.mark.parametrize("dst_kind", [None, *KINDS])
def test_replace_puts_src_at_dst_whatever_dst_is(tmp_path: Path, src_kind: str, dst_kind: str | None) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make(src, src_kind)
    if dst_kind:
        make(dst, dst_kind)
    inode = src.lstat().st_ino

    replace(src, dst)

    assert dst.lstat().st_ino == inode
    assert not os.path.lexists(src)
    assert sorted(os.listdir(tmp_path)) == ["dst"]


def test_replace_of_a_path_with_itself_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "p", "content")

    replace(path, path)
    replace(path, os.path.join(tmp_path, ".", "p"))

    assert path.read_text() == "content"


def test_replace_of_two_names_of_one_file_changes_nothing_as_os_replace(tmp_path: Path) -> None:
    first = write(tmp_path / "first", "content")
    os.link(first, tmp_path / "second")

    replace(first, tmp_path / "second")

    assert first.read_text() == (tmp_path / "second").read_text() == "content"


def test_replace_of_a_missing_src_raises_file_not_found(tmp_path: Path) -> None:
    dst = write(tmp_path / "dst", "old")

    with pytest.raises(FileNotFoundError) as raised:
        replace(tmp_path / "missing", dst)

    assert raised.value.filename == str(tmp_path / "missing")
    assert dst.read_text() == "old"


def test_replace_rejects_wrong_types_naming_the_argument(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="dst should be str"):
        replace(tmp_path, 7)  # type: ignore[arg-type]


def old_tree_as_nobody(lock: str) -> tuple[Path, Path, Path]:
    """src, a non-empty dst and their parent, all owned by uid 65534 when the
    tests run as root, with dst/locked made unwritable: mode 0o555 for
    lock="mode", or owned by root for lock="owner", which 65534 cannot undo."""
    top = Path(tempfile.mkdtemp())
    os.chmod(top, 0o755)
    src, dst = top / "src", top / "dst"
    make(src, "non-empty directory")
    (dst / "locked").mkdir(parents=True)
    write(dst / "locked" / "file", "old")
    if os.geteuid() == 0:
        for path in (top, src, dst, dst / "locked", dst / "locked" / "file"):
            os.chown(path, 65534, 65534)
        if lock == "owner":
            os.chown(dst / "locked", 0, 0)
    os.chmod(dst / "locked", 0o555)
    return top, src, dst


def replace_and_report(src: Path, dst: Path) -> dict[str, object]:
    def action() -> dict[str, object]:
        try:
            replace(src, dst)
        except OSError as e:
            return {"type": type(e).__name__, "errno": e.errno, "message": str(e), "filename": e.filename}
        return {"type": None}

    return action() if os.geteuid() != 0 else as_nobody(action)


def remove_all(top: Path) -> None:
    for directory, _, _ in os.walk(top):
        os.chmod(directory, 0o755)
    import shutil

    shutil.rmtree(top)


def test_replace_removes_an_old_tree_whose_directories_its_owner_made_read_only() -> None:
    top, src, dst = old_tree_as_nobody(lock="mode")
    try:
        report = replace_and_report(src, dst)

        assert report == {"type": None}
        assert sorted(os.listdir(dst)) == ["old-entry", "old-subdir"]  # src's tree
        assert os.listdir(top) == ["dst"]  # and no hidden copy of the old one
    finally:
        remove_all(top)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a directory owned by another user")
def test_replace_says_where_the_old_content_is_left_when_it_cannot_be_removed() -> None:
    """The old tree holds a directory owned by root: uid 65534 cannot empty it."""
    top, src, dst = old_tree_as_nobody(lock="owner")
    try:
        report = replace_and_report(src, dst)

        assert report["type"] == "PermissionError"
        assert report["errno"] == errno.EACCES
        assert report["filename"] == str(src)
        message = str(report["message"])
        assert f"the new content is in place, but its old content is left at '{src}'" in message
        assert f"(removing '{src}/locked/file' failed)" in message
        assert (dst / "old-entry").read_text() == "old"  # the replacement took effect
        assert (src / "locked" / "file").read_text() == "old"  # the leftover is where it says
    finally:
        remove_all(top)


def test_replace_renames_again_when_dst_vanishes_before_the_exchange(tmp_path: Path) -> None:
    """The rename meets a non-empty directory, so replace() exchanges; strace
    makes that first exchange find dst gone, as if another process removed it."""
    make(tmp_path / "src", "non-empty directory")
    make(tmp_path / "dst", "non-empty directory")
    log = tmp_path.parent / f"{tmp_path.name}.strace"

    result = run_under_strace(
        "import atomicswap\natomicswap.replace('src', 'dst')\n",
        *("-e", "trace=renameat,renameat2", "-e", "inject=renameat2:error=ENOENT:when=1"),
        cwd=tmp_path,
        log=log,
    )

    assert result.returncode == 0, result.stderr
    assert log.read_text().count("RENAME_EXCHANGE") == 2
    assert sorted(os.listdir(tmp_path / "dst")) == ["old-entry", "old-subdir"]  # src's tree
    assert os.listdir(tmp_path) == ["dst"]


# replace() of a tree: the old tree, tree/sub/f, is removed once src is in
# place; the script reports what replace() raised and the descriptors it left.
REPLACE_TREE = """
import os, atomicswap
atomicswap._bind_early('')
before = len(os.listdir('/proc/self/fd'))
try:
    atomicswap.replace('src', 'tree')
except KeyboardInterrupt:
    print('KeyboardInterrupt')
except BaseException as e:
    print(type(e).__name__, getattr(e, 'errno', None), repr(getattr(e, 'filename', None)), e)
print('descriptors left:', len(os.listdir('/proc/self/fd')) - before)
"""


def old_tree(top: Path) -> None:
    (top / "tree" / "sub").mkdir(parents=True)
    write(top / "tree" / "sub" / "f", "old")
    (top / "src").mkdir()


def test_an_error_listing_a_directory_of_the_old_tree_names_that_directory(tmp_path: Path) -> None:
    """getdents64 fails with EIO in tree/sub (now at src/sub): an OSError, not
    a TypeError about the descriptor that scandir() puts in its filename."""
    old_tree(tmp_path)

    result = inject_at_call_on(REPLACE_TREE, "getdents64", "error=EIO", r"</\S*/src/sub>", cwd=tmp_path)

    first, left = result.stdout.splitlines()
    # PyPy's scandir() ends the listing silently instead: the walk then finds
    # src/sub not empty when it removes it, and says so.
    reported = errno.ENOTEMPTY if sys.implementation.name == "pypy" else errno.EIO
    assert first.startswith(f"OSError {reported} 'src' "), result.stderr
    assert "its old content is left at 'src' (removing 'src/sub' failed)" in first
    assert left == "descriptors left: 0"
    assert os.listdir(tmp_path / "tree") == []
    assert (tmp_path / "src" / "sub" / "f").read_text() == "old"


def test_a_failing_fstat_of_a_directory_in_the_old_tree_names_it_and_leaks_no_descriptor(
    tmp_path: Path,
) -> None:
    """The walk opens tree/sub (now src/sub), then fstat fails with EIO."""
    old_tree(tmp_path)

    fstat_of_sub = r"\(\d+</\S*/src/sub>, \"\""
    result = inject_at_call_on(REPLACE_TREE, "newfstatat", "error=EIO", fstat_of_sub, cwd=tmp_path)

    first, left = result.stdout.splitlines()
    assert first.startswith(f"OSError {errno.EIO} 'src' "), result.stderr
    assert "the new content is in place, but its old content is left at 'src'" in first
    assert "(removing 'src/sub' failed)" in first
    assert left == "descriptors left: 0"


def test_a_tree_deeper_than_path_max_is_not_replaced_without_its_mount_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mount check looks the destination up in the mount table by its
    absolute path, which /proc cannot give beyond PATH_MAX (4096): the job
    refuses, saying why, rather than go on unchecked. swap() needs no check."""
    from atomicswap import swap

    monkeypatch.chdir(tmp_path)
    for _ in range(110):  # 110 levels of 40 characters: some 4,500 bytes
        os.mkdir("d" * 40)
        os.chdir("d" * 40)
    for name in ("site", "src"):
        os.mkdir(name)
        write(Path(name) / "index", name)

    with pytest.raises(OSError) as raised:
        replace("src", "site")

    assert raised.value.errno == errno.ENAMETOOLONG
    assert (raised.value.filename, raised.value.filename2) == ("src", "site")
    assert "too long to look up in the mount table; nothing was changed" in str(raised.value)
    assert (Path("site") / "index").read_text() == "site"
    swap("src", "site")
    assert (Path("site") / "index").read_text() == "src"
