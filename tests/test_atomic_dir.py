"""atomic_dir(): a directory built in private and published all at once."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from conftest import run_python, run_under_strace, write

from atomicswap import atomic_dir


def test_atomic_dir_publishes_the_staged_tree(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "site") as staging:
        assert isinstance(staging, Path)
        assert staging.parent == tmp_path
        assert re.fullmatch(r"\.site\.[0-9a-f]{12}\.tmp", staging.name)
        assert list(staging.iterdir()) == []
        write(staging / "index.html", "hello")
        (staging / "css").mkdir()
        write(staging / "css" / "site.css", "body {}")
        assert not (tmp_path / "site").exists()

    assert (tmp_path / "site" / "index.html").read_text() == "hello"
    assert (tmp_path / "site" / "css" / "site.css").read_text() == "body {}"
    assert sorted(os.listdir(tmp_path)) == ["site"]


def test_atomic_dir_replaces_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    write(tmp_path / "site" / "old.html", "old")

    with atomic_dir(tmp_path / "site") as staging:
        write(staging / "new.html", "new")

    assert os.listdir(tmp_path / "site") == ["new.html"]
    assert sorted(os.listdir(tmp_path)) == ["site"]


def test_the_published_directory_has_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "site"):
            pass
    finally:
        os.umask(old)

    assert stat.S_IMODE((tmp_path / "site").stat().st_mode) == 0o755  # not mkdtemp's 0o700


def test_an_exception_leaves_the_path_untouched_and_removes_staging(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    write(tmp_path / "site" / "old.html", "old")

    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "site") as staging:
        write(staging / "new.html", "new")
        raise RuntimeError

    assert os.listdir(tmp_path / "site") == ["old.html"]
    assert sorted(os.listdir(tmp_path)) == ["site"]


def test_overwrite_false_refuses_an_existing_path_and_removes_staging(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()

    with pytest.raises(FileExistsError), atomic_dir(tmp_path / "site", overwrite=False) as staging:
        write(staging / "new.html", "new")

    assert os.listdir(tmp_path / "site") == []
    assert sorted(os.listdir(tmp_path)) == ["site"]


def test_overwrite_false_publishes_at_a_free_path(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "site", overwrite=False) as staging:
        write(staging / "new.html", "new")

    assert os.listdir(tmp_path / "site") == ["new.html"]


def test_durable_syncs_every_file_and_directory_staged_then_the_parent(tmp_path: Path) -> None:
    log = tmp_path.parent / f"{tmp_path.name}.strace"
    code = (
        "import os, atomicswap\n"
        "with atomicswap.atomic_dir('site', durable={durable}) as s:\n"
        "    (s / 'a').write_text('a')\n"
        "    (s / 'sub').mkdir()\n"
        "    (s / 'sub' / 'b').write_text('b')\n"
        "    (s / 'link').symlink_to('a')\n"
    )

    result = run_under_strace(code.format(durable=True), "-e", "trace=fsync", cwd=tmp_path, log=log)
    assert result.returncode == 0, result.stderr
    # a, sub/b, sub, the staging directory, then the parent once published.
    assert len(re.findall(r"\bfsync\(\d+\)\s+= 0", log.read_text())) == 5

    result = run_under_strace(code.format(durable=False), "-e", "trace=fsync", cwd=tmp_path, log=log)
    assert result.returncode == 0, result.stderr
    assert "fsync(" not in log.read_text()


def test_special_files_in_the_staged_tree_are_not_opened(tmp_path: Path) -> None:
    """A FIFO would block open() forever: only regular files are fsynced."""
    result = run_python(
        "import os, atomicswap\n"
        "with atomicswap.atomic_dir('site') as s:\n"
        "    os.mkfifo(s / 'fifo')\n"
        "print(sorted(os.listdir('site')))\n",
        cwd=tmp_path,
        timeout=30,
    )
    assert result.stdout == "['fifo']\n", result.stderr


def test_atomic_dir_rejects_wrong_types_naming_the_argument() -> None:
    with pytest.raises(TypeError, match="path should be str"):
        atomic_dir(None)  # type: ignore[arg-type]
