"""Cost of appending one line to a large file with atomic_write(path, "a").

The append copies the old file first. Where the filesystem can share blocks
(FICLONE: xfs with reflink, the mkfs default, and btrfs), that copy costs
milliseconds whatever the size; on ext4 it is a real copy, made in the kernel
(copy_file_range). Each is measured against a plain copy of the same file
(read and written, as cp --reflink=never does), in alternating blocks
within one run: the median of each is reported, and their ratio. The first
append is reported apart: on btrfs it makes the old file's extents shared,
once.

Each filesystem is made in a sparse image on /dev/shm and loop-mounted, so
the disk under it costs nothing and what is measured is the filesystem's
work: root only.

Usage: python benchmarks/bench_append.py [--size-mib N] [--blocks N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench_dir import loop_mounted

import atomicswap

LINE = b"one more line\n"


def plain_copy(source: str, target: str) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())


def append(path: str) -> None:
    with atomicswap.atomic_write(path, "ab") as f:  # durable, as by default
        f.write(LINE)


def measure(point: str, size_mib: int, blocks: int) -> tuple[float, float, float]:
    """The first append, then the median append and the median plain copy,
    in alternating blocks (three appends, then one copy)."""
    path, copy = os.path.join(point, "big"), os.path.join(point, "copy")
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(chunk)
    os.sync()
    start = time.perf_counter()
    append(path)  # the first: btrfs makes the old file's extents shared here
    first = time.perf_counter() - start
    appends, copies = [], []
    for _ in range(blocks):
        os.sync()
        for _ in range(3):
            start = time.perf_counter()
            append(path)
            appends.append(time.perf_counter() - start)
        os.sync()
        start = time.perf_counter()
        plain_copy(path, copy)
        copies.append(time.perf_counter() - start)
        os.unlink(copy)
    assert os.path.getsize(path) == (size_mib << 20) + (1 + 3 * blocks) * len(LINE)
    return first, statistics.median(appends), statistics.median(copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_append.py loop-mounts filesystems: run it as root")
    print(f"Linux {os.uname().release}, Python {sys.version.split()[0]}; a {args.size_mib} MiB file")
    print("| filesystem | first append | append one line | plain copy | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for kind in ("xfs", "btrfs", "ext4"):
        if shutil.which(f"mkfs.{kind}") is None:
            print(f"| {kind} | (mkfs.{kind} is not installed) | | | |")
            continue
        with loop_mounted(kind, 3 * args.size_mib + 512) as point:
            first, appended, copied = measure(point, args.size_mib, args.blocks)
        figures = f"{first * 1e3:.1f} ms | {appended * 1e3:.1f} ms | {copied * 1e3:.1f} ms"
        print(f"| {kind} | {figures} | {appended / copied:.4f} |")


if __name__ == "__main__":
    main()
