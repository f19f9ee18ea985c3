"""Helpers shared by the tests: run Python in a child process, make files."""

from __future__ import annotations

import os
import subprocess
import sys
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
