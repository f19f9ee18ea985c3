"""Fault-injection driver: fail each system call atomicswap makes, one at a time.

How it works.

A *scenario* is one job on a small tree of files: the tree before (``before``),
the tree a successful job leaves (``after``), and the code of the job. The
tree is data (a str is a file's content, a dict a directory, a one-item list a
symlink's target), so the driver can both build it and compare against it.

Each run is a fresh interpreter (the real one, ``os.path.realpath(sys.executable)``,
with ``-S`` so that no site hook adds system calls of its own) importing
atomicswap from this tree. The child builds ``before`` in an empty fixture
directory, binds ctypes (``atomicswap._bind_early``), imports everything the
library may import late, counts its descriptors, and then runs the job inside a
*window* marked by ``getppid()`` calls: one before the job, one after it, and a
pair around the user's ``with`` block, whose own system calls are the user's and
not the library's. After the window it counts its descriptors again and prints
a JSON report: ``ok``, or the exception's type, errno, filename, filename2,
message and notes.

1. Discovery. The child runs under ``strace -f --seccomp-bpf -e trace=getppid,...``
   with no fault. The log gives every file-related system call in the library's
   part of the window, in order. The n-th call of syscall S counted from the
   start of the process is what ``strace -e inject=S:error=E:when=n`` fails, so
   the k-th call of S inside the window is ``when=(calls of S before it) + k``.
   The discovery run itself must succeed and leave exactly ``after``.
2. Injection. One run per fault: syscall, occurrence, errno, and optionally a
   second fault, ``when=M+`` on unlink, unlinkat and rmdir from the first such
   call after the fault on, so that the cleanup fails as well. The injection
   run logs the faulted syscalls and the markers, and the driver checks that
   the fault really landed on a library call inside the window (else the run
   tells nothing, and the sweep reports a problem of its own).
3. Invariants, checked by the parent on the fixture directory and the report:
   the target is entirely its old or entirely its new content (absent where it
   was absent), and the rest of the tree matches the same side; nothing else
   is left in the directory unless the error's message or notes name it (a
   cleanup that failed must say where its leftover is); the job succeeded or
   raised an OSError whose filename (and filename2) is a path exactly as the
   script spelled it; an error after the new content is in place says so; no
   descriptor leaked. strace skips an injected system call, so a ``close()``
   it fails leaves that descriptor open where the kernel would have closed it:
   that descriptor is not counted as a leak.

``python tests/faultsweep.py SCENARIO SYSCALL#K ERRNO [CLEANUP_ERRNO]`` runs one
fault (the K-th call of SYSCALL in the window), and prints the child's report,
the tree it left and the violations.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Union

ROOT = Path(__file__).resolve().parent.parent
PYTHON = os.path.realpath(sys.executable)  # a pyenv shim would add a process and a shell
TIMEOUT = 20.0  # seconds for one run; a library that loops forever is killed

Node = Union[str, list[str], dict[str, "Node"]]
Tree = dict[str, Node]

# The file-related system calls swept, and the errnos each really returns
# (open(2), write(2), fsync(2), link(2), rename(2), unlink(2), mkdir(2), ...).
# EIO is added to each. strace knows ENOTSUP by Linux's other name, EOPNOTSUPP.
# Syscall names are x86_64's; a name this architecture lacks is
# ignored by strace ("?" prefix) and finds no call.
_SPACE = ("ENOSPC", "EDQUOT")
ERRNOS: dict[str, tuple[str, ...]] = {
    "open": (*_SPACE, "EACCES", "EROFS", "EMFILE", "ENFILE", "ENOENT"),
    "openat": (*_SPACE, "EACCES", "EROFS", "EMFILE", "ENFILE", "ENOENT"),
    "write": (*_SPACE, "EFBIG"),
    "fsync": (*_SPACE, "EROFS", "EINVAL"),
    "fdatasync": (*_SPACE, "EROFS", "EINVAL"),
    "syncfs": _SPACE,
    "fchmod": ("EPERM", "EROFS"),
    "fchmodat": ("EPERM", "EROFS", "EACCES"),
    "fchown": ("EPERM", "EROFS"),
    "fchownat": ("EPERM", "EROFS", "EACCES"),
    "link": (*_SPACE, "EACCES", "EROFS", "EEXIST", "EMLINK", "EPERM", "ENOENT"),
    "linkat": (*_SPACE, "EACCES", "EROFS", "EEXIST", "EMLINK", "EPERM", "ENOENT"),
    "rename": (*_SPACE, "EACCES", "EROFS", "EBUSY", "ENOENT", "EPERM"),
    "renameat": (*_SPACE, "EACCES", "EROFS", "EBUSY", "ENOENT", "EPERM"),
    "renameat2": (*_SPACE, "EACCES", "EROFS", "EBUSY", "ENOENT", "EPERM"),
    # Not ENOENT, here nor from the stat calls: it says that the name is gone,
    # which strace cannot make true, and a job rightly takes it at its word
    # (a cleanup for done, atomic_write(path, "a") for a new file).
    "unlink": ("EACCES", "EROFS", "EBUSY", "EPERM"),
    "unlinkat": ("EACCES", "EROFS", "EBUSY", "EPERM"),
    "mkdir": (*_SPACE, "EACCES", "EROFS", "EEXIST", "EMLINK"),
    "mkdirat": (*_SPACE, "EACCES", "EROFS", "EEXIST", "EMLINK"),
    "rmdir": ("EACCES", "EROFS", "EBUSY", "ENOTEMPTY"),
    "symlink": (*_SPACE, "EACCES", "EROFS", "EEXIST"),
    "symlinkat": (*_SPACE, "EACCES", "EROFS", "EEXIST"),
    "getdents64": ("ENOENT",),
    "read": (),
    "lseek": ("ESPIPE",),
    "ftruncate": (*_SPACE, "EFBIG", "EPERM"),
    # Copying the old content ("a", "r+"): a clone, else an in-kernel copy.
    "copy_file_range": (*_SPACE, "EXDEV", "EINVAL", "EOPNOTSUPP"),
    "sendfile": (*_SPACE, "EINVAL"),
    # Extended attributes kept from the replaced file.
    "listxattr": ("EOPNOTSUPP", "ERANGE", "EACCES"),
    "llistxattr": ("EOPNOTSUPP", "ERANGE", "EACCES"),
    "flistxattr": ("EOPNOTSUPP", "ERANGE"),
    "getxattr": ("EOPNOTSUPP", "ERANGE", "ENODATA"),
    "lgetxattr": ("EOPNOTSUPP", "ERANGE", "ENODATA"),
    "fgetxattr": ("EOPNOTSUPP", "ERANGE", "ENODATA"),
    "setxattr": (*_SPACE, "EOPNOTSUPP", "EPERM"),
    "lsetxattr": (*_SPACE, "EOPNOTSUPP", "EPERM"),
    "fsetxattr": (*_SPACE, "EOPNOTSUPP", "EPERM"),
    "statfs": ("EACCES", "ENOENT"),
    "fstatfs": ("ENOSYS",),
    "close": ("EINTR", *_SPACE),
    "fstat": ("EOVERFLOW",),
    "newfstatat": ("EACCES", "EOVERFLOW"),
    "statx": ("EACCES", "EOVERFLOW"),
    "ioctl": ("ENOTTY", "EINVAL", "EOPNOTSUPP", "EXDEV"),
}
SYSCALLS = tuple(ERRNOS)
# What the cleanup calls, failed too in a double fault.
CLEANUP_SYSCALLS = ("unlink", "unlinkat", "rmdir")
CLEANUP_ERRNOS = ("EIO", "EROFS")


def errnos_of(syscall: str) -> tuple[str, ...]:
    return ("EIO", *ERRNOS[syscall])


# --- Scenarios ---------------------------------------------------------------

OLD_SITE: Tree = {"index.html": "old index", "sub": {"a.txt": "old a", "b.txt": "old b"}}
NEW_SITE: Tree = {"index.html": "new index", "sub": {"page.html": "new page"}}
# The block of atomic_dir(): it stages NEW_SITE; mark() brackets the user's code.
STAGE_NEW_SITE = """\
    with atomicswap.atomic_dir({path!r}{args}) as staging:
        mark()
        (staging / "index.html").write_text("new index")
        (staging / "sub").mkdir()
        (staging / "sub" / "page.html").write_text("new page")
        mark()
