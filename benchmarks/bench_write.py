"""Cost of atomic_write() against the hand-written recipe it replaces.

The recipe: tempfile.mkstemp() in the target's directory, write, fsync,
os.replace(), fsync of the directory (the fsyncs only when durable). Both
replace an existing file with the same data; the variants alternate in blocks
within one run, and the median block of each is reported, per size and
durability, with the ratio atomic_write() / recipe.

Usage: python benchmarks/bench_write.py [--dir DIR] [--blocks N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import atomicswap


def recipe(path: str, data: bytes, durable: bool) -> None:
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def with_atomic_write(path: str, data: bytes, durable: bool) -> None:
    with atomicswap.atomic_write(path, "wb", durable=durable) as f:
        f.write(data)


def time_block(
    write: Callable[[str, bytes, bool], None], path: str, data: bytes, durable: bool, calls: int
) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        write(path, data, durable)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default=None, help="filesystem to measure on (default: the system temp dir)")
    parser.add_argument("--blocks", type=int, default=21, help="blocks per variant")
    args = parser.parse_args()

    where = args.dir or tempfile.gettempdir()
    print(f"{os.uname().sysname} {os.uname().release}, Python {sys.version.split()[0]}, on {where}")
    print(f"  {'size':>8} {'durable':>7} {'atomic_write':>13} {'recipe':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        path = os.path.join(work, "target")
        for size in (4 << 10, 1 << 20):
            data = os.urandom(size)
            for durable in (False, True):
                calls = 20 if durable else 200
                recipe(path, data, durable)  # the target exists, as when a file is rewritten
                ours: list[float] = []
                theirs: list[float] = []
                for block in range(args.blocks):
                    # Alternate which goes first, so neither always follows the other.
                    order = ((ours, with_atomic_write), (theirs, recipe))
                    for results, write in order if block % 2 else order[::-1]:
                        results.append(time_block(write, path, data, durable, calls))
                ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
                print(
                    f"  {size >> 10:>6} KiB {'yes' if durable else 'no':>7} {ours_median:>10.1f} us"
                    f" {theirs_median:>7.1f} us {ours_median / theirs_median:>6.3f}"
                )


if __name__ == "__main__":
    main()
