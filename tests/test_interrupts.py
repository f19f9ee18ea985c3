"""Interrupts, forks, re-entry and failing cleanups: a job leaves nothing
behind that it made, and never touches what is not its own.

An interrupt is made to land exactly between a system call that creates
something and the next Python line: strace delivers SIGINT as that call
returns, and Python raises KeyboardInterrupt at its next check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import FrameType

import pytest
from conftest import MARKER, inject_after_marker, inject_at_call_on, run_python, write

# Each script binds first, so that the calls counted are the job's own.
PRELUDE = "import os, sys, atomicswap\natomicswap._bind_early('')\n"


def interrupted(
    tmp_path: Path, job: str, syscalls: str, nth: int = 1, call: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run *job* with SIGINT delivered as the *nth* of *syscalls* after the
    marker returns, or, with *call*, as the first one whose strace line
    matches that regular expression (what it acts on)."""
    code = (
        PRELUDE
        + f"{MARKER}\n"
        + "try:\n"
        + "".join(f"    {line}\n" for line in job.splitlines())
        + "except KeyboardInterrupt:\n"
        + "    print('KeyboardInterrupt')\n"
        + "except BaseException as e:\n"
        + "    print(type(e).__name__, e)\n"
    )
    if call:
        return inject_at_call_on(code, syscalls, "signal=SIGINT", call, cwd=tmp_path)
    return inject_after_marker(code, syscalls, "signal=SIGINT", nth, cwd=tmp_path)


WRITE = "with atomicswap.atomic_write('f') as f:\n    f.write('new')\n"
NAMED = "atomicswap._O_TMPFILE = 0\n" + WRITE


def test_an_interrupt_as_the_named_temporary_is_created_leaves_nothing(tmp_path: Path) -> None:
    write(tmp_path / "f", "old")

    result = interrupted(tmp_path, NAMED, "openat", call=r"\"\.f\.[0-9a-f]{12}\.tmp\", [^)]*O_EXCL")

    assert result.stdout == "KeyboardInterrupt\n", result.stderr
    assert os.listdir(tmp_path) == ["f"]
    assert (tmp_path / "f").read_text() == "old"


def test_an_interrupt_as_the_anonymous_file_gets_its_temporary_name_leaves_nothing(tmp_path: Path) -> None:
    write(tmp_path / "f", "old")

    result = interrupted(tmp_path, WRITE, "link,linkat")

    assert result.stdout == "KeyboardInterrupt\n", result.stderr
    assert os.listdir(tmp_path) == ["f"]
    assert (tmp_path / "f").read_text() == "old"


def test_an_interrupt_as_the_staging_directory_is_made_leaves_nothing(tmp_path: Path) -> None:
    result = interrupted(tmp_path, "with atomicswap.atomic_dir('site'):\n    pass", "mkdir,mkdirat")

    assert result.stdout == "KeyboardInterrupt\n", result.stderr
    assert os.listdir(tmp_path) == []


def test_an_interrupt_as_the_temporary_link_is_made_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to("old")

    result = interrupted(tmp_path, "atomicswap.symlink('new', 'current')", "symlink,symlinkat")

    assert result.stdout == "KeyboardInterrupt\n", result.stderr
    assert os.listdir(tmp_path) == ["current"]
    assert os.readlink(tmp_path / "current") == "old"


def test_an_interrupt_after_a_link_is_repointed_is_only_an_interrupt(tmp_path: Path) -> None:
    """Not a FileNotFoundError about a temporary that already became the link."""
    (tmp_path / "current").symlink_to("old")

    result = interrupted(tmp_path, "atomicswap.symlink('new', 'current')", "rename,renameat,renameat2")

    assert result.stdout == "KeyboardInterrupt\n", result.stderr
    assert os.listdir(tmp_path) == ["current"]
    assert os.readlink(tmp_path / "current") == "new"


def test_an_interrupt_after_a_write_is_renamed_into_place_is_only_an_interrupt(tmp_path: Path) -> None:
    write(tmp_path / "f", "old")

    result = interrupted(tmp_path, NAMED, "rename,renameat,renameat2")

    assert result.stdout == "KeyboardInterrupt\n", result.stderr
    assert os.listdir(tmp_path) == ["f"]
    assert (tmp_path / "f").read_text() == "new"


