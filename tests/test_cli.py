"""The command line, run as a user runs it, on real files.

Every test runs four ways, which must behave alike: the atomicswap script pip
installs, python -m atomicswap, and the library vendored as a single file,
atomicswap.py, run as python atomicswap.py and as python -m atomicswap.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Union

import pytest
from conftest import ROOT, write

import atomicswap

Arg = Union[str, bytes]

EXIT_STATUSES = b"  0 ", b"  1 ", b"  2 ", b"  130 "


@dataclass(frozen=True)
class Cli:
    """One way to start the command line: the words before its arguments, and the environment."""

    name: str
    words: tuple[str, ...]
    env: dict[str, str]

    def __call__(
        self,
        *args: Arg,
        cwd: Path,
        input: bytes | None = None,
        stdin: int | IO[bytes] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        if input is None and stdin is None:
            stdin = subprocess.DEVNULL  # never the terminal pytest may run in
        return subprocess.run(
            [*prefix, *self.words, *args],
            cwd=cwd,
            env=self.env,
            input=input,
            stdin=stdin,
            capture_output=True,
            timeout=60,
        )

    def start(self, *args: Arg, cwd: Path) -> subprocess.Popen[bytes]:
        """Start it with a pipe on stdin, which stays open until closed."""
        return subprocess.Popen(
            [*self.words, *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


@pytest.fixture(scope="module")
def vendored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library copied alone, as a project vendoring it would: atomicswap.py."""
    directory = tmp_path_factory.mktemp("vendored")
    shutil.copy(ROOT / "atomicswap" / "__init__.py", directory / "atomicswap.py")
    return directory / "atomicswap.py"


def console_script() -> Path:
    """The script pip installs beside the interpreter: required where CI installed the package."""
    script = Path(sys.executable).parent / "atomicswap"
    if not script.exists():
        message = f"the atomicswap script is not installed beside {sys.executable} (pip install .)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return script


@pytest.fixture(params=["script", "module", "vendored file", "vendored module"])
def cli(request: pytest.FixtureRequest, vendored: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if request.param == "script":
        # The script imports atomicswap from PYTHONPATH first: this tree, not an older install.
        return Cli(request.param, (str(console_script()),), dict(env, PYTHONPATH=str(ROOT)))
    if request.param == "module":
        return Cli(request.param, (sys.executable, "-m", "atomicswap"), dict(env, PYTHONPATH=str(ROOT)))
    if request.param == "vendored file":
        return Cli(request.param, (sys.executable, str(vendored)), env)
    return Cli(
        request.param, (sys.executable, "-m", "atomicswap"), dict(env, PYTHONPATH=str(vendored.parent))
    )


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than tmp_path: tmpfs at /dev/shm."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    directory = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if directory.stat().st_dev == tmp_path.stat().st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the temporary directory")
        yield directory
    finally:
        shutil.rmtree(directory)


def assert_failure(result: subprocess.CompletedProcess[bytes], *words: Arg, err: int) -> None:
    """Exit status 1 and one line on stderr, ``atomicswap: WORDS: STRERROR``, as bytes.

    The library may say after the strerror what changed, as "(...)" or
    "; ...", but never a path in Python's quotes.
    """
    line = b": ".join([b"atomicswap", *(os.fsencode(word) for word in words), os.strerror(err).encode()])
    assert (result.returncode, result.stdout) == (1, b""), result.stderr
    assert result.stderr.startswith(line) and result.stderr.count(b"\n") == 1, result.stderr
    after = result.stderr[len(line) : -1]
    assert after == b"" or after.startswith((b" (", b"; ")), result.stderr
    assert b"'" not in result.stderr and b'"' not in result.stderr, result.stderr


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def state(directory: Path) -> list[tuple[str, str]]:
    """What is in *directory*: each name with its content, or where it links."""
    return [
        (name, os.readlink(path) if path.is_symlink() else path.read_text())
        for name in listing(directory)
        for path in [directory / name]
    ]


# ---- swap, and the short form ----