"""
WRITE_NEW = """\
    with atomicswap.atomic_write({path!r}{args}) as f:
        mark()
        f.write({text})
        mark()
"""


@dataclass(frozen=True)
class Scenario:
    """A job on a tree: *before* and *after* are the fixture directory's trees."""

    name: str
    before: Tree
    after: Tree
    code: str  # the job, indented for the child's try block
    target: str  # the path whose content is replaced
    paths: tuple[str | bytes, ...]  # the user's paths, as the code spells them: bytes stay bytes
    configure: str = ""  # run before the window, e.g. forcing named temporaries
    prepare: str = ""  # run once the tree is built, for what the tree cannot say (xattrs)
    # Faults every run of this scenario gets: (syscall, errno, occurrence in
    # the window), failing that call and every later one of the syscall, as
    # NFS answers EINVAL to every renameat2() with flags.
    forced: tuple[tuple[str, str, int], ...] = ()


NAMED = "atomicswap._O_TMPFILE = 0"


def write_scenario(
    name: str,
    before: Tree,
    configure: str = "",
    args: str = "",
    path: str | bytes = "target.txt",
    result: str = "new",
) -> Scenario:
    """atomic_write(path) of "new" to target.txt, spelling the path as *path*,
    leaving *result* there."""
    return Scenario(
        name,
        before,
        {**before, "target.txt": result},
        WRITE_NEW.format(path=path, args=args, text=repr("new")),
        "target.txt",
        (path,),
        configure,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        write_scenario("write_replace", {"target.txt": "old"}),
        write_scenario("write_replace_named", {"target.txt": "old"}, NAMED),
        write_scenario("write_replace_bytes", {"target.txt": "old"}, path=b"target.txt"),
        replace(
            write_scenario("write_replace_xattr", {"target.txt": "old"}),
            prepare="os.setxattr('target.txt', 'user.origin', b'kept')",
        ),
        # Appending starts from a copy of the old content.
        write_scenario("write_append", {"target.txt": "old"}, args=", 'a'", result="oldnew"),
        write_scenario("write_append_named", {"target.txt": "old"}, NAMED, ", 'a'", result="oldnew"),
        write_scenario("write_create", {}),
        write_scenario("write_create_named", {}, NAMED),
        write_scenario("write_noreplace", {}, "", ", overwrite=False"),
        write_scenario("write_noreplace_named", {}, NAMED, ", overwrite=False"),
        Scenario(
            "dir_new",
            {},
            {"site": NEW_SITE},
            STAGE_NEW_SITE.format(path="site", args=""),
            "site",
            ("site",),
        ),
        Scenario(
            "dir_over_tree",
            {"site": OLD_SITE},
            {"site": NEW_SITE},
            STAGE_NEW_SITE.format(path="site", args=""),
            "site",
            ("site",),
        ),
        Scenario(
            "dir_noreplace",
            {},
            {"site": NEW_SITE},
            STAGE_NEW_SITE.format(path="site", args=", overwrite=False"),
            "site",
            ("site",),
        ),
        Scenario(
            "replace_file",
            {"incoming.txt": "new", "target.txt": "old"},
            {"target.txt": "new"},
            "    atomicswap.replace('incoming.txt', 'target.txt')\n",
            "target.txt",
            ("incoming.txt", "target.txt"),
        ),
        Scenario(
            "replace_tree",
            {"incoming": NEW_SITE, "site": OLD_SITE},
            {"site": NEW_SITE},
            "    atomicswap.replace('incoming', 'site')\n",
            "site",
            ("incoming", "site"),
        ),
        Scenario(
            "replace_tree_bytes",
            {"incoming": NEW_SITE, "site": OLD_SITE},
            {"site": NEW_SITE},
            "    atomicswap.replace(b'incoming', b'site')\n",
            "site",
            (b"incoming", b"site"),
        ),
        Scenario(
            "symlink",
            {"releases": {"1": {"v": "1"}, "2": {"v": "2"}}, "current": ["releases/1"]},
            {"releases": {"1": {"v": "1"}, "2": {"v": "2"}}, "current": ["releases/2"]},
            "    atomicswap.symlink('releases/2', 'current')\n",
            "current",
            ("releases/2", "current"),
        ),
        Scenario(
            "rename_noreplace",
            {"upload.part": "data"},
            {"upload": "data"},
            "    atomicswap.rename_noreplace('upload.part', 'upload')\n",
            "upload",
            ("upload.part", "upload"),
        ),
        Scenario(
            "rename_noreplace_fallback",
            {"upload.part": "data"},
            {"upload": "data"},
            "    atomicswap.rename_noreplace('upload.part', 'upload')\n",
            "upload",
            ("upload.part", "upload"),
            # NFS, FUSE and 9p answer EINVAL to every renameat2() with flags:
            # link() + unlink() then.
            forced=(("renameat2", "EINVAL", 1),),
        ),
    )
}