# A child forked inside the block, leaving through sys.exit() as a child
# process in a worker pool or a daemon would.
FORK = """
import os, sys, atomicswap
with atomicswap.{job} as handle:
    {before_fork}
    if os.fork() == 0:
        sys.exit(0)
    os.wait()
    {after_fork}
print(sorted(os.listdir('.')))
"""


def test_a_forked_child_leaving_an_atomic_write_leaves_the_write_to_its_parent(tmp_path: Path) -> None:
    """The child must neither remove the temporary nor flush the parent's
    buffered data into it a second time."""
    write(tmp_path / "f", "old")
    atomic_write_named = FORK.replace(
        "import os, sys, atomicswap", "import os, sys, atomicswap\natomicswap._O_TMPFILE = 0"
    )
    for code in (FORK, atomic_write_named):
        result = run_python(
            code.format(
                job="atomic_write('f')",
                before_fork="handle.write('buffered before the fork;')",
                after_fork="handle.write('after')",
            ),
            cwd=tmp_path,
        )

        assert result.stdout == "['f']\n", result.stderr
        assert (tmp_path / "f").read_text() == "buffered before the fork;after"


def test_a_forked_child_leaving_an_atomic_dir_leaves_the_staging_tree_to_its_parent(tmp_path: Path) -> None:
    result = run_python(
        FORK.format(
            job="atomic_dir('site')",
            before_fork="(handle / 'before').write_text('1')",
            after_fork="(handle / 'after').write_text('2')",
        ),
        cwd=tmp_path,
    )

    assert result.stdout == "['site']\n", result.stderr
    assert sorted(os.listdir(tmp_path / "site")) == ["after", "before"]


def test_one_atomic_dir_cannot_be_entered_twice_at_once(tmp_path: Path) -> None:
    from atomicswap import atomic_dir

    publisher = atomic_dir(tmp_path / "site")
    with publisher as staging, pytest.raises(RuntimeError, match="already in use"):
        (staging / "outer").write_text("outer")
        publisher.__enter__()

    assert os.listdir(tmp_path) == ["site"]  # no second staging directory left behind
    assert os.listdir(tmp_path / "site") == ["outer"]
    with publisher as staging:  # and again afterwards
        (staging / "again").write_text("again")
    assert os.listdir(tmp_path / "site") == ["again"]


# The block raises; removing what the job made fails too.
FAILING_CLEANUP = (
    PRELUDE
    + "fds = len(os.listdir('/proc/self/fd'))\n"
    + "{setup}\n"
    + f"{MARKER}\n"
    + "try:\n"
    + "    with atomicswap.{job} as handle:\n"
    + "        {fill}\n"
    + "        raise ValueError('from the block')\n"
    + "except ValueError as e:\n"
    + "    print('ValueError', getattr(e, '__notes__', []))\n"
    + "print('leaked', len(os.listdir('/proc/self/fd')) - fds)\n"
)


def test_when_removing_the_temporary_fails_the_blocks_exception_says_where_it_is(tmp_path: Path) -> None:
    code = FAILING_CLEANUP.format(
        setup="atomicswap._O_TMPFILE = 0", job="atomic_write('f')", fill="handle.write('x')"
    )

    result = inject_after_marker(code, "unlink,unlinkat", "error=EIO", cwd=tmp_path)

    (leftover,) = os.listdir(tmp_path)
    assert leftover.startswith(".f.") and leftover.endswith(".tmp")
    assert result.stdout.startswith("ValueError ["), result.stderr
    assert f"'{leftover}' is left behind: removing it failed: Input/output error" in result.stdout
    assert result.stdout.endswith("leaked 0\n")


