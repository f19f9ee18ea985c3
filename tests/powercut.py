"""The power-cut harness: run a job on a recorded disk, then check the job's
promise on every disk a power cut could have left.

1. A filesystem is made once per run on a 300 MB sparse image on tmpfs (the
   base image; mkfs.xfs refuses less).
2. A copy of it is served by fuseblock.py, which logs every write and flush;
   a loop device over the served file holds the filesystem, which runs the
   job (powercut_jobs.py, in its own process) and is unmounted.
3. Crash states are rebuilt from the log, on one state file on tmpfs behind
   a second loop device: the base image, plus every write logged before the
   k-th flush, for each flush after the job's setup; and, per flush, a few
   seeded random subsets of the writes logged between it and the next one.
   Each is mounted (its journal replays, as after a reboot), checked with
   powercut_jobs.check(), and unmounted.

Everything is bounded by timeouts, and whatever a run sets up (FUSE server,
mounts, loop devices, files) is torn down by the context managers here, also
when a step fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fuseblock
import powercut_jobs

# Linux's lseek() whences for sparse files; PyPy 3.9's os lacks the names.
SEEK_DATA, SEEK_HOLE = getattr(os, "SEEK_DATA", 3), getattr(os, "SEEK_HOLE", 4)

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SIZE = 300 << 20
SHM = Path("/dev/shm")

# 4 KiB blocks, as on any disk: on 300 MB mkfs.ext4 would choose 1 KiB.
EXT4 = ("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "nodiscard")
# Per filesystem under test: mkfs command (image appended) and mount options.
# Discard stays off at mkfs: the image is fresh and sparse already.
FILESYSTEMS: dict[str, tuple[tuple[str, ...], str]] = {
    "ext4": (EXT4, ""),
    "ext4 noauto_da_alloc": (EXT4, "noauto_da_alloc"),
    "xfs": (("mkfs.xfs", "-q", "-f", "-K"), ""),
    "btrfs": (("mkfs.btrfs", "-q", "-f", "-K"), ""),
}
BLKFLSBUF = 0x1261  # <linux/fs.h>: write back and drop a block device's cache


def run(*command: str, timeout: float = 60) -> str:
    """Run a command; raise with its stderr if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def missing() -> str | None:
    """Why the power-cut test cannot run here, or None."""
    if sys.platform != "linux":
        return "the power-cut test needs Linux"
    if os.geteuid() != 0:
        return "the power-cut test needs root (FUSE mounts, loop devices, mkfs)"
    if not os.path.exists("/dev/fuse"):
        return "the power-cut test needs /dev/fuse (modprobe fuse)"
    if not SHM.is_dir():
        return "the power-cut test needs tmpfs at /dev/shm"
    for tool in ("losetup", "blkdiscard", "fallocate", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs"):
        if shutil.which(tool) is None:
            return f"the power-cut test needs {tool} (apt-get install e2fsprogs xfsprogs btrfs-progs)"
    try:
        run("losetup", "-f")
    except (RuntimeError, OSError) as e:
        return f"the power-cut test needs two free loop devices: {e}"
    return None


# Sparse files: the images are 300 MB, of which a few hundred KiB hold data.


def extents(path: Path) -> list[tuple[int, bytes]]:
    """The data regions of a sparse file, read into memory."""
    regions = []
    with open(path, "rb") as f:
        fd, end, offset = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while offset < end:  # each pass moves past one data region
            try:
                start = os.lseek(fd, offset, SEEK_DATA)
            except OSError:  # ENXIO: no data after offset
                break
            stop = os.lseek(fd, start, SEEK_HOLE)
            regions.append((start, os.pread(fd, stop - start, start)))
            offset = stop
    return regions


def restore(fd: int, base: list[tuple[int, bytes]], writes: list[fuseblock.Record]) -> None:
    """Make the file *fd* the base image plus *writes*, in order."""
    os.ftruncate(fd, 0)
    os.ftruncate(fd, SIZE)
    for offset, data in base:
        os.pwrite(fd, data, offset)
    for record in writes:
        if record.kind == "W":
            os.pwrite(fd, record.data, record.offset)
        else:
            fuseblock.punch_hole(fd, record.offset, record.length)


@contextlib.contextmanager
def loop_device(image: Path) -> Iterator[str]:
    device = run("losetup", "-f", "--show", str(image)).strip()
    try:
        yield device
    finally:
        run("losetup", "-d", device)


@contextlib.contextmanager
def mounted(device: str, point: Path, filesystem: str) -> Iterator[Path]:
    options = FILESYSTEMS[filesystem][1]
    run("mount", *(("-o", options) if options else ()), device, str(point))
    try:
        yield point
    finally:
        unmount(point)


def unmount(point: Path) -> None:
    try:
        run("umount", str(point))
    except RuntimeError:
        run("umount", "-l", str(point))  # a busy mount must not outlive the test
        raise


@contextlib.contextmanager
def fuse_server(point: Path, image: Path, log: Path) -> Iterator[subprocess.Popen[str]]:
    """fuseblock.py serving *image* at *point*, until the block ends."""
    server = subprocess.Popen(
        [sys.executable, str(HERE / "fuseblock.py"), str(point), str(image), str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # the server mounts first, or dies
        if line != "ready\n":
            server.wait(10)
            raise RuntimeError(f"fuseblock.py did not start: {server.stderr.read() if server.stderr else ''}")
        yield server
    finally:
        connection = fuse_connection(point)
        if connection is not None:
            try:
                subprocess.run(["umount", str(point)], capture_output=True, timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if fuse_connection(point) is not None:
            abort_fuse(connection or "")
            subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()


def fuse_connection(point: Path) -> str | None:
    """The FUSE connection mounted at *point* (its device minor), or None.

    Read from mountinfo: stat() on a stuck mount would wait on the server.
    """
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if fields[4] == str(point):
                return fields[2].split(":")[1]
    return None


def abort_fuse(connection: str) -> None:
    """End a stuck FUSE session, so that nothing waits on it forever."""
    with contextlib.suppress(OSError):
        Path("/sys/fs/fuse/connections", connection, "abort").write_text("1")


@dataclass
class Workspace:
    """A directory on tmpfs for one run, and the base images made in it."""

    path: Path
    bases: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)

    def base(self, filesystem: str) -> list[tuple[int, bytes]]:
        """The data of a freshly made *filesystem* image, made once."""
        command = FILESYSTEMS[filesystem][0]
        key = " ".join(command)
        if key not in self.bases:
            image = self.path / "base.img"
            with open(image, "wb") as f:
                f.truncate(SIZE)
            run(*command, str(image))
            run("fallocate", "--dig-holes", str(image))
            self.bases[key] = extents(image)
            image.unlink()
        return self.bases[key]


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    path = Path(tempfile.mkdtemp(prefix="atomicswap-powercut-", dir=SHM))
    try:
        yield Workspace(path)
    finally:
        shutil.rmtree(path)


# Recording a job.


def record(
    space: Workspace, filesystem: str, job: str, steps: int, options: tuple[str, ...]
) -> list[fuseblock.Record]:
    """Run *job* (powercut_jobs.py) on a recorded disk holding a fresh *filesystem*; the log."""

    def workload(root: Path, marks: Path) -> None:
        result = subprocess.run(
            [
                sys.executable,
                str(HERE / "powercut_jobs.py"),
                job,
                str(root),
                str(marks),
                str(steps),
                *options,
            ],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"the workload {job} {options} failed:\n{result.stderr}")

    return record_with(space, filesystem, workload)


def record_with(
    space: Workspace, filesystem: str, workload: Callable[[Path, Path], None]
) -> list[fuseblock.Record]:
    """Call workload(root, marks) with a fresh *filesystem* mounted at root, on
    a recorded disk, and marks the served marks file; unmount; the log."""
    served, log = space.path / "served.img", space.path / "log"
    fuse_point, point = space.path / "fuse", space.path / "mnt"
    fuse_point.mkdir(exist_ok=True)
    point.mkdir(exist_ok=True)
    with open(served, "wb") as f:
        restore(f.fileno(), space.base(filesystem), [])
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(fuse_server(fuse_point, served, log))
            device = stack.enter_context(loop_device(fuse_point / "disk.img"))
            stack.enter_context(mounted(device, point, filesystem))
            workload(point, fuse_point / "marks")
        return fuseblock.read_log(str(log))
    finally:
        served.unlink(missing_ok=True)
        log.unlink(missing_ok=True)


# Crash states.


@dataclass
class CrashState:
    writes: list[fuseblock.Record]  # applied to the base image, in order
    required: int  # the step that must be whole on it (0: none)
    name: str  # which state, for a report


def crash_states(log: list[fuseblock.Record], subsets: int, seed: str) -> list[CrashState]:
    """The disks a power cut after the job's setup could leave (see the module docstring)."""
    rng = random.Random(seed)
    writes: list[fuseblock.Record] = []
    flushes: list[tuple[int, int]] = []  # (writes before it, steps returned before it)
    returned, ready = 0, False
    for record in log:
        if record.kind == "M":
            text = record.data.decode()
            ready = ready or text == "ready\n"
            if text.startswith("end "):
                returned = int(text.split()[1])
        elif record.kind == "F":
            if ready:
                flushes.append((len(writes), returned))
        else:
            writes.append(record)
    if not ready:
        raise RuntimeError("the workload never became ready")
    flushes.append((len(writes), returned))  # the end: everything written, the disk unmounted
    states: dict[int, CrashState] = {}
    for k, (count, required) in enumerate(flushes):
        # Equal write counts are one state; the later flush's requirement holds for it.
        states[count] = CrashState(writes[:count], required, f"before flush {k}")
    result = list(states.values())
    for k, ((start, _), (stop, required)) in enumerate(zip(flushes, flushes[1:])):
        if stop - start < 2:
            continue  # nothing that the prefix states do not cover
        for n in range(subsets):
            chosen = [w for w in writes[start:stop] if rng.random() < 0.5]
            result.append(CrashState(writes[:start] + chosen, required, f"after flush {k}, subset {n}"))
    return result


@dataclass
class Cell:
    filesystem: str
    job: str
    options: tuple[str, ...] = ()
    steps: int = 3

    @property
    def durable(self) -> bool:
        return "nondurable" not in self.options

    def __str__(self) -> str:
        return " ".join((self.job, *self.options))


# How many fresh checks must confirm a bad state before it counts as bad.
RECHECKS = 2


@dataclass
class Result:
    cell: Cell
    states: int = 0
    bad: list[str] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    # Bad at the first check, good when checked again from scratch: the
    # check's own error, reported apart (see check_state's callers).
    unsteady: list[str] = field(default_factory=list)


@contextlib.contextmanager
def checker(space: Workspace, name: str = "state") -> Iterator[tuple[int, str, Path]]:
    """The state file (open), the loop device over it, and a mount point."""
    image, point = space.path / f"{name}.img", space.path / f"{name}.mnt"
    point.mkdir(exist_ok=True)
    with open(image, "wb+") as f:
        f.truncate(SIZE)  # before the loop device takes its size
        try:
            with loop_device(image) as device:
                yield f.fileno(), device, point
        finally:
            image.unlink()


def check_state(
    cell: Cell, state: CrashState, base: list[tuple[int, bytes]], fd: int, device: str, point: Path
) -> tuple[str, str | None]:
    # The loop device's own cache still holds the previous state's blocks:
    # written back (should any be dirty) before the state file is rebuilt,
    # dropped after.
    with open(device, "rb") as dev:
        fcntl.ioctl(dev.fileno(), BLKFLSBUF)
        restore(fd, base, state.writes)
        fcntl.ioctl(dev.fileno(), BLKFLSBUF)
    try:
        with mounted(device, point, cell.filesystem):
            return powercut_jobs.check(cell.job, point, state.required, cell.steps, cell.durable)
    except RuntimeError as e:
        return "unmountable", f"does not mount: {e}"


def run_cell(space: Workspace, cell: Cell, subsets: int) -> Result:
    """Record *cell*'s job, then check every crash state of it."""
    started = time.monotonic()
    log = record(space, cell.filesystem, cell.job, cell.steps, cell.options)
    result = Result(cell)
    base = space.base(cell.filesystem)
    with checker(space) as (fd, device, point):
        for state in crash_states(log, subsets, f"{cell.filesystem} {cell}"):
            label, bad = check_state(cell, state, base, fd, device, point)
            # A state's verdict depends on its bytes alone: a bad one must stay
            # bad when checked again from scratch, on a new file and loop
            # device, twice (a writer that skips a sync is bad every time).
            for _ in range(RECHECKS if bad else 0):
                with checker(space, "recheck") as again:
                    label_again, bad_again = check_state(cell, state, base, *again)
                if bad_again is None:
                    result.unsteady.append(f"{state.name}: {bad}, then {label_again}")
                    label, bad = label_again, bad_again
                    break
            result.states += 1
            result.seen[label] += 1
            if bad:
                result.bad.append(f"{state.name}: {bad}")
    result.seconds = time.monotonic() - started
    return result


def table(results: list[Result]) -> str:
    """The figures, one line per cell."""
    lines = [
        f"{'filesystem':<21} {'cell':<38} {'states':>6} {'bad':>4} {'seconds':>7}  seen",
    ]
    for r in results:
        seen = ", ".join(f"{label} {n}" for label, n in sorted(r.seen.items()))
        if r.unsteady:
            seen += f"; unsteady checks {len(r.unsteady)}: {'; '.join(r.unsteady)}"
        lines.append(
            f"{r.cell.filesystem:<21} {r.cell!s:<38} {r.states:>6} {len(r.bad):>4} {r.seconds:>7.1f}  {seen}"
        )
    return "\n".join(lines)
