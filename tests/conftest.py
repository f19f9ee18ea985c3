"""Helpers shared by the tests: run Python in a child process, make files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_python(
    code: str,
    *args: str,
    cwd: Path | None = None,
    timeout: float = 60,
    prefix: tuple[str, ...] = (),
    flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter that imports atomicswap from this tree.

    *prefix* goes before the interpreter (strace ...), *flags* after it (-S ...).
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [*prefix, sys.executable, *flags, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


@pytest.fixture
def fresh_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next call bind again, and restore the real binding afterwards."""
    import atomicswap

    monkeypatch.setattr(atomicswap, "_binding", None)
    monkeypatch.setattr(atomicswap, "_cannot_exchange", None)


def run_under_strace(
    code: str, *strace_args: str, cwd: Path | None = None, log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run *code* under strace, which injects faults into the real system calls
    (for example "-e", "inject=fsync:error=EIO") and writes the calls it traces
    to *log*; skip where strace is missing."""
    import shutil

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    output = str(log) if log else os.devnull
    return run_python(code, cwd=cwd, prefix=(strace, "-f", "-o", output, *strace_args))


def as_nobody(action: Callable[[], dict[str, object]]) -> dict[str, object]:
    """Run *action* in a forked child as uid and gid 65534; return its report.

    Skips where the child cannot drop to that user; fails the test if the
    action raises.
    """
    # The child may not be allowed to read the standard library (here it lives
    # under /root): whatever it needs is loaded, and atomicswap bound, first.
    import shutil  # noqa: F401

    import atomicswap

    atomicswap._bind_early("")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        except OSError as e:
            report: dict[str, object] = {"cannot drop privileges": repr(e)}
        else:
            try:
                report = action()
            except BaseException as e:
                report = {"raised": "".join(traceback.format_exception(type(e), e, e.__traceback__))}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        report = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    if "cannot drop privileges" in report:
        pytest.skip(f"cannot run as uid 65534 here: {report['cannot drop privileges']}")
    if "raised" in report:
        pytest.fail(f"as uid 65534:\n{report['raised']}")
    return report


# A system call that atomicswap never makes: scripts make it once, right before
# the operation under test, so that injections can count from there.
MARKER = "os.getppid()"


def inject_after_marker(
    code: str, syscalls: str, action: str, nth: int = 1, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run *code* under strace with *action* (for example "signal=SIGINT" or
    "error=EIO") injected into the *nth* call of *syscalls* (comma-separated,
    counted together) after the script's MARKER call."""
    import re
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        # Discovery runs the whole job, on a copy of the directory it works in.
        copy = Path(scratch) / "copy"
        shutil.copytree(cwd or Path.cwd(), copy, symlinks=True)
        log = Path(scratch) / "discovery"
        run_under_strace(code, "-e", f"trace={syscalls},getppid", cwd=copy, log=log)
        calls = re.findall(r"^\d+\s+(\w+)\(", log.read_text(), re.MULTILINE)
        assert "getppid" in calls, "the script never reached its marker"
        before = calls.index("getppid")
    return run_under_strace(
        code, "-e", f"trace={syscalls}", "-e", f"inject={syscalls}:{action}:when={before + nth}", cwd=cwd
    )


def inject_at_call_on(
    code: str, syscall: str, action: str, line: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run *code* under strace with *action* injected into the first call of
    *syscall* whose line in strace's log matches the regular expression *line*.

    The log is taken with -y, so that a descriptor shows as 5</path/of/it>: a
    call is chosen by what it acts on (the close of one directory, say), which
    stays the same when the calls around it change. Discovery runs the whole
    job, on a copy of *cwd*, and counts that call's place among all calls of
    *syscall*; strace counts the same way when it injects.
    """
    import re
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy"
        shutil.copytree(cwd, copy, symlinks=True)
        log = Path(scratch) / "discovery"
        run_under_strace(code, "-y", "-e", f"trace={syscall}", cwd=copy, log=log)
        calls = [call for call in log.read_text().splitlines() if re.match(rf"\d+\s+{syscall}\(", call)]
        chosen = [n for n, call in enumerate(calls, 1) if re.search(line, call)]
        assert chosen, f"no {syscall} call matches {line!r}"
    inject = f"inject={syscall}:{action}:when={chosen[0]}"
    return run_under_strace(code, "-e", f"trace={syscall}", "-e", inject, cwd=cwd)


@pytest.fixture(autouse=True)
def working_directory_survives() -> Iterator[None]:
    """After each test, a working directory that no longer exists (a test that
    chdir'd into a mount it lost) is left for ROOT, so that one failure cannot
    fail every later test that asks os.getcwd()."""
    yield
    try:
        os.getcwd()
    except FileNotFoundError:
        os.chdir(ROOT)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: runs for minutes (the SIGKILL, fault-sweep and power-cut tests); -m 'not slow' leaves it out",
    )