# --- The child ----------------------------------------------------------------

CHILD = """\
import errno, fcntl, json, os, pathlib, shutil, stat, sys, tempfile, traceback
import atomicswap
atomicswap._bind_early("")
import ctypes
{configure}


def build(path, node):
    if isinstance(node, str):
        with open(path, "w") as f:
            f.write(node)
    elif isinstance(node, list):
        os.symlink(node[0], path)
    else:
        os.mkdir(path)
        for name, child in node.items():
            build(os.path.join(path, name), child)


def descriptors():
    found = {{}}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return found


def mark():
    os.getppid()  # the window's marker in the strace log


def frames(e):
    return traceback.extract_tb(e.__traceback__)[-3:]


os.chdir(sys.argv[1])
if sys.argv[2] in ("setup", "both"):
    for name, node in json.loads(sys.argv[3]).items():
        build(name, node)
    {prepare}
if sys.argv[2] == "setup":
    sys.exit(0)
before = descriptors()
report = {{}}
mark()
try:
{code}
except BaseException as e:
    mark()
    report = {{
        "result": type(e).__name__,
        "oserror": isinstance(e, OSError),
        "errno": errno.errorcode.get(getattr(e, "errno", None) or 0),
        "filename": repr(getattr(e, "filename", None)),
        "filename2": repr(getattr(e, "filename2", None)),
        "message": str(e),
        "notes": [str(note) for note in getattr(e, "__notes__", ())],
        "raised at": [f"{{f.filename}}:{{f.lineno}} {{f.name}}" for f in frames(e)],
    }}
else:
    mark()
    report = {{"result": "ok"}}
after = descriptors()
report["leaked"] = {{fd: path for fd, path in after.items() if before.get(fd) != path}}
print(json.dumps(report))
"""


