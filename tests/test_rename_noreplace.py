"""rename_noreplace(): a rename that never overwrites."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
from conftest import run_under_strace, write

from atomicswap import rename_noreplace


def test_rename_noreplace_moves_to_a_free_name(tmp_path: Path) -> None:
    src = write(tmp_path / "src", "new")
    inode = src.stat().st_ino

    rename_noreplace(src, tmp_path / "dst")

    assert not src.exists()
    assert (tmp_path / "dst").read_text() == "new"
    assert (tmp_path / "dst").stat().st_ino == inode


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_rename_noreplace_never_overwrites(tmp_path: Path, kind: str) -> None:
    src, dst = write(tmp_path / "src", "new"), tmp_path / "dst"
    if kind == "file":
        write(dst, "old")
    elif kind == "directory":
        dst.mkdir()
    else:
        dst.symlink_to("nowhere")

    with pytest.raises(FileExistsError) as raised:
        rename_noreplace(src, dst)

    assert (raised.value.errno, raised.value.filename, raised.value.filename2) == (
        errno.EEXIST,
        str(src),
        str(dst),
    )
    assert src.read_text() == "new"
    assert os.path.lexists(dst)


def test_rename_noreplace_moves_directories_and_uses_dir_fds(tmp_path: Path) -> None:
    (tmp_path / "one" / "tree").mkdir(parents=True)
    (tmp_path / "two").mkdir()
    write(tmp_path / "one" / "tree" / "leaf", "x")
    one, two = os.open(tmp_path / "one", os.O_RDONLY), os.open(tmp_path / "two", os.O_RDONLY)
    try:
        rename_noreplace("tree", "tree", src_dir_fd=one, dst_dir_fd=two)
    finally:
        os.close(one)
        os.close(two)

    assert (tmp_path / "two" / "tree" / "leaf").read_text() == "x"


def test_rename_noreplace_rejects_wrong_types_naming_the_argument() -> None:
    with pytest.raises(TypeError, match="dst should be str"):
        rename_noreplace("a", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="src_dir_fd should be int"):
        rename_noreplace("a", "b", src_dir_fd="3")  # type: ignore[arg-type]


# The filesystem rejects RENAME_NOREPLACE, as NFS, FUSE and 9p do: strace makes
# every renameat2 of the child fail with EINVAL.
EINVAL_RENAMEAT2 = (
    "-e",
    "trace=renameat2,link,linkat,unlink,unlinkat",
    "-e",
    "inject=renameat2:error=EINVAL",
)


def test_rename_noreplace_falls_back_to_link_and_unlink_on_einval(tmp_path: Path) -> None:
    src = write(tmp_path / "src", "new")
    log = tmp_path.parent / f"{tmp_path.name}.strace"

    result = run_under_strace(
        "import atomicswap\natomicswap.rename_noreplace('src', 'dst')\nprint('moved')",
        *EINVAL_RENAMEAT2,
        cwd=tmp_path,
        log=log,
    )

    assert result.stdout == "moved\n", result.stderr
    assert not src.exists()
    assert (tmp_path / "dst").read_text() == "new"
    calls = log.read_text()
    assert re.search(r'renameat2\(.*"src".*"dst", RENAME_NOREPLACE\)\s+= -1 EINVAL', calls)
    # No AT_SYMLINK_FOLLOW: a symlink at src moves as a link; linkat() is called
    # through ctypes with no flags, on PyPy too. The directories are held open.
    assert re.search(r'linkat\(\d+, "src", \d+, "dst", 0\)\s+= 0', calls)
    assert re.search(r'unlinkat\(\d+, "src", 0\)\s+= 0', calls)


def test_rename_noreplace_fallback_never_overwrites_either(tmp_path: Path) -> None:
    write(tmp_path / "src", "new"), write(tmp_path / "dst", "old")

    result = run_under_strace(
        "import atomicswap\n"
        "try:\n"
        "    atomicswap.rename_noreplace('src', 'dst')\n"
        "except FileExistsError as e:\n"
        "    print(e.filename, e.filename2)\n",
        *EINVAL_RENAMEAT2,
        cwd=tmp_path,
    )

    assert result.stdout == "src dst\n", result.stderr
    assert ((tmp_path / "src").read_text(), (tmp_path / "dst").read_text()) == ("new", "old")


def test_rename_noreplace_fallback_refuses_directories(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()

    result = run_under_strace(
        "import errno, atomicswap\n"
        "try:\n"
        "    atomicswap.rename_noreplace('src', 'dst')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno])\n",
        *EINVAL_RENAMEAT2,
        cwd=tmp_path,
    )

    assert result.stdout == "EINVAL\n", result.stderr
    assert (tmp_path / "src").is_dir() and not (tmp_path / "dst").exists()


def test_the_fallback_moves_a_symlink_itself(tmp_path: Path) -> None:
    write(tmp_path / "target", "t")
    (tmp_path / "src").symlink_to("target")

    result = run_under_strace(
        "import atomicswap\natomicswap.rename_noreplace('src', 'dst')\n", *EINVAL_RENAMEAT2, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert os.readlink(tmp_path / "dst") == "target"
    assert sorted(os.listdir(tmp_path)) == ["dst", "target"]


def test_the_fallback_says_so_when_it_created_dst_but_cannot_remove_src(tmp_path: Path) -> None:
    write(tmp_path / "src", "new")

    result = run_under_strace(
        "import atomicswap\n"
        "try:\n"
        "    atomicswap.rename_noreplace('src', 'dst')\n"
        "except OSError as e:\n"
        "    print(e)\n",
        *EINVAL_RENAMEAT2,
        *("-e", "inject=unlink,unlinkat:error=EIO"),
        cwd=tmp_path,
    )

    assert "the destination was created, but the source is still there too: 'src' -> 'dst'" in result.stdout
    assert (tmp_path / "dst").read_text() == "new"
