"""atomic_dir(): a directory built in private and published all at once."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import as_nobody, run_python, run_under_strace, write

import atomicswap
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


def test_durable_syncs_the_staged_filesystem_once_then_the_parent(tmp_path: Path) -> None:
    """One syncfs() covers every staged file and directory, readable or not,
    without opening any of them; the parent is fsynced once published."""
    log = tmp_path.parent / f"{tmp_path.name}.strace"
    code = (
        "import os, atomicswap\n"
        "with atomicswap.atomic_dir('site', durable={durable}) as s:\n"
        "    (s / 'a').write_text('a')\n"
        "    (s / 'sub').mkdir()\n"
        "    (s / 'sub' / 'b').write_text('b')\n"
        "    (s / 'link').symlink_to('a')\n"
    )

    result = run_under_strace(
        code.format(durable=True),
        "-y",
        "-e",
        "trace=fsync,syncfs,rename,renameat,renameat2",
        cwd=tmp_path,
        log=log,
    )
    assert result.returncode == 0, result.stderr
    calls = [
        (call, path.replace(str(tmp_path), ""))
        for call, path in re.findall(r"^\d+\s+(\w+)\(\d+<([^>]*)>", log.read_text(), re.MULTILINE)
    ]
    # glibc's renameat2() without flags is the renameat system call.
    assert [call.replace("renameat2", "renameat") for call, _ in calls] == ["syncfs", "renameat", "fsync"]
    assert re.fullmatch(r"/\.site\.[0-9a-f]{12}\.tmp", calls[0][1])  # the staging directory
    assert calls[2][1] == ""  # the parent, once published

    result = run_under_strace(code.format(durable=False), "-e", "trace=fsync,syncfs", cwd=tmp_path, log=log)
    assert result.returncode == 0, result.stderr
    assert "sync" not in log.read_text()


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


def test_a_trailing_slash_still_stages_beside_the_path(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    write(tmp_path / "site" / "old.html", "old")

    with atomic_dir(f"{tmp_path}/site/") as staging:
        assert staging.parent == tmp_path
        assert os.listdir(tmp_path / "site") == ["old.html"]
        write(staging / "new.html", "new")

    assert os.listdir(tmp_path / "site") == ["new.html"]


def test_the_staging_path_survives_a_chdir_in_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with atomic_dir("site") as staging:
        assert staging.is_absolute()
        monkeypatch.chdir("/")
        write(staging / "index.html", "x")

    assert (tmp_path / "site" / "index.html").read_text() == "x"


def test_a_name_near_name_max_still_gets_a_staging_directory(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / ("n" * 250)) as staging:
        write(staging / "f", "x")

    assert os.listdir(tmp_path) == ["n" * 250]


def test_staging_with_read_only_directories_is_removed_or_published() -> None:
    """As uid 65534, who cannot empty a directory it made read-only without
    making it writable again: a failed block leaves no staging behind, and a
    write-only file is still synced."""
    import tempfile

    top = Path(tempfile.mkdtemp())
    try:
        os.chmod(top, 0o777)

        def stage_read_only_trees() -> dict[str, object]:
            try:
                with atomic_dir(top / "failed") as staging:
                    (staging / "ro" / "sub").mkdir(parents=True)
                    write(staging / "ro" / "sub" / "f", "x")
                    (staging / "ro" / "sub").chmod(0o555)
                    (staging / "ro").chmod(0o555)
                    raise RuntimeError
            except RuntimeError:
                pass
            with atomic_dir(top / "published") as staging:
                write(staging / "write-only", "x").chmod(0o200)
                (staging / "ro").mkdir()
                (staging / "ro").chmod(0o555)
            return {"left": sorted(os.listdir(top)), "published": sorted(os.listdir(top / "published"))}

        report = as_nobody(stage_read_only_trees) if os.geteuid() == 0 else stage_read_only_trees()
        assert report == {"left": ["published"], "published": ["ro", "write-only"]}
    finally:
        for directory, _, _ in os.walk(top):
            os.chmod(directory, 0o755)
        import shutil

        shutil.rmtree(top)


def test_publishing_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()

    with pytest.raises(FileExistsError) as raised, atomic_dir(tmp_path / "site", overwrite=False):
        pass

    assert raised.value.filename == str(tmp_path / "site")


def test_a_failed_fsync_of_the_parent_says_the_tree_is_published_but_not_durable(tmp_path: Path) -> None:
    result = run_under_strace(
        "import atomicswap\n"
        "try:\n"
        "    with atomicswap.atomic_dir('site') as s:\n"
        "        (s / 'f').write_text('x')\n"
        "except OSError as e:\n"
        "    print(e)\n",
        # The staged tree is synced by syncfs(): the one fsync is the parent's.
        *("-e", "trace=fsync", "-e", "inject=fsync:error=EIO:when=1"),
        cwd=tmp_path,
    )

    assert "the new content is in place, but it is not yet durable: 'site'" in result.stdout, result.stderr
    assert os.listdir(tmp_path / "site") == ["f"]
    assert os.listdir(tmp_path) == ["site"]


# Deeper than Python's recursion limit (1,000) and than PATH_MAX allows as one
# path: the tree is made through descriptors and removed with rm.
DEPTH = 5000


def make_deep(top: Path) -> None:
    """top/d/d/.../d/f, DEPTH directories deep."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(DEPTH):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    subprocess.run(["rm", "-rf", str(tmp_path)], check=True)


def test_a_tree_thousands_deep_can_be_replaced(deep: Path) -> None:
    (deep / "site").mkdir()
    make_deep(deep / "site")

    with atomic_dir(deep / "site") as staging:
        write(staging / "new", "new")

    assert os.listdir(deep / "site") == ["new"]
    assert os.listdir(deep) == ["site"]


def test_a_staged_tree_thousands_deep_is_removed_when_the_block_fails(deep: Path) -> None:
    with pytest.raises(ValueError), atomic_dir(deep / "site") as staging:
        make_deep(staging)
        raise ValueError

    assert os.listdir(deep) == []


def test_a_staged_tree_thousands_deep_is_synced_file_by_file_where_there_is_no_syncfs(
    deep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsync walk macOS uses, run here by making _syncfs report ENOTSUP."""

    def no_syncfs(fd: int) -> None:
        raise OSError(errno.ENOTSUP, "this platform has no syncfs()")

    monkeypatch.setattr(atomicswap, "_syncfs", no_syncfs)
    with atomic_dir(deep / "site") as staging:
        make_deep(staging)

    assert os.listdir(deep / "site") == ["d"]


def test_an_os_error_without_a_filename_from_the_block_gets_the_path(tmp_path: Path) -> None:
    """A write in the block fails with ENOSPC (to /dev/full, which is always
    full), an error that names no file: it names the path being published."""
    with pytest.raises(OSError) as raised, atomic_dir(tmp_path / "site") as staging:
        (staging / "f").write_text("x")
        with open("/dev/full", "w") as full:
            full.write("x")

    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(tmp_path / "site")
    assert "nothing was changed" in str(raised.value)
    assert os.listdir(tmp_path) == []