def child_code(scenario: Scenario) -> str:
    return CHILD.format(configure=scenario.configure, prepare=scenario.prepare or "pass", code=scenario.code)


# --- Running under strace -------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One traced system call of the child."""

    syscall: str
    number: int  # counted from the first call of this syscall in the process: strace's when=
    occurrence: int  # counted from the window's start among the library's calls; 0 outside them

    @property
    def library(self) -> bool:
        return self.occurrence > 0


@dataclass(frozen=True)
class Fault:
    scenario: str
    syscall: str
    errno: str
    occurrence: int
    cleanup_errno: str | None = None  # a second fault: every later unlink, unlinkat, rmdir

    def label(self) -> str:
        second = f" + cleanup {self.cleanup_errno}" if self.cleanup_errno else ""
        return f"{self.scenario} {self.syscall}#{self.occurrence} {self.errno}{second}"

    def command(self) -> str:
        """The one-line reproduction."""
        extra = f" {self.cleanup_errno}" if self.cleanup_errno else ""
        return (
            f"python tests/faultsweep.py {self.scenario} {self.syscall}#{self.occurrence} {self.errno}{extra}"
        )


@dataclass
class Run:
    fault: Fault | None
    report: dict[str, object]
    tree: Tree
    violations: list[str] = field(default_factory=list)
    problem: str = ""  # the run tells nothing about the library (the fault missed)


_LINE = re.compile(r"^\d+\s+(\w+)\((.*)$")
_MOUNTINFO = re.compile(r"\d+</proc/\d+/mountinfo>")  # a descriptor as strace -y shows it


def trace_calls(log: str) -> list[tuple[str, str]]:
    """(syscall, rest of the line) for each call in a strace -f log, in order."""
    calls = []
    for line in log.splitlines():
        m = _LINE.match(line)
        if m:
            calls.append((m.group(1), m.group(2)))
    return calls