def test_short_form_exchanges_two_paths_silently(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    result = cli("a", "b", cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("bravo", "alpha")


def test_swap_exchanges_a_file_and_a_directory(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "a", "alpha")
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "inside", "x")

    result = cli("swap", "a", "d", cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert (tmp_path / "d").read_text() == "alpha"
    assert listing(tmp_path / "a") == ["inside"]


@pytest.mark.parametrize("command", [(), ("swap",)], ids=["short form", "swap"])
def test_swap_of_a_missing_path_fails_naming_both(cli: Cli, tmp_path: Path, command: tuple[str, ...]) -> None:
    write(tmp_path / "a", "alpha")

    result = cli(*command, "a", "missing", cwd=tmp_path)

    assert_failure(result, "swap a missing", err=errno.ENOENT)
    assert (tmp_path / "a").read_text() == "alpha"


@pytest.mark.parametrize("command", ["swap", "replace", "rename-noreplace"])
def test_paths_on_two_filesystems_fail_with_exdev(
    cli: Cli, tmp_path: Path, elsewhere: Path, command: str
) -> None:
    write(tmp_path / "a", "alpha"), write(elsewhere / "b", "bravo")
    other = str(elsewhere / "b")

    result = cli(command, "a", other, cwd=tmp_path)

    assert_failure(result, f"{command} a {other}", err=errno.EXDEV)
    assert (tmp_path / "a").read_text() == "alpha"


def test_swap_with_double_dash_exchanges_paths_named_like_commands(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "write", "w"), write(tmp_path / "config", "c")

    result = cli("swap", "--", "write", "config", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, b"")
    assert ((tmp_path / "write").read_text(), (tmp_path / "config").read_text()) == ("c", "w")


def test_a_first_argument_naming_a_command_is_the_command(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "write", "w"), write(tmp_path / "config", "c")

    result = cli("write", "config", cwd=tmp_path, input=b"new")

    assert (result.returncode, result.stderr) == (0, b"")
    assert ((tmp_path / "write").read_text(), (tmp_path / "config").read_text()) == ("w", "new")


@pytest.mark.parametrize("command", [(), ("swap",)], ids=["short form", "swap"])
def test_paths_starting_with_a_dash_follow_double_dash(
    cli: Cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    write(tmp_path / "-a", "alpha"), write(tmp_path / "--b", "bravo")

    result = cli(*command, "--", "-a", "--b", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, b"")
    assert ((tmp_path / "-a").read_text(), (tmp_path / "--b").read_text()) == ("bravo", "alpha")


def test_non_utf8_names_are_exchanged(cli: Cli, tmp_path: Path) -> None:
    first, second = os.fsdecode(b"caf\xe9"), os.fsdecode(b"\xff\xfe")
    write(tmp_path / first, "alpha"), write(tmp_path / second, "bravo")

    result = cli(b"caf\xe9", b"\xff\xfe", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, b"")
    assert ((tmp_path / first).read_text(), (tmp_path / second).read_text()) == ("bravo", "alpha")


def test_non_utf8_names_are_printed_as_the_bytes_given(cli: Cli, tmp_path: Path) -> None:
    result = cli(b"caf\xe9", b"./missing\xff", cwd=tmp_path)

    assert_failure(result, b"swap caf\xe9 ./missing\xff", err=errno.ENOENT)


# ---- replace ----


def test_replace_puts_a_file_over_a_non_empty_directory(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "bravo", "new")
    (tmp_path / "alpha").mkdir()
    write(tmp_path / "alpha" / "old", "old")

    result = cli("replace", "bravo", "alpha", cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert (tmp_path / "alpha").read_text() == "new"
    assert listing(tmp_path) == ["alpha"]


def test_replace_of_a_missing_src_fails_and_leaves_dst(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "alpha", "old")

    result = cli("replace", "missing", "alpha", cwd=tmp_path)

    assert_failure(result, "replace missing alpha", err=errno.ENOENT)
    assert (tmp_path / "alpha").read_text() == "old"


# ---- write ----


def test_write_puts_what_a_pipe_gives_at_path(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "config.json", "old")

    result = cli("write", "config.json", cwd=tmp_path, input=b'{"new": true}\n')

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert (tmp_path / "config.json").read_bytes() == b'{"new": true}\n'
    assert listing(tmp_path) == ["config.json"]


def test_write_reads_stdin_from_a_file(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(bytes(range(256)) * 1000)

    with open(source, "rb") as stdin:
        result = cli("write", "copy", cwd=tmp_path, stdin=stdin)

    assert (result.returncode, result.stderr) == (0, b"")
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()


def test_write_keeps_the_permissions_of_the_file_replaced(cli: Cli, tmp_path: Path) -> None:
    target = write(tmp_path / "script.sh", "old")
    target.chmod(0o750)

    result = cli("write", "script.sh", cwd=tmp_path, input=b"new")

    assert (result.returncode, result.stderr) == (0, b"")
    assert (target.read_text(), stat.S_IMODE(target.stat().st_mode)) == ("new", 0o750)


@pytest.mark.parametrize("mode", ["600", "0640", "4755"])
def test_write_mode_sets_the_permissions(cli: Cli, tmp_path: Path, mode: str) -> None:
    result = cli("write", "--mode", mode, "new", cwd=tmp_path, input=b"x")

    assert (result.returncode, result.stderr) == (0, b"")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == int(mode, 8)


@pytest.mark.parametrize("mode", ["9", "rw", "17777", "", "0o644", "-1"])
def test_write_mode_that_is_not_octal_is_a_usage_error(cli: Cli, tmp_path: Path, mode: str) -> None:
    result = cli("write", f"--mode={mode}", "new", cwd=tmp_path, input=b"x")

    assert result.returncode == 2
    assert result.stderr.startswith(b"usage: atomicswap write")
    assert result.stderr.endswith(f"--mode: not an octal mode from 0 to 7777, like 644: {mode}\n".encode())
    assert listing(tmp_path) == []


def test_write_writes_through_a_symlink(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "real", "old")
    (tmp_path / "link").symlink_to("real")

    result = cli("write", "link", cwd=tmp_path, input=b"new")

    assert (result.returncode, result.stderr) == (0, b"")
    assert (os.readlink(tmp_path / "link"), (tmp_path / "real").read_text()) == ("real", "new")


def test_write_no_clobber_refuses_an_existing_path(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "config", "old")

    result = cli("write", "--no-clobber", "config", cwd=tmp_path, input=b"new")

    assert_failure(result, "write config", err=errno.EEXIST)
    assert (tmp_path / "config").read_text() == "old"
    assert listing(tmp_path) == ["config"]


def test_write_no_clobber_creates_a_new_path(cli: Cli, tmp_path: Path) -> None:
    result = cli("write", "-n", "config", cwd=tmp_path, input=b"new")

    assert (result.returncode, result.stderr) == (0, b"")
    assert (tmp_path / "config").read_text() == "new"


def test_write_into_a_missing_directory_fails(cli: Cli, tmp_path: Path) -> None:
    result = cli("write", "missing/config", cwd=tmp_path, input=b"new")

    # The library may name the directory too: atomicswap: write missing/config: missing: ...
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.startswith(b"atomicswap: write missing/config: ")
    assert result.stderr.count(b"\n") == 1 and os.strerror(errno.ENOENT).encode() in result.stderr
    assert listing(tmp_path) == []


def test_write_failure_prints_a_non_utf8_path_as_the_bytes_given(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / os.fsdecode(b"caf\xe9"), "old")

    result = cli("write", "--no-clobber", b"caf\xe9", cwd=tmp_path, input=b"new")

    assert_failure(result, b"write caf\xe9", err=errno.EEXIST)


def test_write_refuses_a_directory_at_path(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()

    result = cli("write", "d", cwd=tmp_path, input=b"new")

    assert_failure(result, "write d", err=errno.EISDIR)
    assert listing(tmp_path / "d") == []


def test_write_of_a_path_starting_with_a_dash(cli: Cli, tmp_path: Path) -> None:
    result = cli("write", "--", "-config", cwd=tmp_path, input=b"new")

    assert (result.returncode, result.stderr) == (0, b"")
    assert (tmp_path / "-config").read_text() == "new"


def test_write_refuses_a_terminal_on_stdin_at_once(cli: Cli, tmp_path: Path) -> None:
    controller, terminal = os.openpty()
    try:
        started = time.monotonic()
        result = cli("write", "config", cwd=tmp_path, stdin=terminal)
        elapsed = time.monotonic() - started
    finally:
        os.close(terminal)
        os.close(controller)

    assert result.returncode == 2
    assert result.stderr.startswith(b"usage: atomicswap write")
    assert b"standard input is a terminal" in result.stderr
    assert listing(tmp_path) == []
    assert elapsed < 30  # it did not wait for input (the run would time out at 60)


def test_write_writes_nothing_when_reading_stdin_fails(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "config", "old")
    write_only = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT)  # read() on it fails with EBADF
    try:
        result = cli("write", "config", cwd=tmp_path, stdin=write_only)
    finally:
        os.close(write_only)

    assert_failure(result, "write config", "standard input", err=errno.EBADF)
    assert (tmp_path / "config").read_text() == "old"
    assert listing(tmp_path) == ["config", "log"]


def test_write_with_stdin_closed_fails_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "config", "old")

    result = cli("write", "config", cwd=tmp_path, prefix=("sh", "-c", 'exec "$@" <&-', "sh"))

    assert_failure(result, "write config", "standard input", err=errno.EBADF)
    assert (tmp_path / "config").read_text() == "old"
    assert listing(tmp_path) == ["config"]


def test_write_interrupted_while_reading_stdin_exits_130_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "config", "old")
    process = cli.start("write", "config", cwd=tmp_path)
    assert process.stdin is not None and process.stderr is not None
    try:
        process.stdin.write(b"the start of the new content")
        process.stdin.flush()
        wait_until_read(process.stdin)  # it is reading; the pipe stays open
        status = interrupt(process)
        errors = process.stderr.read()
    finally:
        process.kill()
        process.communicate(timeout=60)

    assert (status, errors) == (130, b"")
    assert (tmp_path / "config").read_text() == "old"
    assert listing(tmp_path) == ["config"]


def wait_until_read(pipe: IO[bytes]) -> None:
    """Wait until the reader has taken everything written into *pipe* so far."""
    unread = array.array("i", [0])
    for _ in range(6000):
        fcntl.ioctl(pipe.fileno(), termios.FIONREAD, unread)  # bytes in the pipe, from either end
        if unread[0] == 0:
            return
        time.sleep(0.01)
    pytest.fail("the command did not read its standard input within a minute")


def interrupt(process: subprocess.Popen[bytes]) -> int:
    """SIGINT, as Ctrl-C sends it; its exit status.

    Sent again if the process lives on: a signal that lands between two
    read() calls is handled only when the next one is interrupted.
    """
    for _ in range(10):
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
    pytest.fail("the command ignored SIGINT")


# ---- symlink ----


def test_symlink_repoints_an_existing_link(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "releases" / "41").mkdir(parents=True)
    (tmp_path / "releases" / "42").mkdir()
    (tmp_path / "current").symlink_to("releases/41")

    result = cli("symlink", "releases/42", "current", cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert os.readlink(tmp_path / "current") == "releases/42"
    assert listing(tmp_path) == ["current", "releases"]


def test_symlink_makes_a_new_link_to_a_target_that_need_not_exist(cli: Cli, tmp_path: Path) -> None:
    result = cli("symlink", "nowhere", "link", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, b"")
    assert os.readlink(tmp_path / "link") == "nowhere"


def test_symlink_refuses_a_directory_at_link(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    (tmp_path / "current").mkdir()

    result = cli("symlink", "releases", "current", cwd=tmp_path)

    assert_failure(result, "symlink releases current", err=errno.EISDIR)
    assert (tmp_path / "current").is_dir() and not (tmp_path / "current").is_symlink()
    assert listing(tmp_path / "current") == []
    assert listing(tmp_path) == ["current", "releases"]


def test_symlink_in_a_missing_directory_fails_naming_the_link(cli: Cli, tmp_path: Path) -> None:
    result = cli("symlink", "target", "missing/link", cwd=tmp_path)

    assert_failure(result, "symlink target missing/link", err=errno.ENOENT)  # not the temporary's name


def test_symlink_names_starting_with_a_dash(cli: Cli, tmp_path: Path) -> None:
    result = cli("symlink", "--", "-target", "-link", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, b"")
    assert os.readlink(tmp_path / "-link") == "-target"


# ---- rename-noreplace ----


def test_rename_noreplace_moves_to_a_free_name(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "upload.part", "data")

    result = cli("rename-noreplace", "upload.part", "upload", cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert listing(tmp_path) == ["upload"]
    assert (tmp_path / "upload").read_text() == "data"


def test_rename_noreplace_refuses_an_existing_dst(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "upload.part", "new"), write(tmp_path / "upload", "old")

    result = cli("rename-noreplace", "upload.part", "upload", cwd=tmp_path)

    assert_failure(result, "rename-noreplace upload.part upload", err=errno.EEXIST)
    assert ((tmp_path / "upload.part").read_text(), (tmp_path / "upload").read_text()) == ("new", "old")


def test_rename_noreplace_of_a_missing_src_fails(cli: Cli, tmp_path: Path) -> None:
    result = cli("rename-noreplace", "missing", "upload", cwd=tmp_path)

    assert_failure(result, "rename-noreplace missing upload", err=errno.ENOENT)
    assert listing(tmp_path) == []


# ---- syncing: --durable, and write's --no-sync ----

SYNC_CALLS = ("fsync", "fdatasync", "syncfs", "sync", "sync_file_range")
SYNC_CALL = re.compile(rf"\b({'|'.join(SYNC_CALLS)})\(", re.MULTILINE)


def run_counting_syncs(cli: Cli, *args: str, cwd: Path, input: bytes = b"") -> tuple[int, int]:
    """Run the command under strace; its exit status and how many sync calls it made."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    log = cwd.parent / f"{cwd.name}.strace"
    trace = ("-f", "-qq", "-o", str(log), "-e", "trace=" + ",".join(SYNC_CALLS))
    result = cli(*args, cwd=cwd, input=input, prefix=(strace, *trace))
    assert result.stderr == b"", result.stderr
    return result.returncode, len(SYNC_CALL.findall(log.read_text()))


DURABLE_COMMANDS = [
    ("swap", "a", "b"),
    ("replace", "a", "b"),
    ("symlink", "a", "b"),
    ("rename-noreplace", "a", "c"),
]


@pytest.mark.parametrize("args", DURABLE_COMMANDS, ids=[args[0] for args in DURABLE_COMMANDS])
def test_durable_syncs_the_change(cli: Cli, tmp_path: Path, args: tuple[str, ...]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write(work / "a", "alpha"), write(work / "b", "bravo")

    before = state(work)

    status, syncs = run_counting_syncs(cli, args[0], "--durable", *args[1:], cwd=work)

    assert (status, syncs >= 1) == (0, True)
    assert state(work) != before


@pytest.mark.parametrize("args", DURABLE_COMMANDS, ids=[args[0] for args in DURABLE_COMMANDS])
def test_without_durable_nothing_is_synced(cli: Cli, tmp_path: Path, args: tuple[str, ...]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write(work / "a", "alpha"), write(work / "b", "bravo")

    assert run_counting_syncs(cli, *args, cwd=work) == (0, 0)


def test_short_form_takes_durable(cli: Cli, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write(work / "a", "alpha"), write(work / "b", "bravo")

    status, syncs = run_counting_syncs(cli, "--durable", "a", "b", cwd=work)

    assert (status, syncs >= 1) == (0, True)
    assert (work / "a").read_text() == "bravo"


def test_write_syncs_by_default_and_not_with_no_sync(cli: Cli, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()

    durable = run_counting_syncs(cli, "write", "durable", cwd=work, input=b"x")
    fast = run_counting_syncs(cli, "write", "--no-sync", "fast", cwd=work, input=b"y")

    assert durable[0] == 0 and durable[1] >= 2  # the file, then its directory
    assert fast == (0, 0)
    assert ((work / "durable").read_text(), (work / "fast").read_text()) == ("x", "y")


# ---- usage, help, version, exit statuses ----


USAGE_ERRORS = [
    (),
    ("one",),
    ("a", "b", "c"),
    ("--frobnicate", "a", "b"),
    ("swap", "a"),
    ("replace", "a", "b", "c"),
    ("write",),
    ("write", "a", "b"),
    ("symlink", "target"),
    ("rename-noreplace", "--no-clobber", "a", "b"),
    ("write", "--durable", "a"),
    ("swap", "--no-sync", "a", "b"),
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_usage_error_exits_2_and_changes_nothing(cli: Cli, tmp_path: Path, args: tuple[str, ...]) -> None:
    write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    result = cli(*args, cwd=tmp_path, input=b"new")

    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.startswith(b"usage: atomicswap")
    assert result.stderr.splitlines()[-1].startswith(b"atomicswap")
    assert b": error: " in result.stderr.splitlines()[-1]
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("alpha", "bravo")
    assert listing(tmp_path) == ["a", "b"]


def test_usage_error_prints_arguments_as_the_bytes_given(cli: Cli, tmp_path: Path) -> None:
    result = cli("a", "b", b"caf\xe9", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.endswith(b"unrecognized arguments: caf\xe9\n")


COMMANDS = ["swap", "replace", "write", "symlink", "rename-noreplace"]


@pytest.mark.parametrize("command", [(), *((c,) for c in COMMANDS)], ids=["program", *COMMANDS])
def test_help_shows_usage_an_example_and_the_exit_statuses(
    cli: Cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = cli(*command, "--help", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.startswith(" ".join(["usage: atomicswap", *command]).encode())
    example = result.stdout.split(b"example:\n  ")[1].split(b"\n")[0]
    assert b"atomicswap " + " ".join(command).encode() in example
    assert all(status in result.stdout for status in EXIT_STATUSES)


def test_program_help_lists_the_commands_and_the_double_dash(cli: Cli, tmp_path: Path) -> None:
    result = cli("--help", cwd=tmp_path)

    assert all(f"\n  {command} ".encode() in result.stdout for command in COMMANDS)
    assert b"atomicswap swap -- write config" in result.stdout


@pytest.mark.parametrize("option", ["--version", "-V"])
def test_version(cli: Cli, tmp_path: Path, option: str) -> None:
    result = cli(option, cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"atomicswap {atomicswap.__version__}\n".encode(),
        b"",
    )


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", [("--help",), ("-V",), ("write", "--help")], ids=" ".join)
def test_output_into_a_closed_pipe_exits_1_without_a_traceback(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], buffered: bool
) -> None:
    env = {k: v for k, v in cli.env.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)  # as by atomicswap --help | head -0, head gone already
    try:
        result = subprocess.run(
            [*cli.words, *args], cwd=tmp_path, env=env, stdout=write_end, stderr=subprocess.PIPE, timeout=60
        )
    finally:
        os.close(write_end)

    assert (result.returncode, result.stderr) == (1, b"")


# ---- how it is started ----


def test_main_returns_the_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a", "alpha")

    statuses = atomicswap.main([str(tmp_path / "a"), str(tmp_path / "missing")]), atomicswap.main([])

    assert statuses == (1, 2)
    assert capsys.readouterr().err.startswith(f"atomicswap: swap {tmp_path / 'a'} {tmp_path / 'missing'}: ")


def test_importing_atomicswap_main_runs_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    imported = subprocess.run(
        [sys.executable, "-c", "import atomicswap.__main__"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    documented = subprocess.run(
        [sys.executable, "-m", "pydoc", "atomicswap.__main__"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )

    assert (imported.returncode, imported.stdout, imported.stderr) == (0, b"", b"")
    assert documented.returncode == 0 and b"python -m atomicswap" in documented.stdout


def test_vendored_file_runs_from_its_own_directory(tmp_path: Path) -> None:
    shutil.copy(ROOT / "atomicswap" / "__init__.py", tmp_path / "atomicswap.py")
    write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, timeout=60)

    as_file, as_module = run("atomicswap.py", "a", "b"), run("-m", "atomicswap", "swap", "a", "b")
    failed = run("atomicswap.py", "a", "missing")

    assert (as_file.returncode, as_module.returncode) == (0, 0)
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("alpha", "bravo")  # swapped twice
    assert_failure(failed, "swap a missing", err=errno.ENOENT)
