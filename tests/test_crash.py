"""atomic_write() killed with SIGKILL at random moments: the target is always
entirely the old or entirely the new content."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT

import atomicswap

pytestmark = pytest.mark.slow  # hundreds of writers killed: -m "not slow" leaves it out

SIZE = 4 << 20  # several MiB, so that a kill often lands mid-write
CONTENTS = (b"A" * SIZE, b"B" * SIZE)

# Rewrites the target forever, alternating its content and durability.
WRITER = """
import sys, atomicswap
path, size, named = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "named"
if named:
    atomicswap._O_TMPFILE = 0
contents = (b"A" * size, b"B" * size)
print("ready", flush=True)
i = 0
while True:
    i += 1
    with atomicswap.atomic_write(path, "wb", durable=i % 2 == 0) as f:
        for start in range(0, size, 1 << 16):
            f.write(contents[i % 2][start : start + (1 << 16)])
"""


def kill_writer_at_random(target: Path, named: bool, rng: random.Random) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-S", "-c", WRITER, str(target), str(SIZE), "named" if named else ""],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == b"ready\n"
    time.sleep(rng.uniform(0, 0.08))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stdout.close()


def run_kills(tmp_path: Path, kills: int, named: bool) -> tuple[Counter[str], list[Path]]:
    """Kill *kills* writers; return the target's contents seen and the leftovers."""
    rng = random.Random(kills)
    target = tmp_path / "f"
    target.write_bytes(CONTENTS[0])
    outcomes: Counter[str] = Counter()
    leftovers: list[Path] = []
    for _ in range(kills):
        kill_writer_at_random(target, named, rng)
        content = target.read_bytes()
        assert content in CONTENTS, f"torn target: {len(content)} bytes"
        outcomes[content[:1].decode()] += 1
        others = sorted(set(os.listdir(tmp_path)) - {"f"})
        assert len(others) <= 1, others  # one writer, one temporary at a time
        for name in others:
            assert re.fullmatch(r"\.f\.[0-9a-f]{12}\.tmp", name), name
            leftovers.append(tmp_path.parent / f"{tmp_path.name}-leftover-{len(leftovers)}")
            (tmp_path / name).rename(leftovers[-1])
    return outcomes, leftovers


@pytest.mark.skipif(not atomicswap._O_TMPFILE, reason="no O_TMPFILE on this platform")
def test_sigkill_never_tears_the_target_nor_leaves_a_partial_temporary(tmp_path: Path) -> None:
    outcomes, leftovers = run_kills(tmp_path, kills=200, named=False)

    # Only the microseconds between linking the finished file under its
    # temporary name and renaming it can leave one: complete.
    for leftover in leftovers:
        assert leftover.read_bytes() in CONTENTS
    assert outcomes["A"] and outcomes["B"], outcomes  # kills landed across many writes
    print(f"200 kills: target A {outcomes['A']}, B {outcomes['B']}; complete leftovers {len(leftovers)}")


def test_sigkill_never_tears_the_target_with_a_named_temporary(tmp_path: Path) -> None:
    """The macOS path, run here: a kill may leave a hidden partial temporary,
    never a torn target."""
    outcomes, leftovers = run_kills(tmp_path, kills=40, named=True)

    assert outcomes["A"] and outcomes["B"], outcomes
    print(
        f"40 kills, named temporary: target A {outcomes['A']}, B {outcomes['B']}; leftovers {len(leftovers)}"
    )
