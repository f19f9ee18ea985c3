"""durable=True on the rename-like jobs: what moves is fsynced before the
rename, each parent directory after it, and nothing is synced without it.

Which calls are made, on which files, is read from strace's log (-y shows
each descriptor's path); whether that is enough to survive a power cut is
what test_powercut.py measures.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import MARKER, inject_after_marker, run_under_strace, write

SYNCS = "fsync,fdatasync,syncfs,sync"


def synced(tmp_path: Path, call: str) -> list[tuple[str, str]]:
    """The sync and rename calls *call* makes, in order, with their paths below tmp_path."""
    work = tmp_path / "work"
    log = tmp_path / "strace.log"
    result = run_under_strace(
        f"import atomicswap\natomicswap._bind_early('')\natomicswap.{call}\n",
        "-y",
        "-e",
        f"trace={SYNCS},rename,renameat,renameat2,link,linkat",
        cwd=work,
        log=log,
    )
    assert result.returncode == 0, result.stderr
    calls = re.findall(r"^\d+\s+(\w+)\((?:\d+<([^>]*)>)?", log.read_text(), re.MULTILINE)
    # A plain rename is os.replace(): rename, or renameat with directory descriptors.
    return [
        (re.sub(r"^rename(at2?)?$", "renameat", name), path.replace(str(work), ".")) for name, path in calls
    ]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work" / "other").mkdir(parents=True)
    write(tmp_path / "work" / "a", "a")
    write(tmp_path / "work" / "b", "b")
    return tmp_path / "work"


def test_a_durable_swap_syncs_both_files_then_their_directory_once(work: Path, tmp_path: Path) -> None:
    calls = synced(tmp_path, "swap('a', 'b', durable=True)")

    assert calls == [("fsync", "./a"), ("fsync", "./b"), ("renameat", "."), ("fsync", ".")]
    assert ((work / "a").read_text(), (work / "b").read_text()) == ("b", "a")


def test_a_durable_replace_syncs_the_file_then_both_directories(work: Path, tmp_path: Path) -> None:
    calls = synced(tmp_path, "replace('a', 'other/a', durable=True)")

    assert calls == [("fsync", "./a"), ("renameat", "."), ("fsync", "./other"), ("fsync", ".")]
    assert (work / "other" / "a").read_text() == "a"


def test_a_durable_rename_noreplace_syncs_the_file_then_both_directories(work: Path, tmp_path: Path) -> None:
    calls = synced(tmp_path, "rename_noreplace('a', 'other/c', durable=True)")

    assert calls == [("fsync", "./a"), ("renameat", "."), ("fsync", "./other"), ("fsync", ".")]


def test_a_durable_symlink_syncs_its_directory_after_the_rename(work: Path, tmp_path: Path) -> None:
    calls = synced(tmp_path, "symlink('a', 'current', durable=True)")

    assert calls == [("renameat", "."), ("fsync", ".")]
    assert os.readlink(work / "current") == "a"


def test_a_directory_being_moved_durably_is_not_synced_inside(work: Path, tmp_path: Path) -> None:
    """Its content is the caller's to sync; atomic_dir() does that."""
    write(work / "other" / "inside", "x")
    (work / "d").mkdir()

    calls = synced(tmp_path, "swap('other', 'd', durable=True)")

    assert calls == [("renameat", "."), ("fsync", ".")]


@pytest.mark.parametrize(
    "call",
    [
        "swap('a', 'b')",
        "replace('a', 'other/a')",
        "rename_noreplace('a', 'c')",
        "symlink('a', 'current')",
    ],
)
def test_without_durable_nothing_is_synced(work: Path, tmp_path: Path, call: str) -> None:
    assert [name for name, _ in synced(tmp_path, call)] in (["renameat"], ["renameat", "renameat"])


DURABLY = (
    "import atomicswap\natomicswap._bind_early('')\n"
    + f"import os\n{MARKER}\n"
    + "try:\n"
    + "    atomicswap.{call}\n"
    + "except OSError as e:\n"
    + "    print(e.errno, repr(e.filename), repr(e.filename2), e.strerror)\n"
)


@pytest.mark.parametrize(
    ("call", "done"),
    [
        ("swap('a', 'b', durable=True)", "the exchange is done"),
        ("replace('a', 'b', durable=True)", "the new content is in place"),
        ("rename_noreplace('a', 'c', durable=True)", "the rename is done"),
    ],
)
def test_a_failed_sync_after_the_rename_says_it_is_done_but_not_durable(
    work: Path, call: str, done: str
) -> None:
    fsyncs_before = 2 if call.startswith("swap") else 1
    result = inject_after_marker(DURABLY.format(call=call), "fsync", "error=EIO", fsyncs_before + 1, cwd=work)

    assert result.stdout.startswith("5 'a' "), result.stderr
    assert result.stdout.endswith(f"Input/output error; {done}, but it is not yet durable\n")
    assert not (work / "a").exists() or (work / "a").read_text() == "b"  # the rename happened


def test_a_failed_sync_before_the_rename_changes_nothing(work: Path) -> None:
    result = inject_after_marker(
        DURABLY.format(call="replace('a', 'b', durable=True)"), "fsync", "error=EIO", 1, cwd=work
    )

    assert result.stdout == "5 'a' 'b' Input/output error; nothing was changed\n", result.stderr
    assert ((work / "a").read_text(), (work / "b").read_text()) == ("a", "b")


def test_a_durable_symlink_whose_sync_fails_says_the_link_is_in_place(work: Path) -> None:
    result = inject_after_marker(
        DURABLY.format(call="symlink('a', 'current', durable=True)"), "fsync", "error=EIO", 1, cwd=work
    )

    assert result.stdout == "5 'current' None Input/output error; the link is in place, but not yet durable\n"
    assert os.readlink(work / "current") == "a"
