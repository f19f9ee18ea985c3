"""The command line, python -m atomicswap and the atomicswap script: like util-linux exch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write

import atomicswap


def atomicswap_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atomicswap", *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_exchanges_two_paths_silently(tmp_path: Path) -> None:
    write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    result = atomicswap_cli("a", "b", cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("bravo", "alpha")


def test_cli_error_is_one_line_naming_both_paths(tmp_path: Path) -> None:
    write(tmp_path / "a", "alpha")

    result = atomicswap_cli("a", "missing", cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "atomicswap: [Errno 2] No such file or directory: 'a' -> 'missing'\n"


def test_cli_takes_paths_that_start_with_a_dash_after_double_dash(tmp_path: Path) -> None:
    write(tmp_path / "-a", "alpha"), write(tmp_path / "b", "bravo")

    result = atomicswap_cli("--", "-a", "b", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "-a").read_text() == "bravo"


@pytest.mark.parametrize("args", [(), ("one",), ("a", "b", "c"), ("--frobnicate", "a", "b")])
def test_cli_usage_error_exits_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = atomicswap_cli(*args, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("usage: atomicswap")


def test_cli_help_and_version(tmp_path: Path) -> None:
    help_result = atomicswap_cli("--help", cwd=tmp_path)
    version_result = atomicswap_cli("--version", cwd=tmp_path)

    assert help_result.returncode == 0 and "PATH1" in help_result.stdout.upper()
    assert (version_result.returncode, version_result.stdout) == (0, f"atomicswap {atomicswap.__version__}\n")


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "atomicswap"
    if not script.exists():
        pytest.skip("atomicswap is not installed in this environment (pip install .)")
    write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    result = subprocess.run([str(script), "a", "b"], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert (result.returncode, result.stderr) == (0, "")
    assert (tmp_path / "a").read_text() == "bravo"
