"""Cost of a durable atomic_dir() publication against a non-durable one.

Each publication stages FILES files of SIZE bytes and publishes them over the
previous tree. Three variants alternate in blocks within one run:
- durable=False: no sync at all;
- durable=True: one syncfs() of the staging filesystem, then the parent's fsync;
- per-file: durable=True with syncfs() made unavailable, as on macOS, so that
  every staged file and directory is fsynced one by one.
The median block of each is reported, with its ratio to durable=False.

Where it runs as root, the main figures come from an ext4 image loop-mounted
from a file on tmpfs: the disk under it then costs nothing, and what is
measured is the kernel's work for each variant, not a device's noise. The
directory given with --dir (default: a temporary directory on the root
filesystem) is measured as well.

Usage: python benchmarks/bench_dir.py [--dir DIR] [--blocks N] [--files N]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import atomicswap

SIZE = 2048
DATA = os.urandom(SIZE)
REAL_SYNCFS = atomicswap._syncfs


def no_syncfs(fd: int) -> None:
    raise OSError(errno.ENOTSUP, "syncfs() made unavailable for the per-file variant")


def publish(target: str, files: int, durable: bool) -> None:
    with atomicswap.atomic_dir(target, durable=durable) as staging:
        for i in range(files):
            with open(staging / f"f{i:05d}", "wb") as f:
                f.write(DATA)


def variants() -> dict[str, Callable[[str, int], None]]:
    def per_file(target: str, files: int) -> None:
        atomicswap._syncfs = no_syncfs
        try:
            publish(target, files, durable=True)
        finally:
            atomicswap._syncfs = REAL_SYNCFS

    return {
        "durable=False": lambda target, files: publish(target, files, durable=False),
        "durable=True (syncfs)": lambda target, files: publish(target, files, durable=True),
        "durable=True, per-file fsync": per_file,
    }


def measure(directory: str, blocks: int, files: int) -> dict[str, float]:
    """Median seconds per publication of each variant, blocks alternating."""
    target = os.path.join(directory, "site")
    runs = variants()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm up: the first publication creates the target
        run(target, files)
    for _ in range(blocks):
        for name, run in runs.items():
            os.sync()  # each block starts with nothing dirty from the one before
            start = time.perf_counter()
            run(target, files)
            times[name].append(time.perf_counter() - start)
    shutil.rmtree(target)
    return {name: statistics.median(values) for name, values in times.items()}


@contextlib.contextmanager
def loop_mounted(kind: str, size_mib: int) -> Iterator[str]:
    """A fresh *kind* filesystem in a sparse image on /dev/shm, loop-mounted; root only."""
    scratch = tempfile.mkdtemp(dir="/dev/shm")
    image, mount_point = os.path.join(scratch, "image"), os.path.join(scratch, "mnt")
    os.mkdir(mount_point)
    try:
        with open(image, "wb") as f:
            f.truncate(size_mib << 20)
        subprocess.run([f"mkfs.{kind}", "-q", *(["-F"] if kind == "ext4" else []), image], check=True)
        subprocess.run(["mount", "-o", "loop", image, mount_point], check=True)
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", mount_point], check=True)
    finally:
        shutil.rmtree(scratch)


def report(where: str, medians: dict[str, float], files: int) -> None:
    base = medians["durable=False"]
    print(f"\n{where}: {files} files of {SIZE} bytes, median block")
    print("| variant | ms per publication | ratio to durable=False |")
    print("| --- | --- | --- |")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / base:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="a directory on the filesystem to measure as well")
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    print(f"Linux {os.uname().release}, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if os.geteuid() == 0 and shutil.which("mkfs.ext4"):
        with loop_mounted("ext4", 256) as mount_point:
            report("ext4 loop-mounted from tmpfs", measure(mount_point, args.blocks, args.files), args.files)
    else:
        print("(not root, or no mkfs.ext4: the ext4-on-tmpfs figures are skipped)")
    with tempfile.TemporaryDirectory(dir=args.dir or os.path.expanduser("~")) as directory:
        report(f"root filesystem ({directory})", measure(directory, args.blocks, args.files), args.files)


if __name__ == "__main__":
    main()
