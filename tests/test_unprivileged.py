"""What a user who is not root keeps: setuid bits, durable trees they made
unreadable, publication in a directory they may write but not read, and old
trees whose directories they made read-only.

When the tests run as root, each job runs in a forked child as uid 65534
(conftest.as_nobody), in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

import pytest
from conftest import as_nobody, run_under_strace

import atomicswap
from atomicswap import atomic_dir, atomic_write, rename_noreplace, replace, swap, symlink

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


def test_a_users_own_setuid_tool_in_a_group_they_are_not_in_keeps_setuid(home: Path) -> None:
    """The group cannot be kept, so setgid would go with it; the owner is the
    writer, so setuid stays."""
    tool = home / "tool"
    tool.write_text("#!/bin/sh\necho old\n")
    if os.geteuid() == 0:
        os.chown(tool, NOBODY, 0)
    tool.chmod(0o4755)

    def rewrite() -> dict[str, object]:
        with atomic_write(tool) as f:
            f.write("#!/bin/sh\necho new\n")
        return {"mode": oct(mode(tool)), "owner": tool.stat().st_uid == os.geteuid()}

    assert unprivileged(rewrite) == {"mode": oct(0o4755), "owner": True}


@pytest.fixture
def wx(home: Path) -> Path:
    """A directory of home that its owner may write and search but not read."""
    wx = home / "wx"
    wx.mkdir()
    if os.geteuid() == 0:
        os.chown(wx, NOBODY, NOBODY)
    wx.chmod(0o300)
    return wx


def test_a_durable_symlink_is_made_in_a_directory_its_owner_cannot_read(wx: Path) -> None:
    def link() -> dict[str, object]:
        symlink("target", wx / "link", durable=True)
        return {"target": os.readlink(wx / "link")}

    assert unprivileged(link) == {"target": "target"}


def test_a_durable_write_its_writer_cannot_read_is_made_in_a_directory_they_cannot_read(wx: Path) -> None:
    def write_secret() -> dict[str, object]:
        with atomic_write(wx / "secret", perms=0o200, durable=True) as f:
            f.write("secret")
        return {"mode": oct(mode(wx / "secret"))}

    assert unprivileged(write_secret) == {"mode": oct(0o200)}
    assert (wx / "secret").read_text() == "secret"


# Each job on root's files a and b, and what is where afterwards.
MOVES: dict[str, tuple[Callable[[Path], None], dict[str, str]]] = {
    "replace": (lambda home: replace(home / "a", home / "b", durable=True), {"b": "a"}),
    "rename_noreplace": (
        lambda home: rename_noreplace(home / "a", home / "c", durable=True),
        {"b": "b", "c": "a"},
    ),
    "swap": (lambda home: swap(home / "a", home / "b", durable=True), {"a": "b", "b": "a"}),
}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs files owned by another user")
@pytest.mark.parametrize(("job", "after"), MOVES.values(), ids=MOVES.keys())
def test_a_file_its_mover_may_not_read_is_moved_durably(
    home: Path, job: Callable[[Path], None], after: dict[str, str]
) -> None:
    """Root's files with mode 0o600 (a rotated log, say) in uid 65534's own
    directory: it may rename them, not open them to fsync them."""
    for name in ("a", "b"):
        (home / name).write_text(name)
        (home / name).chmod(0o600)

    def move() -> dict[str, object]:
        job(home)
        return {}

    assert unprivileged(move) == {}
    assert {name: (home / name).read_text() for name in sorted(os.listdir(home))} == after


def test_the_per_file_sync_climbs_out_of_a_staged_directory_its_owner_cannot_read(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsync walk of platforms without syncfs() (macOS, FreeBSD), run here
    by making _syncfs report ENOTSUP as it does there: a -wx directory with a
    subdirectory, which the walk enters and must leave again through ".."."""

    def no_syncfs(fd: int) -> None:
        raise OSError(errno.ENOTSUP, "this platform has no syncfs()")

    monkeypatch.setattr(atomicswap, "_syncfs", no_syncfs)

    def publish() -> dict[str, object]:
        with atomic_dir(home / "site", durable=True) as staging:
            (staging / "wx" / "sub").mkdir(parents=True)
            (staging / "wx" / "sub" / "f").write_text("x")
            (staging / "wx").chmod(0o311)
        return {"left": sorted(os.listdir(home))}

    assert unprivileged(publish) == {"left": ["site"]}
    assert mode(home / "site" / "wx") == 0o311
    assert (home / "site" / "wx" / "sub" / "f").read_text() == "x"


