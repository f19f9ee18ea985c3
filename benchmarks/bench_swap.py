"""Per-call cost of swap() against the bare system call it wraps.

Times, in alternating blocks within one run so that they share the machine's
state, and reports the median block of each:
  swap()        atomicswap.swap(str, str)
  bare ctypes   libc renameat2 bound once as swap() binds it (restype, no
                argtypes), called with bytes: what swap() adds is the ratio
  + argtypes    the same, with argtypes declared, for reference
  naive         a wrapper in the style of atomicswap 0.2.3: syscall() with no
                argtypes, os.fsencode on each call, errno check
  os.rename     one os.rename call, timed as a round trip a -> c -> a

Usage: python benchmarks/bench_swap.py [--dir DIR] [--calls N] [--blocks N]
Linux only (the bare and naive variants call renameat2 directly).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import atomicswap

AT_FDCWD = -100
RENAME_EXCHANGE = 2


def bare_ctypes(argtypes: bool) -> Callable[[], object]:
    renameat2 = ctypes.CDLL(None, use_errno=True)["renameat2"]
    renameat2.restype = ctypes.c_int
    if argtypes:
        renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    return lambda: renameat2(AT_FDCWD, b"a", AT_FDCWD, b"b", RENAME_EXCHANGE)


def naive_wrapper() -> Callable[[], object]:
    libc = ctypes.CDLL(None, use_errno=True)
    number = atomicswap._syscall_number(os.uname().machine, ctypes.sizeof(ctypes.c_void_p) * 8, "")

    def naive_swap(first: str, second: str) -> None:
        if libc.syscall(number, AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), first, None, second)

    return lambda: naive_swap("a", "b")


def os_rename() -> Callable[[], object]:
    def round_trip() -> None:
        os.rename("a", "c")
        os.rename("c", "a")

    return round_trip


def time_block(call: Callable[[], object], calls: int, per_call: int) -> float:
    """Microseconds per system call for one block of *calls* calls."""
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / (calls * per_call) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default=None, help="filesystem to measure on (default: the system temp dir)")
    parser.add_argument("--calls", type=int, default=5000, help="calls per block")
    parser.add_argument("--blocks", type=int, default=31, help="blocks per variant")
    args = parser.parse_args()

    swap = atomicswap.swap  # looked up once, as the other variants are
    variants: dict[str, tuple[Callable[[], object], int]] = {
        "swap()": (lambda: swap("a", "b"), 1),
        "bare ctypes": (bare_ctypes(argtypes=False), 1),
        "bare ctypes + argtypes": (bare_ctypes(argtypes=True), 1),
        "naive (0.2.3 style)": (naive_wrapper(), 1),
        "os.rename": (os_rename(), 2),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        os.chdir(work)
        for name in ("a", "b"):
            with open(name, "w") as f:
                f.write(name)
        for call, per_call in variants.values():
            time_block(call, args.calls // 10, per_call)  # warm up: bind, fill caches
        names = list(variants)
        for block in range(args.blocks):
            # Each round starts with a different variant, so none always runs first.
            for name in names[block % len(names) :] + names[: block % len(names)]:
                call, per_call = variants[name]
                results[name].append(time_block(call, args.calls, per_call))
        os.chdir("/")

    medians = {name: statistics.median(times) for name, times in results.items()}
    print(
        f"{os.uname().sysname} {os.uname().release}, Python {sys.version.split()[0]}, "
        f"{args.blocks} blocks of {args.calls} calls, on {args.dir or tempfile.gettempdir()}"
    )
    for name, median in medians.items():
        print(f"  {name:<24} {median:7.3f} us/call")
    print(f"  swap() / bare ctypes     {medians['swap()'] / medians['bare ctypes']:7.3f}")
    print(f"  swap() / naive           {medians['swap()'] / medians['naive (0.2.3 style)']:7.3f}")


if __name__ == "__main__":
    main()