def number_calls(calls: Sequence[tuple[str, str]]) -> list[tuple[Call, str]]:
    """Every call numbered; the library's calls are those between the 1st and
    the 2nd marker, the 3rd and the 4th, ...

    A read of /proc/self/mountinfo after the first since it was opened is not
    one of the library's calls: it is the same f.read() looping, and how many
    reads there are depends on the size of the machine's mount table, which
    another program (another CI job's tests) can change between the run that
    counts the calls and the run that fails one. Leaving them out keeps each
    call's occurrence the same whatever the table's size; its number, strace's
    when=, is recounted by inject() when a fault misses (the logs need -y).
    """
    counts: dict[str, int] = {}
    in_window: dict[str, int] = {}
    markers = 0
    reading = False  # mountinfo was read since it was last opened: another read continues that reading
    found = []
    for name, rest in calls:
        if name == "getppid":
            markers += 1
            continue
        counts[name] = counts.get(name, 0) + 1
        continues = False
        if name == "openat" and "mountinfo" in rest:
            reading = False
        elif name == "read" and _MOUNTINFO.match(rest):
            continues, reading = reading, True
        occurrence = 0
        if markers % 2 == 1 and not continues:
            occurrence = in_window[name] = in_window.get(name, 0) + 1
        found.append((Call(name, counts[name], occurrence), rest))
    return found


def strace_path() -> str | None:
    return shutil.which("strace")


def _trace_set(names: Iterable[str]) -> str:
    return "trace=" + ",".join(["getppid", *(f"?{name}" for name in sorted(set(names)))])


def run_child(
    scenario: Scenario,
    fixture: Path,
    *,
    phase: str = "both",
    strace: Sequence[str] = (),
    timeout: float = TIMEOUT,
) -> tuple[dict[str, object], str]:
    """Run *scenario*'s child in *fixture* (prefixed by *strace*); its report and stderr."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    command = [
        *strace,
        PYTHON,
        "-S",
        "-c",
        child_code(scenario),
        str(fixture),
        phase,
        json.dumps(scenario.before),
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)  # strace and the traced interpreter with it
        process.communicate()
        return {"result": "hung", "timeout": timeout}, ""
    if phase == "setup":
        return {"result": "ok" if process.returncode == 0 else "setup failed"}, err
    lines = out.strip().splitlines()
    try:
        report: dict[str, object] = json.loads(lines[-1])
    except (IndexError, ValueError):
        report = {"result": "crashed", "returncode": process.returncode, "stderr": err[-2000:]}
    return report, err


def forced(scenario: Scenario, call: Call) -> bool:
    """Whether *call* always gets *scenario*'s forced errno, and so cannot be swept."""
    return any(call.syscall == s and call.occurrence >= k for s, _, k in scenario.forced)


def forced_injects(scenario: Scenario, discovery: Sequence[Call]) -> list[str]:
    args = []
    for syscall, errno_name, occurrence in scenario.forced:
        number = next(c.number for c in discovery if c.syscall == syscall and c.occurrence == occurrence)
        args += ["-e", f"inject={syscall}:error={errno_name}:when={number}+"]
    return args


def discover(scenario: Scenario, workdir: Path) -> list[Call]:
    """The library's calls in *scenario*'s window, from a run without faults.

    A forced fault (the EINVAL of a filesystem without RENAME_NOREPLACE) is
    found by a first pass without it, then the calls are counted with it.
    """
    strace = strace_path()
    assert strace is not None
    calls: list[Call] = []
    for attempt in range(2):
        fixture = Path(tempfile.mkdtemp(prefix=f"{scenario.name}.", dir=workdir))
        log = fixture.parent / (fixture.name + ".strace")
        forced = forced_injects(scenario, calls) if attempt else []
        command = [
            strace,
            "-f",
            "-y",
            "--seccomp-bpf",
            "-qq",
            "-o",
            str(log),
            "-e",
            _trace_set(SYSCALLS),
            *forced,
        ]
        report, err = run_child(scenario, fixture, strace=command)
        if not log.exists():
            raise AssertionError(f"strace did not run: {report}, {err[-2000:]}")
        traced = trace_calls(log.read_text())
        calls = [call for call, _ in number_calls(traced)]
        tree = read_tree(fixture)
        remove(fixture)
        log.unlink()
        if report.get("result") != "ok" or tree != scenario.after:
            raise AssertionError(f"{scenario.name} without faults: {report}, {err[-2000:]}, left {tree}")
        if not scenario.forced:
            break
    return calls


