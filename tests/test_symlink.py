"""symlink(): create a link, or repoint one with no moment where it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import write

from atomicswap import symlink


def test_symlink_creates_a_link(tmp_path: Path) -> None:
    symlink("releases/1", tmp_path / "current")

    assert os.readlink(tmp_path / "current") == "releases/1"
    assert os.listdir(tmp_path) == ["current"]


def test_symlink_repoints_an_existing_link_with_a_new_one(tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to("releases/1")
    old_inode = (tmp_path / "current").lstat().st_ino

    symlink("releases/2", tmp_path / "current")

    assert os.readlink(tmp_path / "current") == "releases/2"
    assert (tmp_path / "current").lstat().st_ino != old_inode
    assert os.listdir(tmp_path) == ["current"]


def test_symlink_replaces_a_file(tmp_path: Path) -> None:
    write(tmp_path / "current", "a file")

    symlink("target", tmp_path / "current")

    assert os.readlink(tmp_path / "current") == "target"


def test_symlink_does_not_replace_a_directory(tmp_path: Path) -> None:
    (tmp_path / "current").mkdir()
    write(tmp_path / "current" / "keep", "x")

    with pytest.raises(IsADirectoryError) as raised:
        symlink("target", tmp_path / "current")

    assert raised.value.filename == str(tmp_path / "current")

    assert (tmp_path / "current" / "keep").read_text() == "x"
    assert os.listdir(tmp_path) == ["current"]


def test_overwrite_false_refuses_an_existing_path(tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to("releases/1")

    with pytest.raises(FileExistsError):
        symlink("releases/2", tmp_path / "current", overwrite=False)

    assert os.readlink(tmp_path / "current") == "releases/1"
    symlink("releases/2", tmp_path / "new", overwrite=False)
    assert os.readlink(tmp_path / "new") == "releases/2"


def test_symlink_accepts_bytes_and_path_like(tmp_path: Path) -> None:
    symlink(b"target", os.fsencode(tmp_path / "a"))
    symlink(Path("target"), tmp_path / "b")

    assert os.readlink(tmp_path / "a") == os.readlink(tmp_path / "b") == "target"


def test_symlink_rejects_wrong_types_naming_the_argument(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="target should be str"):
        symlink(1, tmp_path / "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="link_path should be str"):
        symlink("t", None)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_a_name_near_name_max_still_gets_a_temporary_link(tmp_path: Path) -> None:
    symlink("target", tmp_path / ("n" * 250))

    assert os.listdir(tmp_path) == ["n" * 250]
