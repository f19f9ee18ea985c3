"""Every system call a job makes, failed in turn, and real full and read-only
filesystems: the target stays old or new, nothing is left, no descriptor
leaks, and the error names the user's path. faultsweep.py says how.

The default sweep fails every call in each scenario's window with EIO, each
other errno once per job, and the cleanup after one call of each syscall;
ATOMICSWAP_SWEEP=full fails every call with every errno. Deselect with
``-m "not slow"``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import faultsweep
import pytest
from faultsweep import SCENARIOS, Run, Scenario

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="strace and tmpfs are Linux's"),
]

FULL = os.environ.get("ATOMICSWAP_SWEEP") == "full"


class Sweep(NamedTuple):
    runs: list[Run]
    calls: dict[str, list[faultsweep.Call]]  # each scenario's, from its run without faults
    seconds: float


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    if faultsweep.strace_path() is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    start = time.monotonic()
    runs, calls = faultsweep.sweep(SCENARIOS.values(), tmp_path_factory.mktemp("sweep"), full=FULL)
    return Sweep(runs, calls, time.monotonic() - start)


def test_every_injected_fault_keeps_the_invariants(swept: Sweep, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + faultsweep.totals(swept.runs, swept.seconds))
    found = faultsweep.violations(swept.runs)
    bad = sum(1 for r in swept.runs if r.violations)
    assert not found, f"{bad} of {len(swept.runs)} runs:\n" + "\n".join(found)


def test_the_sweep_fails_every_call_the_library_makes(swept: Sweep) -> None:
    made = {
        (name, c.syscall, c.occurrence)
        for name, calls in swept.calls.items()
        for c in calls
        if c.library and not faultsweep.forced(SCENARIOS[name], c)
    }
    failed = {(r.fault.scenario, r.fault.syscall, r.fault.occurrence) for r in swept.runs if r.fault}
    assert made <= failed
    assert faultsweep.problems(swept.runs) == []


def test_the_sweep_sees_a_write_in_place_torn(tmp_path: Path) -> None:
    # The recipe atomic_write() exists to replace: a failed write leaves the file empty.
    in_place = Scenario(
        "in_place",
        {"target.txt": "old"},
        {"target.txt": "new"},
        "    fd = os.open('target.txt', os.O_WRONLY | os.O_TRUNC)\n"
        "    try:\n"
        "        os.write(fd, b'new')\n"
        "    finally:\n"
        "        os.close(fd)\n",
        "target.txt",
        ("target.txt",),
    )
    if faultsweep.strace_path() is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    calls = faultsweep.discover(in_place, tmp_path)
    write = next(c for c in calls if c.library and c.syscall == "write")
    fault = faultsweep.Fault("in_place", "write", "ENOSPC", write.occurrence)
    run = faultsweep.inject(in_place, fault, calls, tmp_path)
    assert run.report["errno"] == "ENOSPC"
    assert run.violations == ["filename was None", "target torn"]


def test_the_sweep_sees_a_leaked_descriptor_and_a_leftover(tmp_path: Path) -> None:
    sloppy = Scenario(
        "sloppy",
        {"target.txt": "old"},
        {"target.txt": "new"},
        "    fd = os.open('.target.txt.tmp', os.O_WRONLY | os.O_CREAT)\n"
        "    os.write(fd, b'new')\n"
        "    os.fsync(fd)\n"
        "    os.rename('.target.txt.tmp', 'target.txt')\n",
        "target.txt",
        ("target.txt",),
    )
    if faultsweep.strace_path() is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    calls = faultsweep.discover(sloppy, tmp_path)
    run = faultsweep.inject(sloppy, faultsweep.Fault("sloppy", "fsync", "EIO", 1), calls, tmp_path)
    assert run.violations == [
        "filename was None",
        "leftover .target.txt.tmp",
        "fd leaked: <dir>/.target.txt.tmp",
    ]


def test_a_fault_still_lands_when_the_mount_table_grows_after_discovery(tmp_path: Path) -> None:
    """The reads of /proc/self/mountinfo are one per page of the table: when
    another program mounts something between discovery and injection (as the
    other CI job's tests do), the count strace goes by shifts. Each mountinfo
    reading of the window is failed, with the table grown by a page since."""
    if faultsweep.strace_path() is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    scenario = SCENARIOS["replace_tree"]
    calls = faultsweep.discover(scenario, tmp_path)
    reads = [c for c in calls if c.library and c.syscall == "read"]
    assert len(reads) == 2  # one reading before the exchange, one after, each counted once
    start = mount_table_size()
    mounted: list[Path] = []
    try:
        while mount_table_size() < start + 4096:
            assert len(mounted) < 200, "200 mounts did not grow the mount table by a page"
            point = tmp_path / f"{len(mounted):03}-{'x' * 60}"
            point.mkdir()
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "none", str(point)], check=True, timeout=30
            )
            mounted.append(point)
        runs = [
            faultsweep.inject(
                scenario, faultsweep.Fault(scenario.name, "read", "EIO", c.occurrence), calls, tmp_path
            )
            for c in reads
        ]
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", str(point)], check=True, timeout=30)
    assert [r.problem for r in runs] == ["", ""]
    assert [r.violations for r in runs] == [[], []]
    assert [r.report["errno"] for r in runs] == ["EIO", "EIO"]


def mount_table_size() -> int:
    with open("/proc/self/mountinfo", "rb") as f:
        return len(f.read())


# --- Real faults, from filesystems mounted by the tests ---------------------------


@contextmanager
def tmpfs(point: Path, options: str) -> Iterator[Path]:
    """A fresh tmpfs mounted on *point* with *options*."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "none", str(point)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {result.stderr.strip()}")
    try:
        yield point
    finally:
        # A descriptor a failing child left open would keep a plain umount busy.
        if subprocess.run(["umount", str(point)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], check=True, timeout=30)