def test_when_removing_the_staging_tree_fails_the_blocks_exception_says_where_it_is(tmp_path: Path) -> None:
    code = FAILING_CLEANUP.format(setup="", job="atomic_dir('site')", fill="(handle / 'f').write_text('x')")

    result = inject_after_marker(code, "unlink,unlinkat,rmdir", "error=EIO", cwd=tmp_path)

    (leftover,) = os.listdir(tmp_path)
    assert leftover.startswith(".site.") and leftover.endswith(".tmp")
    assert result.stdout.startswith("ValueError ["), result.stderr
    assert f"'{tmp_path / leftover}' is left behind: removing it failed: Input/output error" in result.stdout
    assert result.stdout.endswith("leaked 0\n")


def test_when_listing_the_staging_tree_fails_the_blocks_exception_says_where_it_is(tmp_path: Path) -> None:
    """getdents64 fails with EIO in a directory of the staging tree: the
    block's ValueError, not a TypeError about scandir()'s descriptor."""
    code = FAILING_CLEANUP.format(setup="", job="atomic_dir('site')", fill="(handle / 'sub').mkdir()")

    result = inject_at_call_on(code, "getdents64", "error=EIO", r"</\S*/\.site\.\w+\.tmp/sub>", cwd=tmp_path)

    assert result.stdout.startswith("ValueError ["), result.stderr
    assert result.stdout.endswith("leaked 0\n")
    if sys.implementation.name == "pypy":
        # PyPy's scandir() ends the listing silently instead: the empty
        # directory is removed all the same, and nothing is left.
        assert os.listdir(tmp_path) == []
        return
    (leftover,) = os.listdir(tmp_path)
    assert leftover.startswith(".site.") and leftover.endswith(".tmp")
    assert f"'{tmp_path / leftover}' is left behind: removing it failed: Input/output error" in result.stdout


REPLACE_TREE = (
    PRELUDE
    + "fds = len(os.listdir('/proc/self/fd'))\n"
    + "try:\n"
    + "    atomicswap.replace('src', 'tree')\n"
    + "except KeyboardInterrupt:\n"
    + "    print('KeyboardInterrupt')\n"
    + "except BaseException as e:\n"
    + "    print(type(e).__name__, e)\n"
    + "print('leaked', len(os.listdir('/proc/self/fd')) - fds)\n"
)


def test_an_interrupt_as_the_old_tree_walk_closes_a_directory_is_only_an_interrupt(tmp_path: Path) -> None:
    """SIGINT as the walk closes tree/sub (now src/sub), just removed: no
    second close of that number (EBADF, or another thread's file), no leak."""
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    write(tmp_path / "tree" / "sub" / "f", "old")
    (tmp_path / "src").mkdir()

    result = inject_at_call_on(
        REPLACE_TREE, "close", "signal=SIGINT", r"close\(\d+</\S*/src/sub>\(deleted\)\)", cwd=tmp_path
    )

    assert result.stdout == "KeyboardInterrupt\nleaked 0\n", result.stderr
    assert os.listdir(tmp_path / "tree") == []


def test_an_interrupt_as_atomic_dir_hands_out_the_staging_path_leaves_nothing(tmp_path: Path) -> None:
    """The interrupt lands as __enter__ builds the Path it returns, after the
    staging directory is made: a profile hook raises KeyboardInterrupt at
    that call, as a signal handler would at that point."""

    def interrupt(frame: FrameType, event: str, arg: object) -> None:
        caller, code = frame.f_back, frame.f_code
        building_the_path = "pathlib" in code.co_filename and code.co_name in ("__new__", "__init__")
        if event == "call" and building_the_path and caller and caller.f_code.co_name == "__enter__":
            sys.setprofile(None)
            raise KeyboardInterrupt

    from atomicswap import atomic_dir

    fds = os.listdir("/proc/self/fd")
    sys.setprofile(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "site"):
            pass
    finally:
        sys.setprofile(None)

    assert os.listdir(tmp_path) == []
    assert len(os.listdir("/proc/self/fd")) == len(fds)


def interrupt_on_entering(name: str) -> None:
    """Raise KeyboardInterrupt as the library's function *name* is called, as a
    signal handler would at that point (a profile hook, removed as it fires)."""

    def interrupt(frame: FrameType, event: str, arg: object) -> None:
        if (
            event == "call"
            and frame.f_code.co_name == name
            and frame.f_globals.get("__name__") == "atomicswap"
        ):
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(interrupt)