def inject(scenario: Scenario, fault: Fault, discovery: Sequence[Call], workdir: Path) -> Run:
    """Run *scenario* with *fault* injected; check the invariants."""
    strace = strace_path()
    assert strace is not None
    # A fault that missed its call is tried again with the calls counted
    # afresh: an interpreter whose start-up reads a varying number of times
    # (PyPy), or a mount table that changed size since discovery, shifts the
    # numbers strace counts (not the occurrences, see number_calls()).
    for attempt in range(3):
        if attempt:
            discovery = discover(scenario, workdir)
        traced, specs = _injects(scenario, fault, discovery)
        run = _inject_once(scenario, fault, workdir, strace, traced, specs)
        if not run.problem:
            break
    return run


def _injects(scenario: Scenario, fault: Fault, discovery: Sequence[Call]) -> tuple[set[str], list[str]]:
    """The syscalls to trace and strace's inject= options for *fault*."""
    call = next(
        (c for c in discovery if (c.syscall, c.occurrence) == (fault.syscall, fault.occurrence)), None
    )
    if call is None:
        raise ValueError(f"{scenario.name} makes no call {fault.syscall}#{fault.occurrence}")
    traced = {fault.syscall, *(s for s, _, _ in scenario.forced)}
    if fault.syscall == "read":
        traced.add("openat")  # where each reading of mountinfo starts, for number_calls()
    specs = ["-e", f"inject={fault.syscall}:error={fault.errno}:when={call.number}"]
    specs += forced_injects(scenario, discovery)
    if fault.cleanup_errno:
        # Every call of unlink, unlinkat and rmdir after the fault: the
        # discovery run matches this one up to the fault, so the calls of
        # each before it are known.
        done = discovery[: discovery.index(call) + 1]
        for syscall in CLEANUP_SYSCALLS:
            if syscall not in traced:  # strace takes one inject= per syscall
                when = sum(1 for c in done if c.syscall == syscall) + 1
                specs += ["-e", f"inject={syscall}:error={fault.cleanup_errno}:when={when}+"]
                traced.add(syscall)
    return traced, specs


def _inject_once(
    scenario: Scenario, fault: Fault, workdir: Path, strace: str, traced: Collection[str], specs: list[str]
) -> Run:
    fixture = Path(tempfile.mkdtemp(prefix=f"{scenario.name}.", dir=workdir))
    log = fixture.parent / (fixture.name + ".strace")
    command = [strace, "-f", "-y", "--seccomp-bpf", "-qq", "-o", str(log), "-e", _trace_set(traced), *specs]
    report, err = run_child(scenario, fixture, strace=command)
    if not log.exists():
        raise AssertionError(f"strace did not run {fault.label()}: {report}, {err[-2000:]}")
    run = Run(fault, report, read_tree(fixture))
    traced_calls = number_calls(trace_calls(log.read_text()))
    landed = any(
        "(INJECTED)" in rest and c.syscall == fault.syscall and c.occurrence == fault.occurrence
        for c, rest in traced_calls
    )
    if report.get("result") != "hung" and not landed:
        run.problem = f"the fault did not land on {fault.syscall}#{fault.occurrence} in the window"
    closed = _injected_closes(log.read_text()) if fault.syscall == "close" else set()
    run.violations = check(scenario, run.report, run.tree, fixture, closed)
    remove(fixture)
    log.unlink()
    return run


def _injected_closes(log: str) -> set[str]:
    """Descriptors whose close() strace failed: the kernel would have closed them."""
    return {
        re.split(r"\D", rest, maxsplit=1)[0]  # "7</tmp/x>) = 0 (INJECTED)" with -y
        for name, rest in trace_calls(log)
        if name == "close" and "(INJECTED)" in rest
    }


# --- Trees and invariants ---------------------------------------------------------


def read_tree(path: Path) -> Tree:
    """The tree at *path* in the scenarios' notation."""
    tree: Tree = {}
    for name in sorted(os.listdir(path)):
        tree[name] = _read_node(path / name)
    return tree


def _read_node(path: Path) -> Node:
    if path.is_symlink():
        return [os.readlink(path)]
    if path.is_dir():
        try:
            return read_tree(path)
        except PermissionError:
            return {"<unreadable>": ""}
    try:
        return path.read_text(errors="replace")
    except OSError as e:
        return f"<unreadable: {e.strerror}>"


