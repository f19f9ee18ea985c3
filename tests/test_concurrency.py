"""What another process sees while atomicswap changes names under it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import write

from atomicswap import swap

# Reads each name in a loop until the stop file appears; prints what it saw.
OPEN_AND_READ = """
import json, os, sys
names, stop = sys.argv[1:-1], sys.argv[-1]
seen, missing, reads = {}, 0, 0
print("ready", flush=True)
while not os.path.exists(stop):
    for name in names:
        try:
            with open(name, "rb") as f:
                data = f.read().decode()
        except FileNotFoundError:
            missing += 1
            continue
        reads += 1
        seen.setdefault(name, set()).add(data)
print(json.dumps({"missing": missing, "reads": reads, "seen": {k: sorted(v) for k, v in seen.items()}}))
"""


@contextmanager
def reader(script: str, *names: Path) -> Iterator[dict[str, object]]:
    """Run *script* in another process over *names* while the body runs; its
    report is in the yielded dict once the body has finished."""
    stop = names[0].parent / ".stop"
    process = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, names), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    report: dict[str, object] = {}
    try:
        yield report
    finally:
        stop.touch()
        out, _ = process.communicate(timeout=60)
        stop.unlink()
    report.update(json.loads(out))


def test_a_reader_never_misses_a_name_while_swap_runs_10000_times(tmp_path: Path) -> None:
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    with reader(OPEN_AND_READ, a, b) as report:
        for _ in range(10_000):
            swap(a, b)

    assert report["missing"] == 0
    assert report["reads"] > 0
    # Both names were read holding both contents: the reads overlapped the swaps.
    assert report["seen"] == {str(a): ["alpha", "bravo"], str(b): ["alpha", "bravo"]}
    assert (a.read_text(), b.read_text()) == ("alpha", "bravo")
    print(f"reader: {report['reads']} reads, {report['missing']} missing")
