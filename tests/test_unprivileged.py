"""What a user who is not root keeps: setuid bits, durable trees they made
unreadable, publication in a directory they may write but not read, and old
trees whose directories they made read-only.

When the tests run as root, each job runs in a forked child as uid 65534
(conftest.as_nobody), in a directory that user owns.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import as_nobody

import atomicswap
from atomicswap import atomic_dir, atomic_write

NOBODY = 65534


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory that uid 65534 owns (or the test's user, when not root)."""
    top = Path(tempfile.mkdtemp())
    os.chmod(top, 0o755)
    if os.geteuid() == 0:
        os.chown(top, NOBODY, NOBODY)
    try:
        yield top
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(top)], check=False)
        shutil.rmtree(top)


def unprivileged(action: Callable[[], dict[str, object]]) -> dict[str, object]:
    return as_nobody(action) if os.geteuid() == 0 else action()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_users_own_setuid_file_keeps_its_setuid_bit_when_rewritten(home: Path) -> None:
    tool = home / "tool"

    def rewrite() -> dict[str, object]:
        tool.write_text("#!/bin/sh\necho old\n")
        os.chmod(tool, 0o4755)
        with atomic_write(tool) as f:
            f.write("#!/bin/sh\necho new\n")
        return {"mode": oct(mode(tool)), "content": tool.read_text()}

    assert unprivileged(rewrite) == {"mode": oct(0o4755), "content": "#!/bin/sh\necho new\n"}


def test_perms_with_setuid_give_setuid_to_a_non_root_writer(home: Path) -> None:
    def create() -> dict[str, object]:
        with atomic_write(home / "tool", perms=0o4755) as f:
            f.write("#!/bin/sh\n")
        return {"mode": oct(mode(home / "tool"))}

    assert unprivileged(create) == {"mode": oct(0o4755)}


def stage_unreadable(staging: Path) -> None:
    """A file with mode 000 and a directory with mode 0o311: its owner cannot read either."""
    (staging / "secret").write_text("secret")
    (staging / "secret").chmod(0)
    (staging / "box").mkdir()
    (staging / "box" / "inside").write_text("inside")
    (staging / "box").chmod(0o311)


def test_a_durable_tree_may_hold_what_its_owner_cannot_read(home: Path) -> None:
    def publish() -> dict[str, object]:
        with atomic_dir(home / "site") as staging:
            stage_unreadable(staging)
        return {"entries": sorted(os.listdir(home / "site")), "left": sorted(os.listdir(home))}

    assert unprivileged(publish) == {"entries": ["box", "secret"], "left": ["site"]}
    assert (mode(home / "site" / "secret"), mode(home / "site" / "box")) == (0, 0o311)


def test_the_per_file_sync_also_syncs_what_its_owner_cannot_read(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsync walk macOS uses, where there is no syncfs(), run here on
    Linux by making _syncfs report ENOTSUP as it does there. Modes are kept."""

    def no_syncfs(fd: int) -> None:
        raise OSError(95, "this platform has no syncfs()")

    monkeypatch.setattr(atomicswap, "_syncfs", no_syncfs)

    def publish() -> dict[str, object]:
        with atomic_dir(home / "site") as staging:
            stage_unreadable(staging)
        return {"entries": sorted(os.listdir(home / "site"))}

    assert unprivileged(publish) == {"entries": ["box", "secret"]}
    assert (mode(home / "site" / "secret"), mode(home / "site" / "box")) == (0, 0o311)


def test_a_durable_tree_is_published_in_a_directory_its_owner_cannot_read(home: Path) -> None:
    """A -wx drop box: the parent cannot be opened to fsync it, so its
    filesystem is synced instead, through the published tree."""
    box = home / "box"
    box.mkdir()
    if os.geteuid() == 0:
        os.chown(box, NOBODY, NOBODY)
    box.chmod(0o333)

    def publish() -> dict[str, object]:
        with atomic_dir(box / "site") as staging:
            (staging / "f").write_text("x")
        return {"entries": sorted(os.listdir(box / "site"))}

    assert unprivileged(publish) == {"entries": ["f"]}
    box.chmod(0o755)
    assert os.listdir(box) == ["site"]


def test_publishing_over_read_only_trees_leaves_no_hidden_copies(home: Path) -> None:
    def publish_twice() -> dict[str, object]:
        for version in ("1", "2"):
            with atomic_dir(home / "site") as staging:
                (staging / "sub").mkdir()
                (staging / "sub" / "version").write_text(version)
                (staging / "sub").chmod(0o555)
                staging.chmod(0o555)
        return {"left": sorted(os.listdir(home)), "version": (home / "site" / "sub" / "version").read_text()}

    assert unprivileged(publish_twice) == {"left": ["site"], "version": "2"}