def remove(path: Path) -> None:
    """Remove a fixture, whatever modes a job left on its directories."""
    for directory, _, _ in os.walk(path):
        os.chmod(directory, 0o700)
    shutil.rmtree(path)


_RANDOM = re.compile(r"[0-9a-f]{12}")


def generic(text: str, fixture: Path | None = None) -> str:
    """*text* with what varies from run to run replaced, for grouping."""
    if fixture is not None:
        text = text.replace(str(fixture), "<dir>")
    text = re.sub(r"/proc/\d+/", "/proc/PID/", text)
    text = re.sub(r"#\d+", "#INODE", text)
    return _RANDOM.sub("RANDOM", text)


def check(
    scenario: Scenario, report: dict[str, object], tree: Tree, fixture: Path, closed: Collection[str] = ()
) -> list[str]:
    """What *report* and the *tree* left break of the invariants, one line each."""
    result = report.get("result")
    if result == "hung":
        return [f"hung (killed after {report['timeout']:.0f} s)"]
    if result == "crashed":
        return [f"the child crashed: {report.get('stderr', '')!s:.300}"]
    ok = result == "ok"
    violations = []
    said = " ".join([str(report.get("message", "")), *map(str, report.get("notes", []) or [])])  # type: ignore[call-overload]
    if not ok and not report.get("oserror"):
        violations.append(f"raised {result}, not an OSError: {generic(said, fixture)}")
    if not ok and report.get("oserror"):
        spelled = {repr(p) for p in scenario.paths}
        if report["filename"] not in spelled:
            violations.append(f"filename was {generic(str(report['filename']), fixture)}")
        if report["filename2"] not in spelled | {"None"}:
            violations.append(f"filename2 was {generic(str(report['filename2']), fixture)}")
    target = tree.get(scenario.target)
    old, new = scenario.before.get(scenario.target), scenario.after.get(scenario.target)
    if target == new:
        side = scenario.after
        if not ok and not any(phrase in said for phrase in ("new content", "was replaced", "was created")):
            violations.append("error after the new content was in place does not say so")
    elif target == old:
        side = scenario.before
        if ok:
            violations.append("succeeded, but the target has its old content")
    else:
        side = scenario.after
        violations.append("target torn" if target is not None else "target lost")
    for name in sorted(set(tree) | set(side)):
        if name == scenario.target or tree.get(name) == side.get(name):
            continue
        if name not in side:
            if name not in said:
                violations.append(f"leftover {generic(name)}")
        elif name not in tree:
            violations.append(f"{name} lost")
        else:
            violations.append(f"{name} changed")
    opened = dict(report.get("leaked", {}) or {})  # type: ignore[call-overload]
    leaked = sorted(generic(str(path), fixture) for fd, path in opened.items() if fd not in closed)
    if leaked:
        violations.append("fd leaked: " + ", ".join(leaked))
    return violations


# --- The sweep ------------------------------------------------------------------


def faults(
    scenario: Scenario, discovery: Sequence[Call], full: bool, done: set[tuple[str, ...]] | None = None
) -> Iterator[Fault]:
    """The faults to inject into *scenario*.

    Full: every call in the window with every errno it can return, and every
    call with either failing cleanup. Sampled (the default): every call with
    EIO, so that each call site is failed at least once; each other errno of a
    syscall at one of its calls, once per job (the scenarios whose names
    share their first word), so *done* records what the job's earlier
    scenarios had; and one failing cleanup after one call of each syscall,
    the cleanup's errno taking turns.
    """
    done = set() if done is None else done
    job = scenario.name.split("_")[0]
    by_syscall: dict[str, list[Call]] = {}
    for call in discovery:
        if call.library and not forced(scenario, call):
            by_syscall.setdefault(call.syscall, []).append(call)
    for turn, (syscall, calls) in enumerate(by_syscall.items()):
        for i, errno_name in enumerate(errnos_of(syscall)):
            if full or errno_name == "EIO":
                chosen = calls
            elif (job, syscall, errno_name) in done:
                continue
            else:
                chosen = [calls[i % len(calls)]]
            done.add((job, syscall, errno_name))
            for call in chosen:
                yield Fault(scenario.name, syscall, errno_name, call.occurrence)
        if syscall in CLEANUP_SYSCALLS:
            continue
        for cleanup in CLEANUP_ERRNOS if full else CLEANUP_ERRNOS[turn % 2 : turn % 2 + 1]:
            for call in calls if full else [calls[turn % len(calls)]]:
                yield Fault(scenario.name, syscall, "EIO", call.occurrence, cleanup)