# As uid 65534: replace site, which holds locked (mode 000), by new. A second
# thread waits for the exchange, then, while the removal is held up in its
# chmod of locked, moves locked away and puts a symlink to victim there.
CHMOD_RACE = """
import errno, os, threading, time, atomicswap
atomicswap._bind_early('')
os.setgroups([]); os.setgid(65534); os.setuid(65534)

def put_a_symlink_in_its_place():
    for _ in range(500):
        if os.path.lexists('new/locked'):  # the old tree is at new now
            break
        time.sleep(0.01)
    time.sleep(0.5)
    os.rename('new/locked', 'new/moved')
    os.symlink(os.path.abspath('victim'), 'new/locked')

racer = threading.Thread(target=put_a_symlink_in_its_place)
racer.start()
try:
    atomicswap.replace('new', 'site')
    print('replaced')
except OSError as e:
    print(errno.errorcode[e.errno])
racer.join()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the script drops to uid 65534 itself")
def test_making_an_unreadable_old_directory_removable_never_chmods_a_symlink_swapped_in(home: Path) -> None:
    """strace holds every chmod for 1.5 s, so the swap lands between the
    removal's look at locked and its chmod; the removal then meets the
    symlink and stops, and victim, outside the tree, keeps its mode."""
    (home / "victim").write_text("outside")
    (home / "victim").chmod(0o600)
    (home / "site" / "locked").mkdir(parents=True)
    (home / "new").mkdir()
    for path in ("victim", "site", "site/locked", "new"):
        os.chown(home / path, NOBODY, NOBODY)
    (home / "site" / "locked").chmod(0)

    result = run_under_strace(
        CHMOD_RACE,
        *("-e", "trace=chmod,fchmodat", "-e", "inject=chmod,fchmodat:delay_enter=1500000"),
        cwd=home,
    )

    assert result.stdout in ("ELOOP\n", "ENOTDIR\n"), result.stderr  # O_NOFOLLOW, O_DIRECTORY: either
    assert mode(home / "victim") == 0o600
    assert (home / "victim").read_text() == "outside"
    assert os.readlink(home / "new" / "locked") == str(home / "victim")


# ---- Another user's files in a sticky directory (/tmp) ----------------------------


@contextlib.contextmanager
def protected(symlinks: int, regular: int) -> Iterator[None]:
    """fs.protected_symlinks and fs.protected_regular set for the block
    (systemd's defaults are 1 and 1; this machine may have 0), then restored."""
    if os.geteuid() != 0:
        pytest.skip("setting fs.protected_* needs root")
    paths = {
        Path("/proc/sys/fs/protected_symlinks"): symlinks,
        Path("/proc/sys/fs/protected_regular"): regular,
    }
    if not all(path.exists() for path in paths):
        pytest.skip("no fs.protected_symlinks or fs.protected_regular here")
    import fcntl

    # Another test run on the machine (CI runs two suites at once) may set
    # them too: one at a time, or the last to restore could restore the other's.
    with open("/tmp/atomicswap-tests-fs-protected.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = {path: path.read_text() for path in paths}
        try:
            for path, value in paths.items():
                path.write_text(str(value))
            yield
        finally:
            for path, old in before.items():
                path.write_text(old)


@pytest.mark.parametrize(
    ("symlinks", "regular", "dir_mode"), [(0, 0, 0o1777), (1, 1, 0o1777), (1, 2, 0o1770)]
)
@pytest.mark.parametrize("mode", ["w", "a", "r+"])
@pytest.mark.parametrize("name", ["their-link", "their-file"])
def test_root_writing_another_users_file_in_a_sticky_directory_is_refused_as_open_refuses_it(
    tmp_path: Path, symlinks: int, regular: int, dir_mode: int, mode: str, name: str
) -> None:
    """In a sticky directory others can write (/tmp), uid 65534 plants a link
    to a file only root may read, and a file of its own that root would then
    write into: open() refuses both where fs.protected_symlinks and
    fs.protected_regular say so, and atomic_write() must refuse them too,
    rather than follow the link itself or rename over the file (and keep
    its owner, who could then read what root wrote). Level 2 of
    protected_regular covers group-writable sticky directories too."""
    with protected(symlinks, regular):
        by_open = write_in_sticky(tmp_path / "open", dir_mode, name, lambda path: open(path, mode))  # noqa: SIM115 (entered by write_in_sticky)
        by_atomic_write = write_in_sticky(
            tmp_path / "atomic",
            dir_mode,
            name,
            lambda path: atomic_write(path, mode),  # type: ignore[call-overload]
        )

    assert by_atomic_write == by_open
    world_writable = dir_mode & 0o002
    refused = symlinks and world_writable if name == "their-link" else regular and mode != "r+"
    assert by_open[0] == ("EACCES" if refused else "done")


def write_in_sticky(
    top: Path, dir_mode: int, name: str, opener: Callable[[Path], AbstractContextManager[IO[str]]]
) -> tuple[object, ...]:
    """Set up the sticky directory under *top*, write to *name* there with
    *opener*; what that did, the files' contents, and what is in the directory."""
    sticky = top / "sticky"
    sticky.mkdir(parents=True)
    os.chmod(sticky, dir_mode)
    os.chown(sticky, 0, NOBODY)
    shadow = write_file(top / "shadow", "root's secret", 0o600)
    os.symlink(shadow, sticky / "their-link")
    os.lchown(sticky / "their-link", NOBODY, NOBODY)
    theirs = write_file(sticky / "their-file", "", 0o644)
    os.chown(theirs, NOBODY, NOBODY)
    try:
        with opener(sticky / name) as f:
            f.write("written by root")
        done = "done"
    except OSError as e:
        done = errno.errorcode[e.errno or 0]
    return done, shadow.read_text(), theirs.read_text(), theirs.stat().st_uid, sorted(os.listdir(sticky))


def write_file(path: Path, content: str, mode: int) -> Path:
    path.write_text(content)
    path.chmod(mode)
    return path
