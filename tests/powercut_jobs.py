"""The workloads of the power-cut test, and what a crash may leave of each.

    PYTHONPATH=. python tests/powercut_jobs.py JOB ROOT MARKS STEPS [OPTION...]

runs one job STEPS times in ROOT, a fresh filesystem on the disk that
fuseblock.py records, and writes its progress to MARKS (fuseblock's ``marks``
file), so that marks and disk traffic fall into one order:

    ready       setup is done and synced; crash states start here
    begin K     step K starts (it makes version K)
    end K       step K returned
    done

After "end K" another program, as on any real machine, appends a line to an
unrelated file, ROOT/noise.log, and fsyncs it. A journal commits other
writers' metadata too, so a rename that was never made durable, and an inode
whose data was never written, reach the disk with it: without that noise a
classic bug hides until the unmount, which writes everything in order.

OPTIONs: "named" (named temporaries: atomicswap._O_TMPFILE = 0),
"no-syncfs" (atomicswap._syncfs raises ENOTSUP, as where the platform has
none: atomic_dir() then fsyncs file by file), "nondurable" (the job's
non-durable form), and the mutants, which break the library inside this
process only: "skip-file-sync" (atomicswap._fsync skips regular files, and
atomicswap._syncfs does nothing unless "no-syncfs") and "skip-dir-sync"
(atomicswap._fsync skips directories).

check(job, root, required, steps) says what the crash state mounted at root
shows: a label for the tally ("v3", "empty", ...) and, if the state breaks
the job's promise, why. *required* is the highest step that had returned
before the last flush the state includes: with durable=True, that version or a
later one must be there, whole.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

SIZE = 40 << 10  # ten 4 KiB blocks: a torn file shows
TREE = ("a", "b", "sub/c")  # the files of atomic_dir()'s tree, relative to it


def content(version: int, size: int = SIZE) -> bytes:
    """Version *version* of a file: distinct in every block."""
    line = f"version {version:06d} ".encode()
    return (line * (size // len(line) + 1))[:size]


def version_of(data: bytes, size: int = SIZE) -> int | str:
    """The version *data* is, or what is wrong with it."""
    if not data:
        return "empty"
    if not data.strip(b"\0"):
        return "zero-filled"
    try:
        version = int(data[8:14])
    except ValueError:
        return "torn"
    return version if data == content(version, size) else "torn"


def read_version(path: Path, size: int = SIZE) -> int | str:
    try:
        return version_of(path.read_bytes(), size)
    except FileNotFoundError:
        return "absent"
    except OSError as e:
        return f"unreadable ({e.strerror})"


def write_plainly(path: Path, data: bytes) -> None:
    """Write a file as most programs do: no fsync."""
    with open(path, "wb") as f:
        f.write(data)


def make_tree(root: Path, version: int) -> None:
    for name in TREE:
        (root / name).parent.mkdir(exist_ok=True)
        write_plainly(root / name, content(version, 8192))


def tree_version(root: Path) -> int | str:
    """The version every file of the tree at *root* is, or what is wrong."""
    if not root.is_dir():
        return "absent"
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    if found != sorted(TREE):
        return f"files {found}"
    versions = {read_version(root / name, 8192) for name in TREE}
    if len(versions) != 1:
        return f"mixed {sorted(map(str, versions))}"
    return versions.pop()


# Each job: setup(root), step(root, k, durable), check(root, required, steps) -> (label, bad).
Verdict = tuple[str, "str | None"]


def judge_one(found: int | str, required: int, durable: bool) -> Verdict:
    """A single target that must show version >= *required*, whole."""
    label = f"v{found}" if isinstance(found, int) else found
    if not isinstance(found, int):
        return label, f"the target is {found}"
    if durable and found < required:
        return label, f"version {found}, but step {required} had returned"
    return label, None


def judge_series(found: list[int | str], required: int, durable: bool) -> Verdict:
    """Targets 1..n, target j made by step j: each absent or whole, and with
    durable=True every one up to *required* present."""
    for j, version in enumerate(found, start=1):
        if version == "absent" and (j > required or not durable):
            continue
        if version != j:
            label = version if isinstance(version, str) else "another version"
            return label, f"target {j} is {version} (step {required} had returned)"
    return f"{sum(isinstance(v, int) for v in found)} of {len(found)}", None


def setup_file(root: Path) -> None:
    write_plainly(root / "f", content(0))


def step_atomic_write(root: Path, k: int, durable: bool) -> None:
    import atomicswap

    with atomicswap.atomic_write(root / "f", "wb", durable=durable) as f:
        f.write(content(k))


def step_new_file(root: Path, k: int, durable: bool) -> None:
    """A new file, as open(path, "x") makes one: an O_TMPFILE is linked
    straight to its name (the path where btrfs was said to lose data)."""
    import atomicswap

    with atomicswap.atomic_write(root / f"f{k}", "wb", overwrite=False, durable=durable) as f:
        f.write(content(k))


def step_classic(root: Path, k: int, durable: bool) -> None:
    """The recipe atomicswap replaces: a temporary renamed over the target, no fsync."""
    write_plainly(root / ".f.tmp", content(k))
    os.rename(root / ".f.tmp", root / "f")


def check_file(root: Path, required: int, steps: int, durable: bool) -> Verdict:
    return judge_one(read_version(root / "f"), required, durable)


def check_new_files(root: Path, required: int, steps: int, durable: bool) -> Verdict:
    return judge_series([read_version(root / f"f{j}") for j in range(1, steps + 1)], required, durable)


def setup_tree(root: Path) -> None:
    (root / "d").mkdir()
    make_tree(root / "d", 0)


def step_atomic_dir(root: Path, k: int, durable: bool, name: str = "d") -> None:
    import atomicswap

    with atomicswap.atomic_dir(root / name, durable=durable) as staging:
        make_tree(staging, k)


def step_new_tree(root: Path, k: int, durable: bool) -> None:
    step_atomic_dir(root, k, durable, f"d{k}")


def check_tree(root: Path, required: int, steps: int, durable: bool) -> Verdict:
    return judge_one(tree_version(root / "d"), required, durable)


def check_new_trees(root: Path, required: int, steps: int, durable: bool) -> Verdict:
    return judge_series([tree_version(root / f"d{j}") for j in range(1, steps + 1)], required, durable)


def step_replace(root: Path, k: int, durable: bool) -> None:
    import atomicswap

    write_plainly(root / "src", content(k))
    atomicswap.replace(root / "src", root / "f", durable=durable)


def step_swap(root: Path, k: int, durable: bool) -> None:
    """Version k, written plainly to a new file, swapped with f: f is then
    version k and the new file version k - 1."""
    import atomicswap

    write_plainly(root / f"n{k}", content(k))
    atomicswap.swap(root / f"n{k}", root / "f", durable=durable)


def check_swap(root: Path, required: int, steps: int, durable: bool) -> Verdict:
    label, bad = judge_one(read_version(root / "f"), required, durable)
    found = read_version(root / "f")
    if bad or not isinstance(found, int):
        return label, bad
    for j in range(1, found + 1):  # swap j happened, so n{j} holds what f held
        other = read_version(root / f"n{j}")
        if other != j - 1:
            return label, f"f is version {found} but n{j} is {other}, not {j - 1}"
    return label, None


def setup_symlink(root: Path) -> None:
    os.symlink("v0", root / "l")


def step_symlink(root: Path, k: int, durable: bool) -> None:
    import atomicswap

    atomicswap.symlink(f"v{k}", root / "l", durable=durable)


def check_symlink(root: Path, required: int, steps: int, durable: bool) -> Verdict:
    try:
        target = os.readlink(root / "l")
        found: int | str = int(target[1:]) if target.startswith("v") else f"pointing to {target!r}"
    except FileNotFoundError:
        found = "absent"
    except (OSError, ValueError) as e:
        found = f"unreadable ({e})"
    return judge_one(found, required, durable)


def step_rename_noreplace(root: Path, k: int, durable: bool) -> None:
    import atomicswap

    write_plainly(root / f"s{k}", content(k))
    atomicswap.rename_noreplace(root / f"s{k}", root / f"f{k}", durable=durable)


def no_setup(root: Path) -> None:
    pass


Job = tuple[
    Callable[[Path], None],
    Callable[[Path, int, bool], None],
    Callable[[Path, int, int, bool], Verdict],
]
JOBS: dict[str, Job] = {
    "atomic_write": (setup_file, step_atomic_write, check_file),
    "atomic_write new": (no_setup, step_new_file, check_new_files),
    "atomic_dir": (setup_tree, step_atomic_dir, check_tree),
    "atomic_dir new": (no_setup, step_new_tree, check_new_trees),
    "replace": (setup_file, step_replace, check_file),
    "swap": (setup_file, step_swap, check_swap),
    "symlink": (setup_symlink, step_symlink, check_symlink),
    "rename_noreplace": (no_setup, step_rename_noreplace, check_new_files),
    "classic": (setup_file, step_classic, check_file),
}


def check(job: str, root: Path, required: int, steps: int, durable: bool) -> Verdict:
    return JOBS[job][2](root, required, steps, durable)


def break_the_library(options: list[str]) -> None:
    """Apply the options that change the library in this process."""
    import atomicswap

    if "named" in options:
        atomicswap._O_TMPFILE = 0
    real_fsync = atomicswap._fsync
    skipped = {"skip-file-sync": stat.S_ISREG, "skip-dir-sync": stat.S_ISDIR}
    tests = [skipped[option] for option in options if option in skipped]

    def mutant_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        if not any(test(mode) for test in tests):
            real_fsync(fd)

    def no_syncfs(fd: int) -> None:
        raise OSError(errno.ENOTSUP, "syncfs() taken away by the test")

    if tests:
        atomicswap._fsync = mutant_fsync
    if "no-syncfs" in options:
        atomicswap._syncfs = no_syncfs
    elif "skip-file-sync" in options:
        atomicswap._syncfs = lambda fd: None


def main(argv: list[str]) -> int:
    job, root_name, marks_name, steps_text, *options = argv
    root, steps, durable = Path(root_name), int(steps_text), "nondurable" not in options
    setup, step, _ = JOBS[job]
    import atomicswap

    atomicswap._bind_early(str(root))
    break_the_library(options)
    marks = os.open(marks_name, os.O_WRONLY | os.O_CLOEXEC)
    noise = os.open(root / "noise.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    setup(root)
    os.sync()
    os.write(marks, b"ready\n")
    for k in range(1, steps + 1):
        os.write(marks, f"begin {k}\n".encode())
        step(root, k, durable)
        os.write(marks, f"end {k}\n".encode())
        os.write(noise, f"another program's line {k}\n".encode())
        os.fsync(noise)
    os.write(marks, b"done\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
