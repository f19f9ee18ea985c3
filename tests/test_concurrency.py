"""What another process sees while atomicswap changes names under it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import write

from atomicswap import atomic_dir, replace, swap, symlink

# Each reader loops until the stop file (its last argument) appears, then
# prints a JSON report of what it saw.

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

# Lists a directory whose entries are named GENERATION-N: a listing must hold
# one generation only, whole, or a part of it when the directory it opened was
# swapped out and is being emptied.
LIST_DIRECTORY = """
import json, os, sys
path, entries, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
missing = mixed = partial = listings = 0
generations = set()
print("ready", flush=True)
while not os.path.exists(stop):
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        missing += 1
        continue
    listings += 1
    seen = {name.split("-")[0] for name in names}
    mixed += len(seen) > 1
    partial += len(names) != entries
    generations |= seen
print(json.dumps({"missing": missing, "mixed": mixed, "partial": partial,
                  "listings": listings, "generations": len(generations)}))
"""

# Follows a symlink whose targets are files holding their own names.
FOLLOW_LINK = """
import json, os, sys
link, stop = sys.argv[1], sys.argv[2]
missing = reads = 0
targets = set()
print("ready", flush=True)
while not os.path.exists(stop):
    try:
        with open(link) as f:
            targets.add(f.read())
        reads += 1
    except FileNotFoundError:
        missing += 1
print(json.dumps({"missing": missing, "reads": reads, "targets": sorted(targets)}))
"""


@contextmanager
def reader(script: str, stop: Path, *args: object) -> Iterator[dict[str, Any]]:
    """Run *script* in another process while the body runs; its report is in
    the yielded dict once the body has finished."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args), str(stop)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    # Parsed from JSON: the values are whatever the reader script reported.
    report: dict[str, Any] = {}
    try:
        yield report
    finally:
        stop.touch()
        out, _ = process.communicate(timeout=60)
        stop.unlink()
    report.update(json.loads(out))


def test_a_reader_never_misses_a_name_while_swap_runs_10000_times(tmp_path: Path) -> None:
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    with reader(OPEN_AND_READ, tmp_path / ".stop", a, b) as report:
        for _ in range(10_000):
            swap(a, b)

    assert report["missing"] == 0
    # Both names were read holding both contents: the reads overlapped the swaps.
    assert report["seen"] == {str(a): ["alpha", "bravo"], str(b): ["alpha", "bravo"]}
    assert (a.read_text(), b.read_text()) == ("alpha", "bravo")
    print(f"swap: {report['reads']} reads, {report['missing']} missing")


def test_the_reader_catches_the_three_rename_recipe_that_swap_replaces(tmp_path: Path) -> None:
    """The control: the same reader against mv a tmp; mv b a; mv tmp b."""
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    with reader(OPEN_AND_READ, tmp_path / ".stop", a, b) as report:
        for _ in range(10_000):
            os.rename(a, tmp_path / "tmp")
            os.rename(b, a)
            os.rename(tmp_path / "tmp", b)

    assert report["missing"] > 0
    print(f"three renames: {report['reads']} reads, {report['missing']} missing")


def fill(directory: Path, generation: int, entries: int) -> None:
    for n in range(entries):
        (directory / f"{generation}-{n}").touch()


def publish_with_replace(site: Path, generation: int, entries: int) -> None:
    staging = site.parent / "staging"
    staging.mkdir()
    fill(staging, generation, entries)
    replace(staging, site)


def publish_with_atomic_dir(site: Path, generation: int, entries: int) -> None:
    with atomic_dir(site, durable=False) as staging:
        fill(staging, generation, entries)


@pytest.mark.parametrize(
    "publish", [publish_with_replace, publish_with_atomic_dir], ids=["replace", "atomic_dir"]
)
def test_a_lister_never_sees_a_gap_or_a_mix_of_directories(
    tmp_path: Path, publish: Callable[[Path, int, int], None]
) -> None:
    site, entries = tmp_path / "site", 20
    site.mkdir()
    fill(site, 0, entries)

    with reader(LIST_DIRECTORY, tmp_path / ".stop", site, entries) as report:
        for generation in range(1, 301):
            publish(site, generation, entries)

    assert report["missing"] == 0
    assert report["mixed"] == 0
    assert report["generations"] > 1, report
    assert sorted(os.listdir(tmp_path)) == ["site"]
    print(f"{publish.__name__}: {report}")


def test_a_reader_always_finds_the_link_while_symlink_repoints_it(tmp_path: Path) -> None:
    for n in range(10):
        write(tmp_path / f"release-{n}", f"release-{n}")
    link = tmp_path / "current"
    symlink("release-0", link)

    with reader(FOLLOW_LINK, tmp_path / ".stop", link) as report:
        for n in range(3000):
            symlink(f"release-{n % 10}", link)

    assert report["missing"] == 0
    assert len(report["targets"]) > 1, report
    assert sorted(os.listdir(tmp_path)) == ["current"] + [f"release-{n}" for n in range(10)]
    print(f"symlink: {report['reads']} reads, {report['missing']} missing")
