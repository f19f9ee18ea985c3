"""The core operations on filesystems other than the one the tests run on:
tmpfs and ramfs, mounted for the test (root only)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write

import atomicswap
from atomicswap import atomic_write, rename_noreplace, replace, swap


@pytest.fixture(params=["tmpfs", "ramfs"])
def mounted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A fresh filesystem of the given type, mounted on a directory in tmp_path."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    point = tmp_path / request.param
    point.mkdir()
    result = subprocess.run(
        ["mount", "-t", request.param, "none", str(point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount {request.param} here: {result.stderr.strip()}")
    try:
        yield point
    finally:
        # A descriptor a failing test left open would keep a plain umount busy.
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], check=True)


def test_swap_exchanges_files_and_directories(mounted: Path) -> None:
    a, b = write(mounted / "a", "alpha"), write(mounted / "b", "bravo")
    (mounted / "d").mkdir()
    write(mounted / "d" / "inside", "x")

    swap(a, b)
    swap(a, mounted / "d")

    assert (mounted / "a" / "inside").read_text() == "x"
    assert (mounted / "d").read_text() == "bravo"
    assert b.read_text() == "alpha"


def test_replace_replaces_a_non_empty_directory(mounted: Path) -> None:
    (mounted / "old").mkdir()
    write(mounted / "old" / "entry", "old")
    (mounted / "new").mkdir()
    write(mounted / "new" / "entry", "new")

    replace(mounted / "new", mounted / "old")

    assert (mounted / "old" / "entry").read_text() == "new"
    assert os.listdir(mounted) == ["old"]


def test_rename_noreplace_refuses_an_existing_name(mounted: Path) -> None:
    write(mounted / "a", "alpha")
    write(mounted / "b", "bravo")

    with pytest.raises(FileExistsError):
        rename_noreplace(mounted / "a", mounted / "b")
    rename_noreplace(mounted / "a", mounted / "c")

    assert sorted(os.listdir(mounted)) == ["b", "c"]


@pytest.mark.skipif(not atomicswap._O_TMPFILE, reason="no O_TMPFILE on this platform")
def test_atomic_write_uses_an_anonymous_temporary(mounted: Path) -> None:
    with atomic_write(mounted / "f") as f:
        f.write("new")
        assert os.fstat(f.fileno()).st_nlink == 0
        assert os.listdir(mounted) == []

    assert (mounted / "f").read_text() == "new"