def real_fault(scenario: Scenario, fixture: Path, phase: str = "both") -> tuple[dict[str, object], list[str]]:
    """Run *scenario* in *fixture* without strace; its report and violations."""
    report, _ = faultsweep.run_child(scenario, fixture, phase=phase)
    return report, faultsweep.check(scenario, report, faultsweep.read_tree(fixture), fixture)


# Creating anything needs an inode; replace() and rename_noreplace() need none.
# tmpfs counts extended attributes against the same budget, so a tree with
# them could not be built with every inode taken.
NEEDS_AN_INODE = [
    name for name, s in SCENARIOS.items() if name.startswith(("write_", "dir_", "symlink")) and not s.prepare
]
# The link() fallback needs strace to make RENAME_NOREPLACE fail; the sweep has it.
REAL = [name for name, s in SCENARIOS.items() if not s.forced]
PAGE = 4096  # tmpfs counts its size in pages; a file of a few bytes takes one


@pytest.mark.parametrize("name", [name for name in SCENARIOS if name.startswith("write_")])
def test_a_full_filesystem_keeps_the_invariants(tmp_path: Path, name: str) -> None:
    # A filler takes every page the tree leaves free, so the library's own
    # flush of a page of data fails (the user's write only fills a buffer).
    scenario = SCENARIOS[name]
    filler = "f" * (16 * PAGE - PAGE * len(scenario.before))
    full = replace(
        scenario,
        before={**scenario.before, "filler": filler},
        after={**scenario.after, "filler": filler, "target.txt": "x" * PAGE},
        code=scenario.code.replace("f.write('new')", f"f.write('x' * {PAGE})"),
    )
    assert full.code != scenario.code
    with tmpfs(tmp_path / "mnt", f"size={16 * PAGE}") as fixture:
        report, violations = real_fault(full, fixture)
    assert report.get("errno") == "ENOSPC", report
    assert violations == [], report


@pytest.mark.parametrize("name", NEEDS_AN_INODE)
def test_a_filesystem_out_of_inodes_keeps_the_invariants(tmp_path: Path, name: str) -> None:
    scenario = SCENARIOS[name]
    # Every inode in use once the tree is built: the root's and one per entry.
    inodes = 1 + count_entries(scenario.before)
    with tmpfs(tmp_path / "mnt", f"size=1m,nr_inodes={inodes}") as fixture:
        report, violations = real_fault(scenario, fixture)
    assert report.get("errno") == "ENOSPC", report
    assert violations == [], report


@pytest.mark.parametrize("name", REAL)
def test_a_read_only_filesystem_keeps_the_invariants(tmp_path: Path, name: str) -> None:
    scenario = SCENARIOS[name]
    with tmpfs(tmp_path / "mnt", "size=1m") as fixture:
        report, _ = faultsweep.run_child(scenario, fixture, phase="setup")
        assert report["result"] == "ok"
        remount(fixture, "ro")
        try:
            report, violations = real_fault(scenario, fixture, "operate")
        finally:
            remount(fixture, "rw")
    assert report.get("errno") == "EROFS", report
    assert violations == [], report


def count_entries(tree: faultsweep.Tree) -> int:
    return sum(1 + (count_entries(node) if isinstance(node, dict) else 0) for node in tree.values())


def remount(point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(point)], check=True, timeout=30)