def sweep(
    scenarios: Iterable[Scenario], workdir: Path, *, full: bool = False, workers: int = 2
) -> tuple[list[Run], dict[str, list[Call]]]:
    """Discover each scenario's calls, then inject every fault, *workers* at a time."""
    from concurrent.futures import ThreadPoolExecutor

    scenarios = list(scenarios)
    with ThreadPoolExecutor(workers) as pool:
        found = dict(zip([s.name for s in scenarios], pool.map(lambda s: discover(s, workdir), scenarios)))
        done: set[tuple[str, ...]] = set()
        jobs = [(s, f) for s in scenarios for f in faults(s, found[s.name], full, done)]
        runs = list(pool.map(lambda job: inject(job[0], job[1], found[job[0].name], workdir), jobs))
    return runs, found


def totals(runs: Sequence[Run], elapsed: float) -> str:
    """Runs and runs with violations, in all, by scenario and by syscall."""
    bad = sum(1 for r in runs if r.violations)
    lines = [f"fault sweep: {len(runs)} runs in {elapsed:.0f} s, {bad} with violations"]
    for title in ("scenario", "syscall"):
        counts: dict[str, list[int]] = {}
        for r in runs:
            total = counts.setdefault(str(getattr(r.fault, title)), [0, 0])
            total[0] += 1
            total[1] += bool(r.violations)
        each = (f"{k} {v[1]}/{v[0]}" for k, v in sorted(counts.items()))
        lines.append(f"  by {title} (violations/runs): " + ", ".join(each))
    return "\n".join(lines)


def violations(runs: Sequence[Run]) -> list[str]:
    """Each kind of violation once per scenario and syscall, with the errnos
    and occurrences that showed it and a command that reproduces one."""
    groups: dict[tuple[str, str, str], list[Fault]] = {}
    for r in runs:
        for violation in r.violations:
            assert r.fault is not None
            groups.setdefault((r.fault.scenario, r.fault.syscall, violation), []).append(r.fault)
    lines = []
    for (scenario, syscall, violation), members in sorted(groups.items()):
        errnos = sorted(
            {f.errno + (f"+cleanup:{f.cleanup_errno}" if f.cleanup_errno else "") for f in members}
        )
        occurrences = ",".join(str(o) for o in sorted({f.occurrence for f in members}))
        lines.append(f"{scenario} {syscall}#{occurrences} {' '.join(errnos)}: {violation}")
        lines.append(f"    {members[0].command()}")
    return lines


def problems(runs: Sequence[Run]) -> list[str]:
    """Runs that tell nothing about the library: the fault missed its call."""
    return [f"{r.fault.label()}: {r.problem}" for r in runs if r.problem and r.fault]


def main(argv: Sequence[str]) -> int:
    """Run one fault and show everything about it."""
    if len(argv) not in (3, 4) or argv[0] not in SCENARIOS or "#" not in argv[1]:
        print(__doc__.rsplit("\n\n", 2)[-1].strip(), file=sys.stderr)
        print("scenarios: " + ", ".join(SCENARIOS), file=sys.stderr)
        return 2
    scenario = SCENARIOS[argv[0]]
    syscall, occurrence = argv[1].split("#")
    fault = Fault(argv[0], syscall, argv[2], int(occurrence), argv[3] if len(argv) == 4 else None)
    with tempfile.TemporaryDirectory(prefix="faultsweep.") as work:
        discovery = discover(scenario, Path(work))
        print("calls in the window:", " ".join(f"{c.syscall}#{c.occurrence}" for c in discovery if c.library))
        start = time.monotonic()
        run = inject(scenario, fault, discovery, Path(work))
        print(f"{fault.label()} ({time.monotonic() - start:.2f} s)")
        print("report:", json.dumps(run.report, indent=1))
        print("left:", json.dumps(run.tree))
        print("violations:", *(run.violations or ["none"]), sep="\n  ")
        if run.problem:
            print("sweep problem:", run.problem)
    return 1 if run.violations or run.problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