@pytest.mark.parametrize("durable", [False, True])
def test_an_interrupt_just_after_replace_exchanges_says_where_the_old_tree_is(
    tmp_path: Path, durable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the exchange and the removal of the old tree, which is then at
    src: a caller who retried without being told would put it back."""
    from atomicswap import replace

    for name, content in (("site", "old"), ("new", "new")):
        (tmp_path / name).mkdir()
        write(tmp_path / name / "index", content)
    monkeypatch.chdir(tmp_path)
    interrupt_on_entering("_after_put")
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            replace("new", "site", durable=durable)
    finally:
        sys.setprofile(None)

    assert getattr(raised.value, "__notes__", []) == [
        "the new content is in place; its old content is left at 'new'"
    ]
    assert (tmp_path / "site" / "index").read_text() == "new"
    assert (tmp_path / "new" / "index").read_text() == "old"


def test_an_interrupt_just_after_atomic_dir_exchanges_says_where_the_old_tree_is(tmp_path: Path) -> None:
    from atomicswap import atomic_dir

    (tmp_path / "site").mkdir()
    write(tmp_path / "site" / "index", "old")
    with pytest.raises(KeyboardInterrupt) as raised, atomic_dir(tmp_path / "site") as staging:
        write(staging / "index", "new")
        interrupt_on_entering("_after_put")
    sys.setprofile(None)

    [note] = getattr(raised.value, "__notes__", [])
    [left] = [name for name in os.listdir(tmp_path) if name != "site"]
    assert note == f"the new content is in place; its old content is left at {str(tmp_path / left)!r}"
    assert (tmp_path / "site" / "index").read_text() == "new"
    assert (tmp_path / left / "index").read_text() == "old"


def interrupt_exchanging_job(tmp_path: Path, job: str, syscall: str, call: str) -> str:
    """Run replace('new', 'site') or atomic_dir('site'), not durable, over a
    site holding index "old", with SIGINT delivered as the first *syscall*
    whose strace line matches *call* returns; the KeyboardInterrupt's notes."""
    for name, content in (("site", "old"), ("new", "new"))[: 2 if job == "replace" else 1]:
        (tmp_path / name).mkdir()
        write(tmp_path / name / "index", content)
    code = (
        "import os, atomicswap\n"
        "try:\n"
        + (
            "    atomicswap.replace('new', 'site', durable=False)\n"
            if job == "replace"
            else "    with atomicswap.atomic_dir('site', durable=False) as d:\n"
            "        (d / 'index').write_text('new')\n"
        )
        + "except KeyboardInterrupt as e:\n"
        "    print(*getattr(e, '__notes__', ['no note']), sep='\\n')\n"
    )
    result = inject_at_call_on(code, syscall, "signal=SIGINT", call, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("job", ["replace", "atomic_dir"])
def test_an_interrupt_as_the_exchange_returns_says_the_new_content_is_in_place(
    tmp_path: Path, job: str
) -> None:
    """strace delivers SIGINT as renameat2(RENAME_EXCHANGE) returns, so that
    the interrupt is raised before the job knows the exchange is done."""
    notes = interrupt_exchanging_job(tmp_path, job, "renameat2", "RENAME_EXCHANGE")

    assert notes.startswith("the new content is in place"), notes
    assert (tmp_path / "site" / "index").read_text() == "new"


@pytest.mark.parametrize("job", ["replace", "atomic_dir"])
def test_an_interrupt_as_the_old_trees_last_directory_goes_does_not_say_it_is_left(
    tmp_path: Path, job: str
) -> None:
    """SIGINT as the rmdir() of the old tree's top returns: the tree is gone,
    and the note must not send the caller looking for it."""
    top = r'"new", AT_REMOVEDIR' if job == "replace" else r'"\.site\.\w+\.tmp", AT_REMOVEDIR'

    notes = interrupt_exchanging_job(tmp_path, job, "unlinkat", top)

    assert notes == "the new content is in place\n", notes
    assert (tmp_path / "site" / "index").read_text() == "new"
    assert os.listdir(tmp_path) == ["site"]
