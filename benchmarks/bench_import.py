"""What `import atomicswap` costs, against the `import ctypes, platform` it avoids.

Runs `python -X importtime -c "import ..."` in fresh interpreters, alternating
the two, and reports the median of the cumulative microseconds that importtime
gives for each top-level import: with -S, where site's .pth hooks import
nothing first (but os is not loaded yet either), and as a program starts
normally (os already loaded).

Usage: python benchmarks/bench_import.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


# Bytecode may be cached, as it is for an installed package: pip compiles it.
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = ROOT


def import_microseconds(modules: list[str], *flags: str) -> int:
    """Cumulative importtime of *modules*, imported in one fresh interpreter."""
    result = subprocess.run(
        [sys.executable, *flags, "-X", "importtime", "-c", f"import {', '.join(modules)}"],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    total = 0
    for line in result.stderr.splitlines():
        _, _, cumulative, name = (part.strip() for part in line.replace("|", ":", 2).split(":"))
        if name in modules:  # top level: its cumulative time includes its imports
            total += int(cumulative)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=41)
    args = parser.parse_args()
    import_microseconds(["atomicswap"])  # writes atomicswap's bytecode cache
    print(f"Python {sys.version.split()[0]}, median of {args.runs} fresh interpreters (-X importtime)")
    for label, flags in (("python -S", ("-S",)), ("python", ())):
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(import_microseconds(["atomicswap"], *flags))
            theirs.append(import_microseconds(["ctypes", "platform"], *flags))
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        print(
            f"  {label:<10} import atomicswap {ours_median:6.0f} us, import ctypes, platform"
            f" {theirs_median:6.0f} us, ratio {ours_median / theirs_median:.3f}"
        )


if __name__ == "__main__":
    main()
