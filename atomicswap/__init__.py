"""Exchange two paths atomically, and the jobs built on that.

swap(a, b) exchanges two names on one filesystem in a single kernel operation
(Linux renameat2 with RENAME_EXCHANGE, macOS renameatx_np with RENAME_SWAP,
FreeBSD 15.1 renameat2 with AT_RENAME_EXCHANGE): either both names are
exchanged or nothing changes, and no process ever sees either name missing.
replace(), atomic_write(), write_bytes(), write_text(), atomic_dir(),
symlink() and rename_noreplace() are built on it where they need it, and on
a plain rename where that is enough, so every platform gets every job it can
do atomically; what it cannot do raises OSError(ENOTSUP). Nothing falls back
to a non-atomic imitation.

What every job promises:
- Readers, and a crash, see the old state or the new one, never a mix.
- A failure leaves nothing behind that the job made, and the OSError names
  the caller's path as they spelled it, carries the errno, and says whether
  anything changed ("nothing was changed", or "the new content is in
  place, but ...").
- With durable=True the new state survives a power cut once the call returns.
- Nothing the job was not given is touched: an old tree is removed without
  following symlinks or entering another mount, and a tree with a filesystem
  mounted inside it is not replaced at all.
"""

import errno
import os
import stat
import sys

__all__ = [
    "atomic_dir",
    "atomic_write",
    "exchange",
    "main",
    "rename_noreplace",
    "replace",
    "swap",
    "symlink",
    "write_bytes",
    "write_text",
]
__version__ = "0.3.0"

# Annotations are quoted, so typing is needed only by type checkers: importing
# it, or __future__ for unquoted annotations, would cost nearly as much as this
# whole module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path
    from types import TracebackType
    from typing import IO, Any, BinaryIO, Callable, Literal, TextIO, TypeVar, overload

    from typing_extensions import Buffer

    _StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
    _T = TypeVar("_T")
    # The C rename function, called (olddirfd, old, newdirfd, new, flags), and AT_FDCWD.
    _Binding = tuple[Callable[[int, bytes, int, bytes, int], int], int]
    # atomic_write()'s modes, in every spelling open() accepts for them.
    _TextMode = Literal[
        "w", "wt", "tw", "w+", "+w", "wt+", "w+t", "tw+", "t+w", "+wt", "+tw",
        "a", "at", "ta", "a+", "+a", "at+", "a+t", "ta+", "t+a", "+at", "+ta",
        "r+", "+r", "rt+", "r+t", "tr+", "t+r", "+rt", "+tr",
    ]  # fmt: skip
    _BinaryMode = Literal[
        "wb", "bw", "wb+", "w+b", "bw+", "b+w", "+wb", "+bw",
        "ab", "ba", "ab+", "a+b", "ba+", "b+a", "+ab", "+ba",
        "rb+", "r+b", "br+", "b+r", "+rb", "+br",
    ]  # fmt: skip
else:

    def overload(function: object) -> object:
        """typing.overload without importing typing: the last definition wins."""
        return function


# Linux <linux/fs.h>
RENAME_NOREPLACE = 0x1
RENAME_EXCHANGE = 0x2
# macOS <sys/stdio.h>
RENAME_SWAP = 0x2
RENAME_EXCL = 0x4


# ---- The public API ---------------------------------------------------------


def swap(
    first: "_StrOrBytesPath",
    second: "_StrOrBytesPath",
    *,
    first_dir_fd: "int | None" = None,
    second_dir_fd: "int | None" = None,
    durable: bool = False,
) -> None:
    """Exchange *first* and *second* atomically.

    Both must exist on the same filesystem; they may be files, directories
    (empty or not), symlinks (the links themselves are exchanged, never
    followed) or any mix of these. Either both names are exchanged or nothing
    changes, and no other process can observe either name missing.

    Paths are str, bytes or os.PathLike. A relative path is resolved against
    its dir fd (an open directory), or the current directory when that is None;
    an absolute path ignores its dir fd.

    durable=True makes the exchange survive a power cut: a regular file is
    fsynced before it moves, and both parent directories after. What is inside
    a directory being moved is not synced (atomic_dir() is for that).

    Raises TypeError for an argument of the wrong type and ValueError for a
    path with an embedded NUL, both before any system call. A failed exchange
    raises OSError (FileNotFoundError, PermissionError, ...) with the errno,
    filename=first and filename2=second, as os.rename does; EXDEV (different
    mounts) and EINVAL (a filesystem that cannot exchange, or one path inside
    the other) say so in their message. ENOTSUP on platforms other than Linux
    and macOS. With durable=True, a failed sync after the exchange says that
    the exchange is done but not yet durable.
    """
    if durable:
        _move_durably(first, second, RENAME_EXCHANGE, first_dir_fd, second_dir_fd, ("first", "second"))
    else:
        _renameat2(first, second, RENAME_EXCHANGE, first_dir_fd, second_dir_fd)


exchange = swap


def rename_noreplace(
    src: "_StrOrBytesPath",
    dst: "_StrOrBytesPath",
    *,
    src_dir_fd: "int | None" = None,
    dst_dir_fd: "int | None" = None,
    durable: bool = False,
) -> None:
    """Rename *src* to *dst*, raising FileExistsError if *dst* exists.

    The check and the rename are one kernel operation (Linux RENAME_NOREPLACE,
    macOS RENAME_EXCL), so whatever appears at *dst* meanwhile is never
    overwritten. Where the filesystem does not support that (NFS, FUSE, 9p
    answer EINVAL), a non-directory is moved with link() then unlink(), which
    never overwrites either, though for a moment both names show the file.
    durable=True is as for swap(). Paths, dir fds and errors are as for swap();
    an error after the link says that *dst* exists and what is left at *src*.
    """
    if durable:
        _move_durably(src, dst, RENAME_NOREPLACE, src_dir_fd, dst_dir_fd, ("src", "dst"))
        return
    try:
        _renameat2(src, dst, RENAME_NOREPLACE, src_dir_fd, dst_dir_fd, ("src", "dst"))
        return
    except OSError as e:
        if e.errno not in _FLAG_UNSUPPORTED:
            raise _failed(e, os.fspath(src), os.fspath(dst)) from e
    _move_durably(src, dst, RENAME_NOREPLACE, src_dir_fd, dst_dir_fd, ("src", "dst"), durable=False)


def replace(src: "_StrOrBytesPath", dst: "_StrOrBytesPath", *, durable: bool = False) -> None:
    """Put what is at *src* at *dst* atomically, whatever *dst* is.

    Unlike os.replace(), *dst* may be anything: absent, a file, a symlink, or a
    directory, empty or not, of the same kind as *src* or not. A reader of
    *dst* sees the old or the new, never nothing. Where a rename cannot do it
    (a non-empty directory at *dst*, or one of another kind), *src* and *dst*
    are exchanged and the old content, now at *src*, is removed without
    following symlinks or entering another mount. replace(p, p), or two names
    of one file, changes nothing, as with os.replace().

    Refused before anything moves: a *dst* whose last component is ".", ".."
    or nothing (EINVAL), and a directory with a filesystem mounted anywhere
    inside it (EBUSY, naming the mount point), whose removal would empty that
    filesystem. durable=True is as for swap().

    Every OSError names *src* and *dst* as given and says whether *dst* was
    replaced; if removing the old content fails, it says where that is left.
    """
    shown_src, shown_dst = _shown(src, "src"), _shown(dst, "dst")
    _refuse_dot(shown_dst)
    if not durable:
        try:
            os.replace(os.fsdecode(shown_src), os.fsdecode(shown_dst))  # what a rename can do, it does alone
            return
        except OSError as e:
            if e.errno not in _NEEDS_EXCHANGE and sys.platform != "win32":
                raise _failed(e, shown_src, shown_dst) from e
    _move_durably(src, dst, 0, None, None, ("src", "dst"), durable=durable)


@overload
def atomic_write(
    path: "_StrOrBytesPath",
    mode: "_TextMode" = "w",
    *,
    overwrite: bool = True,
    perms: "int | None" = None,
    durable: bool = True,
    encoding: "str | None" = None,
    errors: "str | None" = None,
    newline: "str | None" = None,
) -> "AbstractContextManager[TextIO]": ...


@overload
def atomic_write(  # noqa: F811 (typing.overload, which is not imported at run time)
    path: "_StrOrBytesPath",
    mode: "_BinaryMode",
    *,
    overwrite: bool = True,
    perms: "int | None" = None,
    durable: bool = True,
) -> "AbstractContextManager[BinaryIO]": ...


def atomic_write(  # noqa: F811 (the implementation of the overloads)
    path: "_StrOrBytesPath",
    mode: str = "w",
    *,
    overwrite: bool = True,
    perms: "int | None" = None,
    durable: bool = True,
    **open_kwargs: "Any",
) -> "_AtomicWrite":
    """Write a file so that readers, and a crash, see all of it or none of it.

        with atomic_write("settings.json") as f:
            json.dump(settings, f)

    The data goes to a temporary file in *path*'s own directory: on Linux an
    anonymous O_TMPFILE, which a crash cannot leave behind, else a hidden
    uniquely named file. Leaving the block normally flushes it, sets its
    permissions, fsyncs it (F_FULLFSYNC on macOS), renames it over *path* and
    fsyncs the directory; durable=False makes no sync calls, which keeps the
    write atomic for readers but not for a power cut. overwrite=False puts it
    at *path* only if nothing is there by then, as open(path, "x") would:
    FileExistsError otherwise, leaving no trace.

    An exception in the block, or any failure before the rename (a failed
    fsync included), leaves *path* as it was, removes the temporary and
    propagates; an OSError without a filename gets *path* as its filename. A
    failure after the rename says the new content is in place.

    *mode* is as for open(): "w" (or "wt", "wb", "w+", ...) starts empty; "a"
    starts from a copy of the current content, positioned at its end (empty
    if there is none); "r+" starts from a copy positioned at its start
    (FileNotFoundError if there is none). The copy shares the old file's
    blocks where the filesystem can (FICLONE on btrfs and xfs), else is made
    in the kernel (copy_file_range), else read and written. This is not
    O_APPEND: two processes appending at once each replace the file, and the
    last one wins. Read-only and exclusive ("x") modes raise ValueError, as
    does overwrite=False with "a" or "r+". *open_kwargs* (encoding, newline,
    ...) go to open().

    The file replaced keeps its permission bits, setuid and setgid included,
    its extended attributes where the writer may set them (user.*, POSIX
    ACLs, security.*, trusted.* for root; Linux), and its owner where the
    writer may give it (root may), else loses setuid and setgid; a new file
    gets what open() gives it (0o666 less the umask); *perms* sets the bits.
    They are applied after the last write, since the kernel clears setuid on
    a write. The file is a new inode: other hard links keep the old content.
    A symlink at *path* is written through, as open() does. Only regular
    files are replaced: a directory, a device or a FIFO at *path* raises
    OSError. A process forked inside the block leaves the write to its
    parent: its exit from the block only closes descriptors.
    """
    return _AtomicWrite(path, mode, overwrite, perms, durable, open_kwargs)


def write_bytes(
    path: "_StrOrBytesPath",
    data: "Buffer",
    *,
    overwrite: bool = True,
    perms: "int | None" = None,
    durable: bool = True,
) -> int:
    """Write *data*, any bytes-like object, to *path* with atomic_write(), and
    return the number of bytes written, as pathlib.Path.write_bytes() does."""
    view = memoryview(data)  # TypeError for what is not bytes-like, before any system call
    with atomic_write(path, "wb", overwrite=overwrite, perms=perms, durable=durable) as f:
        return f.write(view)


def write_text(
    path: "_StrOrBytesPath",
    text: str,
    encoding: "str | None" = None,
    errors: "str | None" = None,
    newline: "str | None" = None,
    *,
    overwrite: bool = True,
    perms: "int | None" = None,
    durable: bool = True,
) -> int:
    """Write *text* to *path* with atomic_write(), and return the number of
    characters written, as pathlib.Path.write_text() does."""
    if not isinstance(text, str):
        raise TypeError(f"text should be str, not {type(text).__name__}")
    options = {"encoding": encoding, "errors": errors, "newline": newline}
    with atomic_write(path, "w", overwrite=overwrite, perms=perms, durable=durable, **options) as f:
        return f.write(text)


def atomic_dir(path: "_StrOrBytesPath", *, overwrite: bool = True, durable: bool = True) -> "_AtomicDir":
    """Build a directory in private, then publish it at *path* all at once.

        with atomic_dir("public/site") as staging:
            (staging / "index.html").write_text(html)

    Yields a fresh, empty staging directory beside *path*, as an absolute
    pathlib.Path. *path*'s directory is resolved once, as the kernel resolves
    it (symlinks and ".." included), and held open until the end. Leaving the
    block normally syncs the staged tree (when *durable*: one syncfs() on
    Linux, else every file and directory), then publishes it at *path* as
    replace() would, or, with overwrite=False, only if nothing is there
    (FileExistsError otherwise); then syncs the parent. Where the filesystem
    cannot rename without replacing (NFS, FUSE), overwrite=False claims *path*
    with mkdir() and renames the tree over that empty directory, so a reader
    may briefly see it empty. An exception, in the block or while publishing,
    leaves *path* untouched and removes the staging directory. A symlink at
    *path* is replaced, not followed: to repoint one, use symlink(). Refuses
    what replace() refuses.
    """
    return _AtomicDir(path, overwrite, durable)


def symlink(
    target: "_StrOrBytesPath", link_path: "_StrOrBytesPath", *, overwrite: bool = True, durable: bool = False
) -> None:
    """Make *link_path* a symlink to *target*, atomically repointing an old one.

    The new link is made under a hidden name beside *link_path* and renamed
    over it, so readers find the old link or the new one, never none. A file
    at *link_path* is replaced too; a directory is not (IsADirectoryError).
    overwrite=False raises FileExistsError if *link_path* exists. With
    durable=True the directory is fsynced after the rename.
    """
    shown_target, shown_link = _shown(target, "target"), _shown(link_path, "link_path")
    directory, name = _split(shown_link)
    _bind_early(shown_link)
    try:
        parent = _Dir(directory)
    except OSError as e:
        raise _failed(e, shown_link) from e
    try:
        _make_link(os.fsdecode(shown_target), parent, name, overwrite, shown_link)
        if durable:
            try:
                _sync_dirs(parent, name)
            except OSError as e:
                raise _failed(e, shown_link, done="the link is in place, but not yet durable") from e
    finally:
        parent.close()


def _make_link(target: str, parent: "_Dir", name: str, overwrite: bool, shown: "str | bytes") -> None:
    """symlink()'s steps: a link under a hidden name, renamed over *name*."""
    temp = _Temporary(parent, name)
    try:
        if not overwrite:
            os.symlink(target, parent.at(name), dir_fd=parent.fd)
            return
        temp.create(lambda temp_name: os.symlink(target, parent.at(temp_name), dir_fd=parent.fd))
        _rename(parent, temp.name, parent, name)  # type: ignore[arg-type]
        temp.name = None  # it is the link now
    except OSError as e:
        raise _failed(e, shown, leftovers=_cleanup(temp, e)) from e
    except BaseException as e:
        _cleanup(temp, e)
        raise


# ---- replace() and durable renames -------------------------------------------

# Why rename() cannot put src at dst: dst is a non-empty directory (ENOTEMPTY,
# or EEXIST), a directory and src is not (EISDIR), or not one and src is (ENOTDIR).
_NEEDS_EXCHANGE = (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR)
# What a filesystem answers to a rename flag it does not support: EINVAL on
# Linux (NFS, FUSE, 9p), ENOTSUP on macOS, EOPNOTSUPP on FreeBSD; ENOSYS from
# a kernel without renameat2, and ENOTSUP from a platform without one.
_FLAG_UNSUPPORTED = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)
# dst may vanish between the rename that found it in the way and the exchange,
# and reappear before the next rename; each attempt is two system calls.
_PUT_ATTEMPTS = 4


def _move_durably(
    src: "_StrOrBytesPath",
    dst: "_StrOrBytesPath",
    flags: int,
    src_dir_fd: "int | None",
    dst_dir_fd: "int | None",
    names: "tuple[str, str]",
    durable: bool = True,
) -> None:
    """The rename jobs' general case, in directories held for the length of it.

    flags 0 is replace(): a rename, or where a rename cannot do it, an
    exchange and the removal of the old content; RENAME_NOREPLACE falls back
    to link() and unlink() for a non-directory. With *durable*, what moves is
    synced before the rename and both parents after it.
    """
    shown_src, shown_dst = _shown(src, names[0]), _shown(dst, names[1])
    _check_dir_fd(src_dir_fd, names[0])
    _check_dir_fd(dst_dir_fd, names[1])
    _bind_early(shown_src)
    src_parent, src_name = _split(shown_src)
    dst_parent, dst_name = _split(shown_dst)
    src_dir = dst_dir = None
    try:
        src_dir = _Dir(src_parent, src_dir_fd)
        dst_dir = _Dir(dst_parent, dst_dir_fd)
        if durable:
            _sync_file(src_dir, src_name)
            if flags == RENAME_EXCHANGE:
                _sync_file(dst_dir, dst_name)
        moving = _lstat(src_dir, src_name) if flags == 0 else None  # to tell, after an interrupt, what moved
        try:
            exchanged = _rename_by_flags(src_dir, src_name, dst_dir, dst_name, flags)
            problems = _after_put(exchanged, src_dir, src_name, shown_src, dst_dir, dst_name, durable)
        except OSError:
            raise
        except BaseException as e:  # an interrupt: after the move, say what it left where
            if _is_at(moving, dst_dir, dst_name):
                _note_in_place(e, src_dir, src_name, shown_src)
            raise
    except OSError as e:
        raise _failed(e, shown_src, shown_dst) from e
    finally:
        for held in (src_dir, dst_dir):
            if held is not None:
                held.close()
    if problems:
        raise _in_place_but(problems, shown_src, shown_dst, _DONE[flags])


# What a rename job has done when only what follows it fails, by flags.
_DONE = {
    0: "the new content is in place",
    RENAME_EXCHANGE: "the exchange is done",
    RENAME_NOREPLACE: "the rename is done",
}


def _rename_by_flags(src_dir: "_Dir", src: str, dst_dir: "_Dir", dst: str, flags: int) -> bool:
    """The rename a job asked for; True if an exchange left dst's old content at src."""
    if flags == 0:
        return _put(src_dir, src, dst_dir, dst)
    if flags == RENAME_NOREPLACE:
        _rename_new(src_dir, src, dst_dir, dst)
    else:
        _renameat2(src_dir.at(src), dst_dir.at(dst), flags, src_dir.fd, dst_dir.fd)
    return False


def _put(src_dir: "_Dir", src: str, dst_dir: "_Dir", dst: str) -> bool:
    """Move *src* to *dst* atomically; True if *dst*'s old content is now at *src*."""
    for _ in range(_PUT_ATTEMPTS):
        try:
            _rename(src_dir, src, dst_dir, dst)
            return False
        except OSError as e:
            # A trailing slash on dst says it is a directory and stays one, as
            # rename(2) reads it: only another directory may take its place.
            if e.errno not in _NEEDS_EXCHANGE or (dst.endswith("/") and not src_dir.holds_directory(src)):
                raise
            in_the_way = e
        _refuse_mounts_under(dst_dir, dst)
        try:
            _renameat2(src_dir.at(src), dst_dir.at(dst), RENAME_EXCHANGE, src_dir.fd, dst_dir.fd)
            return True
        except FileNotFoundError:
            pass  # dst went away meanwhile: a rename will do
        except OSError as e:
            if e.errno in _FLAG_UNSUPPORTED:
                e.strerror = f"{e.strerror}; only an atomic exchange could replace what is there"
            raise
    raise in_the_way


def _rename_new(src_dir: "_Dir", src: str, dst_dir: "_Dir", dst: str) -> None:
    """A rename that never replaces; where the platform or the filesystem cannot
    (ENOTSUP, EINVAL, ENOSYS), link() then unlink() for a non-directory."""
    try:
        _renameat2(src_dir.at(src), dst_dir.at(dst), RENAME_NOREPLACE, src_dir.fd, dst_dir.fd)
        return
    except OSError as e:
        if e.errno not in _FLAG_UNSUPPORTED or src_dir.holds_directory(src):
            raise
    _link(src_dir, src, dst_dir, dst)  # link() never replaces
    try:
        os.unlink(src_dir.at(src), dir_fd=src_dir.fd)
    except OSError as e:
        e.done = "the destination was created, but the source is still there too"  # type: ignore[attr-defined]
        raise


def _after_put(
    exchanged: bool,
    src_dir: "_Dir",
    src: str,
    shown_src: "str | bytes",
    dst_dir: "_Dir",
    dst: str,
    durable: bool,
) -> "list[tuple[OSError, str]]":
    """Remove the old content an exchange left at *src*, then sync both parents.

    Both are attempted whatever the other gives; returns what failed, each
    with what it leaves, for _in_place_but().
    """
    problems = []
    if exchanged:
        try:
            _remove_old(src_dir, src)
        except OSError as e:
            problems.append((e, f"its old content is left at {_below(shown_src, src, e.filename)}"))
        except BaseException as e:  # an interrupt: the new content is in place all the same
            _note_in_place(e, src_dir, src, shown_src)
            raise
    if durable:
        try:
            _sync_dirs(dst_dir, dst, src_dir)
        except OSError as e:
            problems.append((e, "it is not yet durable"))
    return problems


def _note_in_place(exc: BaseException, parent: "_Dir", name: str, shown: "str | bytes") -> None:
    """Note on an interrupt that came after the new content was put in place,
    and where the old content is if an exchange left it at *name*; unless
    _after_put() said so already."""
    if not getattr(exc, "__notes__", None):
        left = f"; its old content is left at {_quote(shown)}" if _lstat(parent, name) else ""
        _add_note(exc, "the new content is in place" + left)


def _is_at(moved: "os.stat_result | None", parent: "_Dir", name: str) -> bool:
    """Whether *name* in *parent* is what *moved* was taken of, before a move."""
    now = _lstat(parent, name)
    return moved is not None and now is not None and os.path.samestat(moved, now)


def _lstat(parent: "_Dir", name: str) -> "os.stat_result | None":
    """What *name* in *parent* is, without following a symlink; None if it cannot be seen."""
    try:
        return os.stat(parent.at(name.rstrip("/") or name), dir_fd=parent.fd, follow_symlinks=False)
    except OSError:
        return None


def _remove_old(parent: "_Dir", name: str) -> None:
    """Remove the old content that an exchange left at *name*."""
    name = name.rstrip("/")
    mounts = _mounts_under(parent, name)
    if mounts:  # mounted between the check and the exchange
        raise OSError(errno.EBUSY, f"{_quote(mounts[0])} is mounted inside it", name)
    _remove_tree(parent, name)


def _below(shown: "str | bytes", name: str, failed: "str | None") -> str:
    """Where a removal left things: *shown*, and the path inside it that failed."""
    where = _quote(shown)
    inside = (failed or "")[len(name.rstrip("/")) :]
    if inside:
        where += f" (removing {_quote(os.fsdecode(shown).rstrip('/') + inside)} failed)"
    return where


# ---- Mounts and old trees -----------------------------------------------------


def _refuse_mounts_under(parent: "_Dir", name: str) -> None:
    """EBUSY if a filesystem is mounted anywhere inside the directory *name*."""
    mounts = _mounts_under(parent, name)
    if mounts:
        more = f" (and {len(mounts) - 1} more)" if len(mounts) > 1 else ""
        message = f"{_quote(mounts[0])}{more} is mounted inside the destination, which replacing would empty"
        e = OSError(errno.EBUSY, message)
        e.about_dst = True  # type: ignore[attr-defined]
        raise e


def _mounts_under(parent: "_Dir", name: str) -> "list[str]":
    """Mount points inside the directory *name*, from /proc/self/mountinfo.

    "Inside" as the filesystem sees it, not as a path: a mount made under
    the directory is found even when the caller reaches it through a bind
    mount of one of its parents. Empty where /proc is not mounted (or not
    Linux): then only _walk()'s check of each directory's mount protects a
    mounted filesystem. A table that cannot be read raises: the check was
    not made.
    """
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            table = f.read()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EACCES, errno.EPERM):
            return []  # no /proc, or one that hides the table
        # Without the user's path on it, the one error path names theirs.
        raise OSError(e.errno, f"{e.strerror} reading the mount table /proc/self/mountinfo") from None
    try:
        flags = _O_PATH | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
        fd = os.open(parent.at(name.rstrip("/")), flags, dir_fd=parent.fd)
    except OSError:
        return []  # no directory at name: nothing can be mounted inside it
    try:
        top, mount_id = os.readlink(f"/proc/self/fd/{fd}"), _mount_id(fd, "")
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        message = f"{e.strerror}: the destination's absolute path is too long to look up in the mount table"
        raise OSError(e.errno, message) from None
    finally:
        os.close(fd)
    # id: (parent id, device, root within its filesystem, mount point)
    mounts = {}
    for line in table.splitlines():
        fields = line.split(b" ")
        point = os.fsdecode(_unescape_mountinfo(fields[4]))
        mounts[int(fields[0])] = (
            int(fields[1]),
            fields[2],
            os.fsdecode(_unescape_mountinfo(fields[3])),
            point,
        )
    holder = mounts.get(mount_id) if mount_id is not None else None
    if holder is None:  # no mount id (a kernel before 5.8): the longest mount point above it
        holder = max(
            (m for m in mounts.values() if _below_point(top, m[3])), key=lambda m: len(m[3]), default=None
        )
    if holder is None:
        return []
    device, inside = holder[1], _in_filesystem(holder, top).rstrip("/") + "/"
    found = []
    for parent_id, _, _, point in mounts.values():
        above = mounts.get(parent_id)
        if above is not None and above[1] == device and _in_filesystem(above, point).startswith(inside):
            found.append(point)
    return found


def _below_point(path: str, point: str) -> bool:
    return point == "/" or path == point or path.startswith(point.rstrip("/") + "/")


def _in_filesystem(mount: "tuple[int, bytes, str, str]", path: str) -> str:
    """*path*, seen through *mount*, as a path from the root of its filesystem."""
    _, _, root, point = mount
    return root.rstrip("/") + path[len(point.rstrip("/")) :]


def _unescape_mountinfo(field: bytes) -> bytes:
    """Undo the kernel's octal escapes (\\040 for a space, ...) in a mountinfo path."""
    head, *parts = field.split(b"\\")
    return head + b"".join(bytes([int(part[:3], 8)]) + part[3:] for part in parts)


def _remove_tree(parent: "_Dir", name: str) -> None:
    """Remove *name* in *parent* and everything below it, like rm -r --one-file-system.

    Directories made read-only or unreadable by their owner are made
    writable first. Another mount stays: the walk does not enter it, and the
    OSError (EBUSY) names it once everything else is removed. Without
    descriptors for directories (Windows), shutil.rmtree() does it.
    """
    if parent.fd is None:
        import shutil

        if parent.holds_directory(name):
            shutil.rmtree(parent.at(name))
        else:
            os.unlink(parent.at(name))
        return
    if not parent.holds_directory(name):
        _unless_read_only(parent.fd, os.unlink, name, name)
        return
    foreign: list[str] = []
    _walk(parent.fd, name, _open_to_remove, _remove_file, _remove_dir, foreign)
    if foreign:
        message = "another mount, or a btrfs subvolume, is inside it, and was left alone"
        raise OSError(errno.EBUSY, message, foreign[0])


def _open_to_remove(dir_fd: int, name: str, path: str) -> int:
    flags = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        _chmod_entry(dir_fd, name, 0o700, path)  # made unreadable by its owner, who gave it to us to remove
        return os.open(name, flags, dir_fd=dir_fd)


def _remove_file(fd: int, entry: "os.DirEntry[str]", path: str) -> None:
    _unless_read_only(fd, os.unlink, entry.name, path)


def _remove_dir(fd: int, parent_fd: int, name: str, path: str, foreign: "list[str]") -> None:
    try:
        _unless_read_only(parent_fd, os.rmdir, name, path)
    except OSError as e:
        if not (foreign and e.errno in (errno.ENOTEMPTY, errno.EEXIST)):
            raise


def _unless_read_only(dir_fd: int, remove: "Callable[..., None]", name: str, path: str) -> None:
    """remove(name, dir_fd=dir_fd); on EACCES or EPERM, make *dir_fd* writable
    by its owner and try once more. ENOENT means done. An error names *path*."""
    try:
        try:
            remove(name, dir_fd=dir_fd)
        except PermissionError as denied:
            mode = stat.S_IMODE(os.fstat(dir_fd).st_mode)
            if mode & 0o300 == 0o300:
                raise  # not a question of the directory's mode
            try:
                os.fchmod(dir_fd, mode | 0o700)
            except OSError:
                raise denied from None  # not ours to change: the denial is the answer
            remove(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None


def _chmod_entry(dir_fd: int, name: str, mode: int, path: str) -> None:
    """chmod *name* itself, never what a symlink swapped in for it points to.

    Linux: through an O_PATH descriptor, by /proc/self/fd. Elsewhere: with
    fchmodat(AT_SYMLINK_NOFOLLOW). Where neither can be done, the denial stands.
    """
    if _O_PATH and _PROC_FD:
        fd = os.open(name, _O_PATH | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, "a symlink was put in its place", path)
            os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)
        return
    try:
        os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
    except NotImplementedError:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path) from None


def _walk(
    dir_fd: int,
    name: str,
    open_dir: "Callable[[int, str, str], int]",
    each_file: "Callable[[int, os.DirEntry[str], str], None]",
    leave: "Callable[[int, int, str, str, list[str]], None]",
    foreign: "list[str]",
) -> None:
    """Visit the directory tree *name* in *dir_fd*, depth first, without recursion.

    Calls each_file(fd, entry, path) for every non-directory, and leave(fd,
    parent_fd, name, path, foreign) for every directory once its
    subdirectories are done. Descriptor-based like shutil.rmtree's safe walk,
    but it holds one directory open at a time: it climbs back through ".."
    after checking that ".." is the directory it came from, so depth costs
    neither recursion nor descriptors. It never follows a symlink, checks
    that each directory it opens is the one it listed, and never enters
    another mount (by mount id on Linux 5.8+, so a bind mount of the same
    filesystem counts; else by device): those paths go to *foreign*. An
    OSError names the path, from *name* down, that failed.
    """
    top = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    mount = _mount_id(dir_fd, name)
    fd = _open_checked(open_dir, dir_fd, name, top, name)
    try:
        # One level per directory on the way down: its path, its stat, and its
        # subdirectories still to visit.
        levels = [(name, top, _list(fd, name, (top.st_dev, mount), each_file, foreign))]
        while levels:
            path, _, pending = levels[-1]
            if pending:
                child, child_st = pending.pop()
                path = f"{path}/{child}"
                child_fd = _open_checked(open_dir, fd, child, child_st, path)
                old, fd = fd, child_fd
                os.close(old)
                levels.append((path, child_st, _list(fd, path, (top.st_dev, mount), each_file, foreign)))
                continue
            levels.pop()
            parent_fd = _climb(fd, levels[-1][1], open_dir, path) if levels else dir_fd
            old, fd = fd, parent_fd
            try:
                leave(old, parent_fd, path.rpartition("/")[2], path, foreign)
            finally:
                os.close(old)
    finally:
        if fd != dir_fd:
            os.close(fd)


def _list(
    fd: int,
    path: str,
    mount: "tuple[int, int | None]",
    each_file: "Callable[[int, os.DirEntry[str], str], None]",
    foreign: "list[str]",
) -> "list[tuple[str, os.stat_result]]":
    """Call each_file() for the non-directories in *fd*; return its
    subdirectories on the same *mount* (device, and mount id where known)."""
    subdirectories = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    each_file(fd, entry, f"{path}/{entry.name}")
                    continue
                st = entry.stat(follow_symlinks=False)
                device, mount_id = mount
                # By mount id where known: a btrfs subvolume has a device of its own, in the same mount.
                same = st.st_dev == device if mount_id is None else _mount_id(fd, entry.name) == mount_id
                if same:
                    subdirectories.append((entry.name, st))
                else:
                    foreign.append(f"{path}/{entry.name}")
    except OSError as e:
        if not isinstance(e.filename, str) or "/" not in e.filename:
            raise OSError(e.errno, e.strerror, path) from None  # scandir() names the descriptor
        raise
    except ValueError:  # PyPy's scandir(fd), when its fstat() of the descriptor fails
        raise OSError(errno.EIO, "the directory could not be listed", path) from None
    return subdirectories


def _open_checked(
    open_dir: "Callable[[int, str, str], int]", dir_fd: int, name: str, expected: os.stat_result, path: str
) -> int:
    """open_dir(dir_fd, name, path), checking it is still the directory that was listed."""
    try:
        fd = open_dir(dir_fd, name, path)
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    try:
        same = os.path.samestat(os.fstat(fd), expected)
    except OSError as e:
        os.close(fd)
        raise OSError(e.errno, e.strerror, path) from None
    except BaseException:
        os.close(fd)
        raise
    if not same:
        os.close(fd)
        raise OSError(errno.EAGAIN, "it was replaced while being walked", path)
    return fd


def _climb(fd: int, expected: os.stat_result, open_dir: "Callable[[int, str, str], int]", path: str) -> int:
    """Open ".." of *fd* as the walk opens directories, checking that it is
    still the directory we came from."""
    return _open_checked(open_dir, fd, "..", expected, path.rpartition("/")[0])


# ---- atomic_write()'s steps ----------------------------------------------------


class _Block:
    """What atomic_write() and atomic_dir() share: a with-block left by a
    commit, or by a rollback that names the job's path in an OSError the block
    raised; and left alone by a forked child, whose exit from the block must
    touch nothing of its parent's (the pid that entered is remembered)."""

    _shown: "str | bytes"
    _pid = 0  # the process in the block, 0 outside it

    def __exit__(
        self,
        exc_type: "type[BaseException] | None",
        exc: "BaseException | None",
        traceback: "TracebackType | None",
    ) -> None:
        try:
            if os.getpid() != self._pid:
                self._leave_to_parent()
            elif exc is None:
                self._commit()
            else:
                _name_the_blocks_error(exc, self._shown, self._abandon(exc))
        finally:
            self._finish()

    def _commit(self) -> None:
        raise NotImplementedError

    def _abandon(self, exc: BaseException) -> str:
        """Remove what the job made; return where anything was left, if it was."""
        raise NotImplementedError

    def _leave_to_parent(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        self._pid = 0


class _AtomicWrite(_Block):
    """atomic_write()'s steps: make the temporary, then commit or roll back.

    State is explicit: the temporary's name is recorded before the call that
    creates it, and forgotten once it is the target, so a rollback removes
    exactly what is ours; the pid that entered is remembered, so that a forked
    child leaving the block touches nothing of its parent's.
    """

    def __init__(
        self,
        path: "_StrOrBytesPath",
        mode: str,
        overwrite: bool,
        perms: "int | None",
        durable: bool,
        open_kwargs: "dict[str, Any]",
    ) -> None:
        self._start, self._access = _parse_write_mode(mode)
        if self._start != "w" and not overwrite:
            raise ValueError(f"overwrite=False starts a new file: mode {mode!r} would start from the old one")
        if perms is not None and (not isinstance(perms, int) or isinstance(perms, bool)):
            raise TypeError(f"perms should be int or None, not {type(perms).__name__}")
        if perms is not None and not 0 <= perms <= 0o7777:
            raise ValueError(f"perms should be a mode from 0 to 0o7777, not {perms!r}")  # -1 would be 0o7777
        unknown = set(open_kwargs) - {"buffering", "encoding", "errors", "newline"}
        if unknown:
            raise TypeError(f"atomic_write() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        self._shown = _shown(path, "path")
        self._mode, self._open_kwargs = mode, open_kwargs
        self._overwrite, self._perms, self._durable = overwrite, perms, durable
        self._dir: _Dir | None = None
        self._fd = -1
        self._name = ""  # the target's name in _dir
        self._existing: os.stat_result | None = None
        self._identity: os.stat_result | None = None  # the temporary's, to know it is still ours
        # A second descriptor of an anonymous temporary: should the block close
        # the first, the inode stays in use, so no new file can take its number.
        self._anchor = -1
        self._xattrs: list[tuple[str, bytes]] = []
        self._temp: _Temporary | None = None
        self._file: IO[Any] | None = None
        self._raw: IO[Any] | None = None

    def __enter__(self) -> "Any":
        if self._pid:
            raise RuntimeError("this atomic_write() is already in use")
        _bind_early(self._shown)
        self._pid = os.getpid()
        self._temp = self._file = None  # from an earlier use of this object
        try:
            self._open()
        except BaseException as e:
            leftovers = self._abandon(e)
            self._finish()
            if isinstance(e, OSError):
                raise _failed(e, self._shown, leftovers=leftovers) from e
            raise
        assert self._file is not None
        return self._file

    def _open(self) -> None:
        # With overwrite=False anything at path, a dangling symlink too, is in the way.
        path = os.fsdecode(self._shown)
        if not path:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))  # as open("")
        if path.endswith("/") or _split(path)[1] in (".", ".."):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))  # as open("dir/")
        target, self._existing = _write_through(path) if self._overwrite else (path, None)
        existing = self._existing
        if existing and not stat.S_ISREG(existing.st_mode):
            if stat.S_ISDIR(existing.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            raise OSError(errno.EINVAL, "not a regular file, which atomic_write() would make it")
        if self._start == "r" and not existing:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        if existing:
            self._xattrs = _read_xattrs(target)
        directory, self._name = _split(target)
        self._dir = parent = _Dir(directory)
        if existing and self._start != "r":  # "r+" opens without O_CREAT, which fs.protected_regular concerns
            _may_replace(parent, existing)
        # A new file without perms gets 0o666 less the umask from the kernel, as with open().
        mode = 0o666 if self._perms is None and not existing else 0o600
        if _O_TMPFILE:
            self._fd = _open_tmpfile(parent, mode, self._access)
        if self._fd < 0:
            flags = self._access | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY
            self._temp = _Temporary(parent, self._name)
            self._fd = self._temp.create(lambda name: os.open(parent.at(name), flags, mode, dir_fd=parent.fd))
        self._identity = os.fstat(self._fd)
        if self._temp is None:
            self._anchor = os.dup(self._fd)
        if existing and self._start != "w":
            _copy_content(parent, self._name, self._fd, existing)
            if self._start == "r":
                os.lseek(self._fd, 0, os.SEEK_SET)  # "a" is put at the end by open()
            elif sys.platform != "win32":  # "a": every write at the end, after any seek, as open() does
                import fcntl

                fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) | os.O_APPEND)
        # The descriptor stays ours, so a file closed in the block cannot
        # leave a reused descriptor number to be synced and linked.
        self._file = open(self._fd, self._mode, closefd=False, **self._open_kwargs)  # noqa: SIM115 (closed at exit)
        # The FileIO under the buffer and the text layer: closed with the rest,
        # even when the block detached those layers and holds them still.
        self._raw = getattr(getattr(self._file, "buffer", self._file), "raw", self._file)

    def _commit(self) -> None:
        assert self._file is not None and self._dir is not None
        try:
            self._check_descriptor()
            self._file.close()  # flushes, unless the block closed it already
            self._set_owner_and_perms()  # after the last write, which clears setuid
            if self._durable:
                _fsync(self._fd)
            if self._temp is None and not self._overwrite:
                _link_fd(self._fd, self._dir, self._name)  # link() never replaces
            else:
                self._rename()
        except BaseException as e:
            leftovers = self._abandon(e)
            if isinstance(e, OSError):
                raise _failed(e, self._shown, leftovers=leftovers) from e
            raise
        step = "closing it failed"
        try:  # the new content is in place
            if self._fd >= 0:  # an anonymous file linked straight to the target
                fd, self._fd = self._fd, -1
                os.close(fd)
            step = "not yet durable"
            if self._durable:
                _sync_dirs(self._dir, self._name)
        except OSError as e:
            raise _failed(e, self._shown, done=f"the new content is in place, but {step}") from e
        finally:
            self._dir.close()
            self._dir = None

    def _check_descriptor(self) -> None:
        """Refuse to go on if the block closed the file's descriptor (os.close()
        of f.fileno()): its number may be another file's by now, which must
        be neither flushed into, nor chmodded, nor linked in as the target."""
        if self._lost():
            self._drop_lost()
            raise OSError(errno.EBADF, "the block closed the file's descriptor")

    def _lost(self) -> bool:
        """Whether the descriptor is no longer the file this job made."""
        if self._fd < 0 or self._identity is None:
            return False
        try:
            return not os.path.samestat(os.fstat(self._fd), self._identity)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise  # fstat failed on our own descriptor: a rollback closes it
            return True

    def _finish(self) -> None:
        _close(self._anchor)
        self._anchor = -1
        super()._finish()

    def _drop_if_lost(self) -> None:
        """_drop_lost() if the descriptor is lost, on the way out of a rollback
        or a forked child, where a failing fstat() is our own descriptor's."""
        try:
            lost = self._lost()
        except OSError:
            lost = False
        if lost:
            self._drop_lost()

    def _drop_lost(self) -> None:
        """Forget a descriptor that is not ours any more, and what the file
        object holds: with its raw FileIO closed first, the buffers above it
        have nowhere to write, now or when the block's reference goes."""
        self._fd = -1
        for layer in (self._raw, self._file):
            try:
                if layer is not None:
                    layer.close()
            except Exception:
                pass  # ValueError: the block detached or closed it already
        self._file = self._raw = None

    def _set_owner_and_perms(self) -> None:
        perms, existing = self._perms, self._existing
        if existing:
            try:
                os.fchown(self._fd, existing.st_uid, existing.st_gid)
            except (OSError, AttributeError):  # not allowed; or Windows, which has no owners to keep
                pass
            # Setuid and setgid stay only with the owner and the group they were
            # for: a writer's own tool in a group the writer is not in keeps setuid.
            new = os.fstat(self._fd)
            kept = 0o1777 | (0o4000 if new.st_uid == existing.st_uid else 0)
            kept |= 0o2000 if new.st_gid == existing.st_gid else 0
            if perms is None:
                perms = stat.S_IMODE(existing.st_mode) & kept
        _copy_xattrs(self._fd, self._xattrs, existing is not None)
        if perms is not None:  # last: an ACL's mask is the mode's group bits
            _chmod_open_file(self._fd, self._dir, self._temp, perms)

    def _rename(self) -> None:
        """Put the file at the target through a named temporary, closed first,
        so that a failing close() counts as a failed write."""
        assert self._dir is not None
        if self._temp is None:  # anonymous: give it a hidden name first
            self._temp = _Temporary(self._dir, self._name)
            self._temp.create(lambda name: _link_fd(self._fd, self._dir, name))  # type: ignore[arg-type]
        fd, self._fd = self._fd, -1
        os.close(fd)
        assert self._temp.name is not None
        if self._overwrite:
            _rename(self._dir, self._temp.name, self._dir, self._name)
        else:
            _rename_new(self._dir, self._temp.name, self._dir, self._name)
        self._temp.name = None  # it is the target now

    def _abandon(self, exc: BaseException) -> str:
        """Close and remove what is ours; return where anything was left, if it was."""
        self._drop_if_lost()
        if self._file is not None:
            for layer in (self._file, self._raw):
                try:
                    if layer is not None:
                        layer.close()  # the raw FileIO last: a detached buffer then refuses to write
                except Exception:
                    pass  # the write is abandoned (OSError), or the block detached the file (ValueError)
        leftovers = _cleanup(self._temp, exc)
        _close(self._fd)
        self._fd = -1
        if self._dir is not None:
            self._dir.close()
            self._dir = None
        return leftovers

    def _leave_to_parent(self) -> None:
        """In a forked child: drop the descriptors without flushing into the parent's file."""
        self._drop_if_lost()
        if self._fd >= 0:
            # The file object may hold data buffered before the fork, which its
            # close would write a second time into the file the parent shares.
            null = os.open(os.devnull, os.O_WRONLY | _O_CLOEXEC)
            os.dup2(null, self._fd, inheritable=False)
            os.close(null)
            if self._file is not None:
                self._file.close()
        _close(self._fd)
        self._fd = -1
        if self._dir is not None:
            self._dir.close()
            self._dir = None


def _write_through(path: str) -> "tuple[str, os.stat_result | None]":
    """The file open(path, "w") would write, *path* or where the symlinks at
    its end lead, and its stat, None if it does not exist yet.

    The links at the end are followed here, one by one, as the kernel would
    (40 at most, then ELOOP), and refused where fs.protected_symlinks would
    refuse open() to follow them; what is left for the kernel to resolve,
    the directories, it resolves with its own checks. The kernel counts 40
    links for the whole path; here those at the end count apart.
    """
    for followed in range(41):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path, None
        if not stat.S_ISLNK(st.st_mode):
            return path, st
        if followed == 40:
            break
        directory = os.path.dirname(path)
        _may_follow(directory, st)
        path = os.path.join(directory, os.readlink(path))  # an absolute target stands alone
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))


def _may_follow(directory: str, link: os.stat_result) -> None:
    """EACCES where Linux's fs.protected_symlinks keeps open() from following
    *link*: in a sticky world-writable directory (/tmp), a link owned by
    neither the follower (by euid; the kernel goes by fsuid, the same but
    after setfsuid()) nor the directory's owner."""
    if sys.platform not in ("linux", "android") or link.st_uid == os.geteuid():
        return
    mode = os.stat(directory or ".")
    if mode.st_mode & 0o1002 == 0o1002 and mode.st_uid != link.st_uid and _sysctl_fs("protected_symlinks"):
        message = "fs.protected_symlinks: the symlink is another user's, in a sticky world-writable directory"
        raise PermissionError(errno.EACCES, message)


def _may_replace(parent: "_Dir", existing: os.stat_result) -> None:
    """EACCES where Linux's fs.protected_regular keeps open(path, "w") from
    opening the existing file: in a sticky directory, world-writable (or, at
    level 2, group-writable), a file owned by neither the writer nor the
    directory's owner; a file /tmp's other users could read."""
    if sys.platform not in ("linux", "android") or parent.fd is None or existing.st_uid == os.geteuid():
        return
    mode = os.fstat(parent.fd)
    if not mode.st_mode & stat.S_ISVTX or mode.st_uid == existing.st_uid:
        return
    level = _sysctl_fs("protected_regular")
    if (level and mode.st_mode & 0o002) or (level >= 2 and mode.st_mode & 0o020):
        message = "fs.protected_regular: the file is another user's, in a sticky directory others can write"
        raise PermissionError(errno.EACCES, message)


def _sysctl_fs(name: str) -> int:
    """/proc/sys/fs/*name*, 0 where it cannot be read."""
    try:
        with open(f"/proc/sys/fs/{name}", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def _parse_write_mode(mode: object) -> "tuple[str, int]":
    """What atomic_write()'s file starts from ("w" empty, "a" or "r" a copy of
    the old one), and the access its descriptor needs; for a *mode* of open()'s."""
    if not isinstance(mode, str):
        raise TypeError(f"mode should be str, not {type(mode).__name__}")
    chars = set(mode)
    starts = chars & set("rwax")
    if (
        len(chars) != len(mode)
        or not chars <= set("rwabt+")
        or len(starts) != 1
        or chars >= {"b", "t"}
        or (starts == {"r"} and "+" not in chars)
    ):
        raise ValueError(
            f"atomic_write() takes the writing modes of open(): 'w', 'a' or 'r+', with 'b', 't' or '+';"
            f" not {mode!r} (overwrite=False is its exclusive mode)"
        )
    start = starts.pop()
    return start, os.O_RDWR if "+" in chars else os.O_WRONLY


def _ioctl_number(direction: int, kind: int, number: int, size: int) -> int:
    """The kernel's _IOC(direction, kind, number, size) on Linux: 1 for _IOW,
    2 for _IOR in the encoding that x86, Arm, RISC-V, s390 and LoongArch share;
    0, no request, on the machines that encode it otherwise (Alpha, MIPS,
    PA-RISC, PowerPC, SPARC), which then copy without it."""
    machine = os.uname().machine
    if not machine.startswith(
        ("x86", "i386", "i486", "i586", "i686", "aarch64", "arm", "riscv", "s390", "loongarch")
    ):
        return 0
    return direction << 30 | size << 16 | kind << 8 | number


# <linux/fs.h>: FICLONE is _IOW(0x94, 9, int); FS_IOC_GETFLAGS and
# FS_IOC_SETFLAGS are _IOR and _IOW('f' = 0x66, 1 and 2, long), which read
# and write an int.
_FS_NOCOW_FL = 0x00800000
_REFUSED_IOCTL = (errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EPERM, errno.EACCES)
_clone_ioctls: "tuple[int, int, int] | None" = None  # FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FICLONE, once known


def _copy_content(parent: "_Dir", name: str, fd: int, expected: os.stat_result) -> None:
    """Make the new file *fd* a copy of *name*: sharing its blocks where the
    filesystem can (FICLONE: btrfs, xfs, bcachefs), else copied in the kernel
    (copy_file_range: server-side on NFS 4.2), else read and written; only
    the data of a sparse file, whose holes stay holes. A btrfs No_COW file
    (chattr +C) makes a No_COW copy, which is what it can share blocks with.
    The copy stops at the size the old file had when it began. *name* must
    still be the regular file *expected*: a FIFO swapped in would block the
    open. The descriptor ends at the end of the copy."""
    flags = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY
    source = os.open(parent.at(name), flags, dir_fd=parent.fd)
    try:
        if not os.path.samestat(os.fstat(source), expected):
            raise OSError(errno.EAGAIN, "the file was replaced while atomic_write() opened it")
        if sys.platform in ("linux", "android") and _clone(source, fd):
            os.lseek(fd, 0, os.SEEK_END)
            return
        size = os.fstat(source).st_size
        kernel = getattr(os, "copy_file_range", None)  # Linux, not on PyPy
        for start, stop in _data_extents(source, size):
            end = os.lseek(source, start, os.SEEK_SET)
            os.lseek(fd, start, os.SEEK_SET)
            while end < stop:
                if kernel is not None:
                    try:
                        copied = kernel(source, fd, stop - end)
                    except OSError as e:
                        if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                            raise
                        kernel = None  # the offsets moved together: reading and writing goes on
                        continue
                else:
                    copied = _copy_chunk(source, fd, stop - end)
                if copied == 0:
                    break  # the old file shrank meanwhile
                end += copied
            if end < stop:
                size = end
                break
        size = min(size, os.fstat(source).st_size)  # truncated meanwhile: no zeros past its end
        os.ftruncate(fd, size)  # the hole at the end, if any
        os.lseek(fd, size, os.SEEK_SET)
    finally:
        os.close(source)


def _clone(source: int, fd: int) -> bool:
    """Share *source*'s blocks with the empty file *fd* (Linux); False where
    the filesystem cannot. *fd* is made No_COW first if *source* is, and
    not if it is not (a +C directory makes its new files No_COW), since
    btrfs clones between two files only when both are or neither is."""
    import fcntl

    global _clone_ioctls
    if _clone_ioctls is None:
        long = 8 if sys.maxsize > 2**32 else 4
        _clone_ioctls = (
            _ioctl_number(2, 0x66, 1, long),
            _ioctl_number(1, 0x66, 2, long),
            _ioctl_number(1, 0x94, 9, 4),
        )
    get_flags, set_flags, clone = _clone_ioctls
    if not clone:
        return False
    try:
        nocow = int.from_bytes(fcntl.ioctl(source, get_flags, bytes(4)), sys.byteorder) & _FS_NOCOW_FL
        own = int.from_bytes(fcntl.ioctl(fd, get_flags, bytes(4)), sys.byteorder)
        if own & _FS_NOCOW_FL != nocow:  # also a copy made No_COW by a +C directory, of a file that is not
            fcntl.ioctl(fd, set_flags, (own & ~_FS_NOCOW_FL | nocow).to_bytes(4, sys.byteorder))
    except OSError as e:
        if e.errno not in _REFUSED_IOCTL:
            raise  # EIO: as any failure of the copy
    try:
        fcntl.ioctl(fd, clone, source)
        return True
    except OSError:
        return False  # EOPNOTSUPP, EXDEV, EINVAL, ENOTTY: no shared blocks here


def _data_extents(source: int, size: int) -> "list[tuple[int, int]]":
    """(start, stop) of each run of data in *source*'s first *size* bytes: all
    of it unless the file has fewer blocks than its size says (holes), and
    the system can find them (SEEK_DATA, SEEK_HOLE)."""
    seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
    if seek_data is None and sys.platform in ("linux", "android"):
        seek_data, seek_hole = 3, 4  # <linux/fs.h>, on every machine; PyPy's os lacks them
    if seek_data is None or seek_hole is None or os.fstat(source).st_blocks * 512 >= size:
        return [(0, size)]
    extents: list[tuple[int, int]] = []
    position = 0
    while position < size:  # each turn moves past one run of data: bounded by the size
        try:
            start = os.lseek(source, position, seek_data)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break  # nothing but a hole from here to the end
            if e.errno == errno.EINVAL and not extents:
                return [(0, size)]  # a filesystem without SEEK_DATA
            raise
        if start >= size:
            break
        try:
            position = min(os.lseek(source, start, seek_hole), size)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            break  # truncated meanwhile (logrotate's copytruncate): the copy stops at its end
        if position <= start:
            position = size  # changed meanwhile: the rest is copied as data
        extents.append((start, position))
    return extents


def _copy_chunk(source: int, fd: int, count: int) -> int:
    """Read up to *count* bytes (1 MiB at most) of *source* and write them
    to *fd*, each at its offset; how many (0 at the end of *source*)."""
    chunk = os.read(source, min(count, 1 << 20))
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]
    return len(chunk)


# What the kernel answers when it refuses an extended attribute, as opposed to
# failing (EIO, ENOSPC): a filesystem without them, one removed meanwhile, one
# that is not the writer's to read or set (trusted.* but for root, an LSM's).
_XATTR_REFUSED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, getattr(errno, "ENODATA", -1))


def _read_xattrs(path: str) -> "list[tuple[str, bytes]]":
    """The extended attributes of *path* that the writer can read (Linux)."""
    if not hasattr(os, "listxattr"):
        return []
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno not in _XATTR_REFUSED:
            raise
        return []
    found = []
    for name in names:
        try:
            found.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as e:
            if e.errno not in _XATTR_REFUSED:
                raise
    return found


# The ACL a new file inherits from its directory's default ACL.
_ACCESS_ACL = "system.posix_acl_access"


def _copy_xattrs(fd: int, xattrs: "list[tuple[str, bytes]]", replacing: bool) -> None:
    """Give the new file the old one's extended attributes, after its owner
    (which clears security.capability). One the kernel refuses is skipped, as
    the owner is; any other failure fails the write. A file that replaces one
    without an ACL gets none either, though its directory's default ACL gave
    it one: that would grant access the old file did not."""
    if not hasattr(os, "setxattr"):
        return
    for name, value in xattrs:
        try:
            os.setxattr(fd, name, value)
        except OSError as e:
            # EINVAL: not for this file (btrfs.compression on a No_COW file).
            if e.errno not in _XATTR_REFUSED and e.errno != errno.EINVAL:
                raise
    if replacing and all(name != _ACCESS_ACL for name, _ in xattrs):
        try:
            os.removexattr(fd, _ACCESS_ACL)
        except OSError as e:
            if e.errno not in _XATTR_REFUSED:
                raise


def _chmod_open_file(fd: int, parent: "_Dir | None", temp: "_Temporary | None", perms: int) -> None:
    """fchmod(), or where os has none (Windows before Python 3.13), chmod() of the named temporary."""
    if hasattr(os, "fchmod") or temp is None or temp.name is None or parent is None:
        os.fchmod(fd, perms)
    else:
        os.chmod(parent.at(temp.name), perms)


# Linux's O_PATH and __O_TMPFILE (O_TMPFILE less O_DIRECTORY), for a Python
# whose os lacks them (PyPy 3.9): <asm-generic/fcntl.h>, and for the three
# architectures that differ, arch/{alpha,parisc,sparc}/include/uapi/asm/fcntl.h.
_LINUX_OPEN_FLAGS = (
    ("alpha", 0o40000000, 0o100000000),
    ("parisc", 0o20000000, 0o40000000),
    ("sparc", 0x1000000, 0x2000000),
    ("", 0o10000000, 0o20000000),
)


def _linux_flag(name: str) -> int:
    """os.O_PATH or os.O_TMPFILE; on Linux where os lacks it, the kernel's value; else 0."""
    if hasattr(os, name):
        return int(getattr(os, name))
    if sys.platform not in ("linux", "android"):
        return 0
    machine = os.uname().machine
    o_path, o_tmpfile = next((p, t) for prefix, p, t in _LINUX_OPEN_FLAGS if machine.startswith(prefix))
    return o_path if name == "O_PATH" else o_tmpfile | os.O_DIRECTORY


_PROC_FD = sys.platform in ("linux", "android") and os.path.isdir("/proc/self/fd")
_O_TMPFILE = _linux_flag("O_TMPFILE") if _PROC_FD else 0  # such a file is linked in through /proc


def _open_tmpfile(parent: "_Dir", mode: int, access: int) -> int:
    """An anonymous file in *parent*, which a crash cannot leave behind; -1
    where the filesystem cannot make one."""
    try:
        return os.open(".", _O_TMPFILE | access | _O_CLOEXEC, mode, dir_fd=parent.fd)
    except OSError as e:
        # EISDIR: a kernel before 3.11, which sees only O_DIRECTORY.
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR):
            raise
        return -1


def _link_fd(fd: int, parent: "_Dir", name: str) -> None:
    """Give the O_TMPFILE file *fd* the name *name* in *parent*: linkat() of
    /proc's link to it, with AT_SYMLINK_FOLLOW, through ctypes, since PyPy's
    os.link() turns its follow_symlinks around."""
    call = _linux_function("linkat")
    proc = f"/proc/self/fd/{fd}".encode()
    if call(_AT_FDCWD_LINUX, proc, parent.fd, _fsencode(name, "path"), _AT_SYMLINK_FOLLOW):
        import ctypes

        raise _c_error(ctypes.get_errno(), name, None)


# ---- atomic_dir()'s steps ------------------------------------------------------


class _AtomicDir(_Block):
    """atomic_dir()'s steps: make the staging directory, then publish or remove it.

    The parent is held from __enter__ to the end, so the staging directory,
    the publication and the cleanup all happen in the directory the kernel
    resolved once; state is explicit, as in _AtomicWrite.
    """

    def __init__(self, path: "_StrOrBytesPath", overwrite: bool, durable: bool) -> None:
        self._shown = _shown(path, "path")
        self._overwrite, self._durable = overwrite, durable
        self._directory, self._name = _split(self._shown)
        _refuse_dot(self._shown)
        self._dir: _Dir | None = None
        self._staging: _Temporary | None = None

    def __enter__(self) -> "Path":
        from pathlib import Path

        if self._pid:
            raise RuntimeError("this atomic_dir() is already in use")
        _bind_early(self._shown)
        self._pid = os.getpid()
        try:
            # Absolute without normalising, so that "link/.." stays as the
            # kernel resolves it, and a chdir in the block changes nothing.
            if self._directory == ".":
                self._directory = os.getcwd()
            self._directory = os.path.join(os.getcwd(), self._directory)
            self._dir = parent = _Dir(self._directory)
            if self._overwrite:
                _refuse_what_only_an_exchange_could_replace(parent, self._name)
            self._staging = _Temporary(parent, self._name, directory=True)
            self._staging.create(lambda name: os.mkdir(parent.at(name), dir_fd=parent.fd))
            return Path(self._directory, str(self._staging.name))
        except BaseException as e:
            leftovers = _cleanup(self._staging, e)
            self._finish()
            if isinstance(e, OSError):
                raise _failed(e, self._shown, leftovers=leftovers) from e
            raise

    def _abandon(self, exc: BaseException) -> str:
        return _cleanup(self._staging, exc)

    def _leave_to_parent(self) -> None:
        pass  # the staging tree is the parent's; _finish() closes the descriptor

    def _finish(self) -> None:
        if self._dir is not None:
            self._dir.close()
        self._dir, self._pid = None, 0

    def _commit(self) -> None:
        staging, parent = self._staging, self._dir
        assert staging is not None and staging.name is not None and parent is not None
        staged = None
        try:
            location = os.path.join(self._directory, staging.name)
            staged = _lstat(parent, staging.name)  # to tell, after an interrupt, whether it was published
            if self._durable:
                _sync_tree(parent, staging.name)
            exchanged = self._publish(parent, staging.name)
        except BaseException as e:
            if not isinstance(e, OSError) and _is_at(staged, parent, self._name):
                _add_note(e, "the new content is in place")  # interrupted as the publishing call returned
            leftovers = _cleanup(staging, e)
            if isinstance(e, OSError):
                raise _failed(e, self._shown, leftovers=leftovers) from e
            raise
        try:
            problems = _after_put(
                exchanged, parent, staging.name, location, parent, self._name, self._durable
            )
        except BaseException as e:
            if not isinstance(e, OSError):  # an interrupt: the tree is published all the same
                _note_in_place(e, parent, staging.name, location)
            raise
        finally:
            staging.name = None  # the tree is published; what is left at its name is reported
        if problems:
            raise _in_place_but(problems, self._shown)

    def _publish(self, parent: "_Dir", staging: str) -> bool:
        """Put the staged tree at the target; True if the old one is at *staging* now."""
        if self._overwrite:
            return _put(parent, staging, parent, self._name)
        try:
            _renameat2(parent.at(staging), parent.at(self._name), RENAME_NOREPLACE, parent.fd, parent.fd)
        except OSError as e:
            if e.errno not in _FLAG_UNSUPPORTED:
                raise
            # The filesystem cannot rename without replacing: claim the name
            # with mkdir(), which never replaces, then rename over that.
            os.mkdir(parent.at(self._name), 0o700, dir_fd=parent.fd)
            try:
                _rename(parent, staging, parent, self._name)
            except BaseException:
                try:
                    os.rmdir(parent.at(self._name), dir_fd=parent.fd)
                except OSError:
                    pass  # no longer empty: someone else's now
                raise
        return False


def _refuse_what_only_an_exchange_could_replace(parent: "_Dir", name: str) -> None:
    """ENOTSUP now, before anything is staged, where the platform cannot
    exchange and *name* holds what no rename can put a directory over: on
    Windows anything, elsewhere anything but an empty directory."""
    if _cannot_exchange is None:
        return
    try:
        st = os.stat(parent.at(name), dir_fd=parent.fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if sys.platform != "win32" and stat.S_ISDIR(st.st_mode) and _is_empty(parent, name):
        return
    raise OSError(errno.ENOTSUP, f"only an atomic exchange could replace what is there: {_cannot_exchange}")


def _is_empty(parent: "_Dir", name: str) -> bool:
    fd = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC, dir_fd=parent.fd)
    try:
        with os.scandir(fd) as entries:
            return next(entries, None) is None
    except ValueError:  # PyPy's scandir(fd), when its fstat() of the descriptor fails
        raise OSError(errno.EIO, "the directory could not be listed") from None
    finally:
        os.close(fd)


# ---- Durability -----------------------------------------------------------------


def _sync_tree(parent: "_Dir", name: str) -> None:
    """Make the tree *name* in *parent* durable: one syncfs() of its filesystem
    where the platform has it (it opens nothing inside the tree, so it also
    covers what the caller made unreadable), else an fsync of every file and
    directory in it (of every file on Windows, which cannot open a directory)."""
    if parent.fd is None:
        for directory, _, files in os.walk(parent.at(name)):
            for file in files:
                fd = os.open(os.path.join(directory, file), os.O_RDWR | _O_BINARY)
                try:
                    _fsync(fd)  # FlushFileBuffers needs a handle open for writing
                finally:
                    os.close(fd)
        return
    fd = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=parent.fd)
    try:
        _syncfs(fd)
        return
    except OSError as e:
        if e.errno != errno.ENOTSUP:
            raise
    finally:
        os.close(fd)
    _walk(parent.fd, name, _open_to_sync, _fsync_file, _fsync_dir, [])


def _open_to_sync(dir_fd: int, name: str, path: str) -> int:
    return _open_for_sync(dir_fd, name, _O_DIRECTORY, path)


def _fsync_file(fd: int, entry: "os.DirEntry[str]", path: str) -> None:
    if entry.is_file(follow_symlinks=False):
        synced = _open_for_sync(fd, entry.name, 0, path)
        try:
            _fsync(synced)
        finally:
            os.close(synced)


def _fsync_dir(fd: int, parent_fd: int, name: str, path: str, foreign: "list[str]") -> None:
    _fsync(fd)


def _open_for_sync(dir_fd: int, name: str, kind: int, path: str) -> int:
    """Open *name* to fsync it, even if its owner made it unreadable.

    Never for writing, which a directory refuses; an unreadable entry is made
    readable for the open and its mode restored through the descriptor, so
    the fsync records the mode too.
    """
    flags = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY | kind
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        mode = stat.S_IMODE(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        _chmod_entry(dir_fd, name, mode | 0o400, path)
        fd = os.open(name, flags, dir_fd=dir_fd)
        os.fchmod(fd, mode)
        return fd


def _sync_file(parent: "_Dir", name: str) -> None:
    """fsync *name* if it is a regular file (before a rename moves it). One the
    writer may move but not read (another user's) is synced with its filesystem."""
    try:
        st = os.stat(parent.at(name), dir_fd=parent.fd, follow_symlinks=False)
    except FileNotFoundError:
        return  # the rename will say so
    if not stat.S_ISREG(st.st_mode):
        return
    try:
        if parent.fd is None:  # Windows: FlushFileBuffers needs a handle open for writing
            fd = os.open(parent.at(name), os.O_RDWR | _O_BINARY)
        else:
            fd = os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, dir_fd=parent.fd)
    except PermissionError:
        if parent.fd is None:
            raise
        _sync_filesystem(parent.fd)
        return
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def _sync_dirs(parent: "_Dir", entry: str, *others: "_Dir") -> None:
    """fsync the directory *parent*, and each of *others* that is another one.

    A directory held without read permission (-wx, opened O_PATH) cannot be
    fsynced: then its filesystem is synced instead. Windows cannot open a
    directory at all: there no directory is synced.
    """
    synced: list[os.stat_result] = []
    for held in (parent, *others):
        if held.fd is None:
            continue
        st = os.fstat(held.fd)
        if any(os.path.samestat(st, other) for other in synced):
            continue
        synced.append(st)
        try:
            _fsync(held.fd)
        except OSError as e:
            if e.errno != errno.EBADF or not _O_PATH:
                raise
            _sync_filesystem(held.fd)
            return  # one filesystem: that covers every directory here


def _sync_filesystem(fd: int) -> None:
    """Sync the filesystem *fd* is on (Linux): syncfs() where *fd* allows it,
    else sync(), which waits on Linux, for a descriptor that does not (O_PATH)."""
    try:
        _syncfs(fd)
    except OSError as e:
        if e.errno != errno.EBADF:
            raise
        os.sync()


# ---- Paths, temporaries and errors -----------------------------------------------

# How many hidden names to try before giving up: each is 48 random bits.
_NAME_ATTEMPTS = 100
_NOTHING_CHANGED = "nothing was changed"


class _Temporary:
    """A hidden name beside a target, .NAME.RANDOM.tmp, that this job owns.

    The name is recorded before the call that creates it, so that an
    interrupt between that call and the next line cannot leave it behind;
    cleanup removes what is recorded and ignores ENOENT. Set name to None
    once it is no longer ours (it became the target).
    """

    def __init__(self, parent: "_Dir", target: str, directory: bool = False) -> None:
        self.parent, self.target, self.directory = parent, target, directory
        self.name: str | None = None

    def create(self, make: "Callable[[str], _T]") -> "_T":
        target = self.target.rstrip("/")
        while len(os.fsencode(target)) > 200:  # the name gains 18 bytes; NAME_MAX is 255
            target = target[:-1]
        for _ in range(_NAME_ATTEMPTS):
            self.name = f".{target}.{_random_hex()}.tmp"
            try:
                return make(self.name)
            except FileExistsError:
                self.name = None  # someone else's
        raise FileExistsError(errno.EEXIST, f"no free temporary name in {_NAME_ATTEMPTS} tries")

    def remove(self) -> None:
        if self.name is None:
            return
        if self.directory:
            _remove_tree(self.parent, self.name)
        else:
            try:
                os.unlink(self.parent.at(self.name), dir_fd=self.parent.fd)
            except FileNotFoundError:
                pass
        self.name = None


_names_without_entropy = 0


def _random_hex() -> str:
    """Twelve random hex digits for a temporary's name. Without an entropy
    source (PyPy reads /dev/urandom, which a chroot may lack) a counter and
    the pid serve: O_EXCL and mkdir() make any name safe, and a taken one
    is only tried again."""
    global _names_without_entropy
    try:
        return os.urandom(6).hex()
    except (OSError, NotImplementedError):
        _names_without_entropy += 1
        return f"{os.getpid() & 0xFFFFFF:06x}{_names_without_entropy & 0xFFFFFF:06x}"


def _cleanup(temp: "_Temporary | None", exc: "BaseException | None" = None) -> str:
    """Remove *temp*; if that fails, say so on *exc* and return where it is left.

    Never raises: the exception that made us clean up is the one to report.
    """
    if temp is None or temp.name is None:
        return ""
    try:
        temp.remove()
        return ""
    except Exception as e:  # an OSError, or anything else: never in place of *exc*
        reason = e.strerror if isinstance(e, OSError) else repr(e)
        note = f"{_quote(temp.parent.shown(temp.name))} is left behind: removing it failed: {reason}"
        if exc is not None:
            _add_note(exc, note)
        return f"; but {note}"


def _name_the_blocks_error(exc: BaseException, shown: "str | bytes", leftovers: str) -> None:
    """An OSError without a filename that left a job's block (its file's
    write, say) gets the job's path, and says that nothing was changed."""
    if isinstance(exc, OSError) and not exc.filename:
        exc.filename = shown
        exc.strerror = _with_state(exc.strerror, _NOTHING_CHANGED + leftovers)


def _add_note(exc: BaseException, note: str) -> None:
    add_note = getattr(exc, "add_note", None)  # Python 3.11
    if add_note is not None:
        add_note(note)
    else:
        setattr(exc, "__notes__", [*getattr(exc, "__notes__", []), note])  # noqa: B010 (before 3.11)


def _failed(
    e: OSError,
    shown: "str | bytes",
    shown2: "str | bytes | None" = None,
    *,
    done: "str | None" = None,
    leftovers: str = "",
) -> OSError:
    """The one way a job reports a failure: *e*'s errno and message, the
    caller's path(s) as spelled, never a temporary, and what changed: *done*
    if anything did, else that nothing did."""
    done = done or getattr(e, "done", None)
    if getattr(e, "about_dst", False):  # a refusal that concerns the destination alone
        shown, shown2 = shown2 if shown2 is not None else shown, None
    strerror = e.strerror or os.strerror(e.errno or 0)
    if e.errno == errno.EXDEV and "(" not in strerror:  # os.replace()'s, unexplained
        strerror += f" ({_EXPLANATIONS[errno.EXDEV]})"
    return OSError(
        e.errno, _with_state(strerror, (done or _NOTHING_CHANGED) + leftovers), shown, None, shown2
    )


def _in_place_but(
    problems: "list[tuple[OSError, str]]",
    shown: "str | bytes",
    shown2: "str | bytes | None" = None,
    done: str = "the new content is in place",
) -> OSError:
    """The error for a job whose change is made, though not all went well."""
    first = problems[0][0]
    error = _failed(first, shown, shown2, done=f"{done}, but " + " and ".join(what for _, what in problems))
    error.__cause__ = first
    return error


def _with_state(strerror: "str | None", state: str) -> str:
    return f"{strerror}; {state}"


def _quote(path: "str | bytes") -> str:
    """*path* quoted for a message, without repr()'s escapes: a name that is not
    UTF-8 stays as surrogate escapes, which the command line writes back as the
    bytes they came from."""
    return f"'{os.fsdecode(path)}'"


def _shown(path: "_StrOrBytesPath", name: str) -> "str | bytes":
    """*path* as the caller spelled it, for errors; TypeError or ValueError naming *name*."""
    _fsencode(path, name)
    return os.fspath(path)


def _split(path: "str | bytes") -> "tuple[str, str]":
    """(directory, last component) of *path*, as str, for *at() calls.

    Lexical only where that is exact: the directory keeps every symlink and
    "..", so the kernel resolves it as it would the whole path. A trailing
    slash stays on the name, where it means "a directory" to the kernel.
    """
    path = os.fsdecode(path)
    stripped = path.rstrip("/")
    directory, name = os.path.split(stripped)
    return directory or ("/" if path.startswith("/") else "."), name + path[len(stripped) :]


def _refuse_dot(shown: "str | bytes") -> None:
    """EINVAL for a path that names no replaceable entry: ".", ".." or "/"."""
    name = _split(shown)[1].rstrip("/")
    if name in ("", ".", ".."):
        message = "a path ending in '.', '..' or naming '/' cannot be replaced; " + _NOTHING_CHANGED
        raise OSError(errno.EINVAL, message, shown)


# Flags that not every platform has: Windows has no O_CLOEXEC (O_NOINHERIT
# there), O_DIRECTORY, O_NOFOLLOW nor O_NONBLOCK, and wants O_BINARY.
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_PATH = _linux_flag("O_PATH")  # Linux: a directory held without read permission


class _Dir:
    """A directory held for the length of a job.

    By descriptor where the platform has *at() calls, so that every step
    happens in the directory the kernel resolved once, even if it is renamed
    meanwhile; by O_PATH where it may be searched but not read (-wx). By path
    on Windows, which can neither open a directory nor take dir_fd.
    """

    __slots__ = ("fd", "path")

    def __init__(self, path: str, dir_fd: "int | None" = None) -> None:
        self.path, self.fd = path, None
        if os.open not in os.supports_dir_fd:
            if dir_fd is not None:
                raise NotImplementedError("dir_fd unavailable on this platform")
            return
        try:
            self.fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC, dir_fd=dir_fd)
        except PermissionError:
            if not _O_PATH:
                raise
            self.fd = os.open(path, _O_PATH | _O_DIRECTORY | _O_CLOEXEC, dir_fd=dir_fd)

    def at(self, name: str) -> str:
        """*name* as os functions take it along with dir_fd=self.fd."""
        return name if self.fd is not None else os.path.join(self.path, name)

    def shown(self, name: str) -> str:
        """*name* as a path from where the caller's path started, for messages."""
        return name if self.path == "." else os.path.join(self.path, name)

    def holds_directory(self, name: str) -> bool:
        """Whether *name* is a directory here (a symlink to one is not)."""
        try:
            return stat.S_ISDIR(os.stat(self.at(name), dir_fd=self.fd, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def close(self) -> None:
        if self.fd is not None:
            _close(self.fd)


def _close(*fds: int) -> None:
    """Close descriptors whose close cannot lose data: directories, and files
    whose data is abandoned. A file whose data counts is closed with os.close()
    at the step where its failure can still be reported."""
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


# ---- The platform layer -----------------------------------------------------------
# The jobs reach the kernel through a few primitives: _renameat2() (a rename
# with RENAME_EXCHANGE or RENAME_NOREPLACE), _rename() (a plain rename that
# replaces), _link(), _fsync(), _syncfs(), and _Dir (a directory held for the
# length of a job). Each is chosen once per platform, on first use, from the
# tables below; what a platform lacks, its primitive raises as ENOTSUP.

# A rename with flags, per sys.platform: the C library and function, its
# AT_FDCWD, and its flags for ours. Linux <linux/fs.h> and FreeBSD 15.1
# <fcntl.h> (AT_RENAME_NOREPLACE 0x1, AT_RENAME_EXCHANGE 0x2) use our values;
# macOS <stdio.h> has RENAME_SWAP and RENAME_EXCL. Android is Linux.
_NATIVE = {
    "linux": (None, "renameat2", -100, None),
    "android": (None, "renameat2", -100, None),
    "darwin": (
        "/usr/lib/libSystem.B.dylib",
        "renameatx_np",
        -2,
        {RENAME_EXCHANGE: RENAME_SWAP, RENAME_NOREPLACE: RENAME_EXCL},
    ),
    "freebsd": ("libc.so.7", "renameat2", -100, None),
}
# Where the function is missing, what is needed for it.
_NEEDS = {
    "darwin": "renameatx_np() is missing: macOS 10.12 or later is needed",
    "freebsd": "renameat2() is missing: FreeBSD 15.1 or later is needed",
}
_NO_EXCHANGE = {
    "win32": "Windows cannot exchange two names atomically (only the deprecated Transactional NTFS could)",
}

_binding: "_Binding | None" = None
_cannot_exchange: "str | None" = None  # why, once bound, where the platform cannot
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
_C_INT_MIN, _C_INT_MAX = -(2**31), 2**31 - 1


def _renameat2(
    first: "_StrOrBytesPath",
    second: "_StrOrBytesPath",
    flags: int,
    first_dir_fd: "int | None" = None,
    second_dir_fd: "int | None" = None,
    names: "tuple[str, str]" = ("first", "second"),
) -> None:
    """Rename *first* to *second* with *flags* (RENAME_EXCHANGE or
    RENAME_NOREPLACE); raise OSError naming both, ENOTSUP where the platform
    cannot. *names* are the caller's parameter names, for TypeError and ValueError.
    """
    # str, the common case, is encoded inline: two calls to _fsencode would
    # cost 5% of the system call itself.
    old = first.encode(_FS_ENCODING, _FS_ERRORS) if type(first) is str else _fsencode(first, names[0])
    new = second.encode(_FS_ENCODING, _FS_ERRORS) if type(second) is str else _fsencode(second, names[1])
    if 0 in old or 0 in new:  # seven times faster than b"\0" in old
        _fsencode(first, names[0])  # raises ValueError naming the path
        _fsencode(second, names[1])
    relative = first_dir_fd is not None or second_dir_fd is not None
    if relative:  # types are checked before binding, which loads a C library
        _check_dir_fd(first_dir_fd, names[0])
        _check_dir_fd(second_dir_fd, names[1])
    call, at_fdcwd = _binding or _bind()
    try:
        if relative:
            first_fd = at_fdcwd if first_dir_fd is None else first_dir_fd
            failed = call(first_fd, old, at_fdcwd if second_dir_fd is None else second_dir_fd, new, flags)
        else:  # the common case: no conditional expressions on the way
            failed = call(at_fdcwd, old, at_fdcwd, new, flags)
    except OSError as e:  # a binding without a C function raises instead
        raise OSError(e.errno, e.strerror, os.fspath(first), None, os.fspath(second)) from None
    if failed:
        raise _rename_error(flags, first, second)


def _rename(src_dir: "_Dir", src: str, dst_dir: "_Dir", dst: str) -> None:
    """A plain rename that replaces what is at *dst*, where rename(2) can.

    Windows cannot replace a directory, nor put anything over one: that is
    ENOTSUP there, as it is for what only an exchange could do elsewhere.
    """
    try:
        os.replace(src_dir.at(src), dst_dir.at(dst), src_dir_fd=src_dir.fd, dst_dir_fd=dst_dir.fd)
    except PermissionError:
        if sys.platform != "win32" or not (src_dir.holds_directory(src) or dst_dir.holds_directory(dst)):
            raise
        raise OSError(
            errno.ENOTSUP, "Windows cannot replace a directory, nor put anything over one"
        ) from None


def _fsencode(path: "_StrOrBytesPath", name: str) -> bytes:
    """*path* as the kernel takes it; TypeError or ValueError naming *name*."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} should be str, bytes or os.PathLike, not {type(path).__name__}")
    try:
        path = os.fspath(path)
    except TypeError as e:  # __fspath__ returned something else
        raise TypeError(f"{name}: {e}") from None
    # Exact bytes, so that no subclass's __contains__ can hide a NUL from the
    # check: ctypes would cut the path there.
    encoded = str.encode(path, _FS_ENCODING, _FS_ERRORS) if isinstance(path, str) else bytes(path)
    if 0 in encoded:
        raise ValueError(f"{name}: embedded null byte")
    return encoded


def _check_dir_fd(fd: object, name: str) -> None:
    if fd is None:
        return
    if not isinstance(fd, int) or isinstance(fd, bool):
        kind = type(fd).__name__
        raise TypeError(f"{name}_dir_fd should be int or None, not {kind}")
    if not _C_INT_MIN <= fd <= _C_INT_MAX:
        raise OverflowError(f"{name}_dir_fd is out of range for a file descriptor")


# What an errno means for a rename with these flags, beyond its strerror.
_EXPLANATIONS = {
    errno.EXDEV: (
        "the two paths are on different mounts: different filesystems, two mounts of one"
        " (bind mounts), or on overlayfs a directory from a lower layer (without redirect_dir=on)"
    ),
    errno.ENOSYS: "the kernel has no renameat2; Linux 3.15 or later is needed",
    errno.ENOTSUP: "this filesystem does not support {operation}",
    errno.EINVAL: (
        "{operation} is not supported by this filesystem (NFS, FUSE, 9p, ...) or kernel"
        " (Linux before 3.15, WSL1), or a directory would move inside itself"
    ),
}
_OPERATIONS = {
    RENAME_EXCHANGE: "exchanging two names",
    RENAME_NOREPLACE: "renaming without replacing",
}


def _rename_error(flags: int, first: "_StrOrBytesPath", second: "_StrOrBytesPath") -> OSError:
    import ctypes  # loaded by _bind() already

    return _c_error(ctypes.get_errno(), first, second, flags)


def _c_error(err: int, first: "_StrOrBytesPath", second: "_StrOrBytesPath | None", flags: int = 0) -> OSError:
    """The OSError for a C call that set errno *err*, naming the paths as os does."""
    message = os.strerror(err)
    explanation = _EXPLANATIONS.get(err)
    # What a call without flags got EINVAL or ENOTSUP for, the kernel does not say.
    if explanation and (flags in _OPERATIONS or err not in (errno.EINVAL, errno.ENOTSUP)):
        message += f" ({explanation.format(operation=_OPERATIONS.get(flags))})"
    second = None if second is None else os.fspath(second)
    return OSError(err, message, os.fspath(first), None, second)  # as os.rename does


def _system() -> str:
    """sys.platform without a version: FreeBSD's is freebsd14, freebsd15, ..."""
    return "freebsd" if sys.platform.startswith("freebsd") else sys.platform


def _bind() -> "_Binding":
    """Find the platform's rename with flags and cache it in _binding.

    Where there is none, the binding raises ENOTSUP for an exchange; for a
    rename without replacing it does what the platform can (os.rename() on
    Windows, which never replaces), else raises ENOTSUP too, for the jobs'
    link() fallback. ctypes is imported only where there is a C function.
    """
    global _binding
    if sys.platform != "win32":
        import fcntl  # noqa: F401  (the jobs use it: loaded now, not between two of their system calls)
    system = _system()
    native = _NATIVE.get(system)
    binding = None
    if native is not None:
        try:
            import ctypes
        except ImportError:
            ctypes = None  # type: ignore[assignment]
        if ctypes is not None:
            binding = _bind_native(ctypes, system, *native)
    global _cannot_exchange
    _cannot_exchange = None if binding else _why_no_exchange(system)
    _binding = binding or (_portable(system), -100)
    return _binding


def _bind_native(
    ctypes: "Any",
    system: str,
    library: "str | None",
    name: str,
    at_fdcwd: int,
    flags: "dict[int, int] | None",
) -> "_Binding | None":
    libc = _open_libc(ctypes, library)
    try:
        function = libc[name]
    except AttributeError:
        if system not in ("linux", "android"):
            return None
        return _bind_syscall(ctypes, libc), at_fdcwd  # a C library older than the kernel
    # No argtypes: ctypes' default conversions (int to int, bytes to char *) are
    # exactly the prototype, and _renameat2 has already checked types and
    # ranges; argtypes would check them again at 70 ns an argument, 8% of the call.
    function.restype = ctypes.c_int
    if flags is None:
        return function, at_fdcwd

    def call(old_fd: int, old: bytes, new_fd: int, new: bytes, ours: int) -> int:
        return function(old_fd, old, new_fd, new, flags[ours])  # type: ignore[no-any-return]

    return call, at_fdcwd


def _why_no_exchange(system: str) -> str:
    default = f"{sys.platform!r} has no atomic exchange of two names"
    return (
        _NO_EXCHANGE.get(system)
        or _NEEDS.get(system)
        or default + " (Linux, macOS and FreeBSD 15.1 have one)"
    )


def _portable(system: str) -> "Callable[[int, bytes, int, bytes, int], int]":
    """The rename with flags of a platform that has none: ENOTSUP, but for
    Windows' rename, which never replaces."""
    why = _why_no_exchange(system)

    def call(old_fd: int, old: bytes, new_fd: int, new: bytes, flags: int) -> int:
        if flags == RENAME_NOREPLACE and system == "win32":
            os.rename(old, new)
            return 0
        raise OSError(errno.ENOTSUP, f"{os.strerror(errno.ENOTSUP)} ({why})")

    return call


def _bind_early(path: "_StrOrBytesPath") -> None:
    """Bind before making a temporary that a rename will move to *path*.

    The first binding imports ctypes, milliseconds during which a crash
    would leave the temporary behind if they fell just before the rename.
    """
    if _binding is None:
        _bind()


def _open_libc(ctypes: "Any", name: "str | None") -> "Any":
    # use_errno makes ctypes save errno right after the call, per thread, for
    # get_errno() in _rename_error(); CDLL (not PyDLL) releases the GIL.
    return ctypes.CDLL(name, use_errno=True)


# Other C functions of Linux's C library, looked up on first use.
_c_functions: "dict[str, Any]" = {}


def _linux_function(name: str) -> "Any":
    """Linux's C library's *name*, bound with an int result; None elsewhere,
    or where the C library has none."""
    if sys.platform not in ("linux", "android"):
        return None
    if name not in _c_functions:
        import ctypes

        try:
            function = _open_libc(ctypes, None)[name]
            function.restype = ctypes.c_int
        except AttributeError:
            function = None
        _c_functions[name] = function
    return _c_functions[name]


# Linux <fcntl.h> and <linux/stat.h>, the same on every architecture.
_AT_FDCWD_LINUX, _AT_SYMLINK_NOFOLLOW, _AT_SYMLINK_FOLLOW = -100, 0x100, 0x400
_AT_EMPTY_PATH, _STATX_MNT_ID = 0x1000, 0x1000
_STATX_MASK, _STATX_MNT_ID_AT = slice(0, 4), slice(144, 152)  # in struct statx


def _mount_id(dir_fd: int, name: str) -> "int | None":
    """The id of the mount that *name* in *dir_fd* (*dir_fd* itself for "")
    is on, from statx() (Linux 5.8 and later); None where that is not known."""
    call = _linux_function("statx")
    if call is None:
        return None
    import ctypes

    result = ctypes.create_string_buffer(256)
    flags = _AT_SYMLINK_NOFOLLOW | (0 if name else _AT_EMPTY_PATH)
    if call(dir_fd, os.fsencode(name), flags, _STATX_MNT_ID, result):
        return None
    if not int.from_bytes(result.raw[_STATX_MASK], sys.byteorder) & _STATX_MNT_ID:
        return None
    return int.from_bytes(result.raw[_STATX_MNT_ID_AT], sys.byteorder)


def _syncfs(fd: int) -> None:
    """Sync the whole filesystem *fd* is on, and report its writeback errors
    (Linux 5.8 and later); ENOTSUP where the platform has no syncfs()."""
    call = _linux_function("syncfs")
    if call is None:
        raise OSError(errno.ENOTSUP, "this platform has no syncfs()")
    if call(fd):
        import ctypes

        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


# PyPy's os.link() passes AT_SYMLINK_NOFOLLOW for follow_symlinks=False, a flag
# linkat() does not take (EINVAL), and no flag by default: not following.
_NO_FOLLOW: "dict[str, Any]" = {} if sys.implementation.name == "pypy" else {"follow_symlinks": False}


def _link(src_dir: "_Dir", src: str, dst_dir: "_Dir", dst: str) -> None:
    """link() that never follows a symlink at *src*, as rename() would not.

    os.link(follow_symlinks=False) does this on CPython, but PyPy passes
    AT_SYMLINK_NOFOLLOW, which Linux's linkat() rejects: there linkat() is
    called with no flags, through ctypes.
    """
    call = _linux_function("linkat")
    if call is None:
        os.link(src_dir.at(src), dst_dir.at(dst), src_dir_fd=src_dir.fd, dst_dir_fd=dst_dir.fd, **_NO_FOLLOW)
        return
    src_fd = _AT_FDCWD_LINUX if src_dir.fd is None else src_dir.fd
    dst_fd = _AT_FDCWD_LINUX if dst_dir.fd is None else dst_dir.fd
    if call(src_fd, _fsencode(src, "src"), dst_fd, _fsencode(dst, "dst"), 0):
        import ctypes

        raise _c_error(ctypes.get_errno(), src, dst)


def _fsync(fd: int) -> None:
    """The one file and directory sync. macOS's fsync() stops at the drive's
    cache: F_FULLFSYNC goes through it, where the filesystem supports it
    (SMB and FAT answer ENOTSUP or EINVAL; then fsync() is all there is)."""
    if sys.platform == "darwin":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EINVAL):
                raise
    os.fsync(fd)


# The number of the renameat2 system call per
# (architecture, userland ABI), from the kernel's syscall tables
# (arch/*/entry/syscalls/*.tbl, arch/*/kernel/syscalls/*.tbl, asm-generic/unistd.h).
_SYS_renameat2 = {
    ("x86", "64"): 316,
    ("x86", "x32"): 0x40000000 | 316,  # __X32_SYSCALL_BIT
    ("x86", "32"): 353,
    ("arm", "64"): 276,
    ("arm", "32"): 382,
    ("riscv", "64"): 276,
    ("riscv", "32"): 276,
    ("loongarch", "64"): 276,
    ("ppc", "64"): 357,
    ("ppc", "32"): 357,
    ("s390", "64"): 347,
    ("s390", "32"): 347,
    ("mips", "64"): 5000 + 311,  # n64
    ("mips", "n32"): 6000 + 315,
    ("mips", "32"): 4000 + 351,  # o32
    ("sparc", "64"): 345,
    ("sparc", "32"): 345,
}

# Prefixes of the machine names Linux reports (os.uname().machine): i686, armv7l,
# aarch64_be, riscv64, ppc64le, mips64, sparc64, ...
_ARCHITECTURES = (
    ("x86_64", "x86"),
    ("i386", "x86"),
    ("i486", "x86"),
    ("i586", "x86"),
    ("i686", "x86"),
    ("aarch64", "arm"),
    ("arm", "arm"),
    ("riscv", "riscv"),
    ("loongarch", "loongarch"),
    ("ppc", "ppc"),
    ("s390", "s390"),
    ("mips", "mips"),
    ("sparc", "sparc"),
)


def _bind_syscall(ctypes: "Any", libc: "Any") -> "Callable[[int, bytes, int, bytes, int], int]":
    """renameat2 through syscall(), for C libraries that do not export it."""
    import functools

    number = _syscall_number(
        os.uname().machine,
        ctypes.sizeof(ctypes.c_void_p) * 8,
        getattr(sys.implementation, "_multiarch", ""),
    )
    syscall = libc["syscall"]
    # syscall() is variadic and reads every argument as a long: without
    # argtypes, ctypes would pass the number and the ints as 32-bit ints.
    c_long, c_char_p = ctypes.c_long, ctypes.c_char_p
    syscall.argtypes = (c_long, c_long, c_char_p, c_long, c_char_p, c_long)
    syscall.restype = c_long
    return functools.partial(syscall, number)


def _syscall_number(machine: str, pointer_bits: int, multiarch: str) -> int:
    """renameat2's number for the userland ABI this Python was built for.

    A 32-bit Python on a 64-bit kernel reports the kernel's machine (x86_64,
    aarch64, ...), so the pointer size picks the row; x32 and mips n32 have
    32-bit pointers on a 64-bit ABI, which only the build's multiarch tuple tells.
    """
    arch = next((arch for prefix, arch in _ARCHITECTURES if machine.startswith(prefix)), None)
    environment = multiarch.rpartition("-")[2]  # gnux32, muslx32, gnuabin32sf, gnueabihf, ...
    if pointer_bits == 64:
        abi = "64"
    elif "x32" in environment:
        abi = "x32"
    elif "n32" in environment:
        abi = "n32"
    else:
        abi = "32"
    try:
        return _SYS_renameat2[arch, abi]  # type: ignore[index]
    except KeyError:
        raise OSError(
            errno.ENOSYS, f"renameat2's system call number is not known for {machine} ({abi})"
        ) from None


# ---- The command line -------------------------------------------------------------
#
# atomicswap PATH1 PATH2 exchanges two paths, as util-linux exch does, and one
# command per job does that job, named like its function. Success prints
# nothing; a failure prints one line naming the paths as they were typed (the
# very bytes, whatever their encoding) and exits 1. argparse is imported only
# when main() runs, so that importing the library stays cheap.

if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable, NoReturn

_STDIN = "standard input"  # how a failure names it


def _write_stdin(
    path: str, *, overwrite: bool = True, perms: "int | None" = None, durable: bool = True
) -> None:
    """atomicswap write: all of standard input to *path*, with atomic_write().

    Everything is read before *path* is touched, so a failed or interrupted
    read writes nothing.
    """
    try:
        data = sys.stdin.buffer.read()
    except OSError as e:
        raise OSError(e.errno, e.strerror, _STDIN) from e
    except AttributeError:  # sys.stdin is None: descriptor 0 was closed
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), _STDIN) from None
    with atomic_write(path, "wb", overwrite=overwrite, perms=perms, durable=durable) as f:
        f.write(data)


# Each command: the function that does it, its paths (positional arguments,
# passed in this order, and named in this order by a failure), what it does,
# and one example. Options are passed to the function as keywords.
_COMMANDS: "dict[str, tuple[Callable[..., None], tuple[str, ...], str, str]]" = {
    "swap": (
        swap,
        ("PATH1", "PATH2"),
        "Exchange PATH1 and PATH2 atomically: files, directories (empty or not),\n"
        "symlinks (exchanged as links, never followed) or any mix, on one\n"
        "filesystem. No process ever sees either name missing.",
        "atomicswap swap /etc/app/active /etc/app/standby",
    ),
    "replace": (
        replace,
        ("SRC", "DST"),
        "Put what is at SRC at DST atomically, whatever DST is: absent, a file,\n"
        "a symlink, or a directory, even a non-empty one. Readers of DST see the\n"
        "old or the new, never nothing. SRC is gone afterwards.",
        "atomicswap replace build/site public/site",
    ),
    "write": (
        _write_stdin,
        ("PATH",),
        "Read all of standard input, then write it to PATH all at once: readers\n"
        "see the old file or the new one, never a part of it. The file replaced\n"
        "keeps its permissions and owner, and a symlink at PATH is written\n"
        "through. Nothing is written if reading standard input fails or is\n"
        "interrupted; a terminal on standard input is refused.",
        "jq . config.json | atomicswap write config.json",
    ),
    "symlink": (
        symlink,
        ("TARGET", "LINK"),
        "Make LINK a symlink to TARGET, atomically replacing the link or file\n"
        "at LINK, as GNU ln -sfn does: LINK is never missing. A directory at\n"
        "LINK is refused (ln -sfn would make the link inside it).",
        "atomicswap symlink releases/42 current",
    ),
    "rename-noreplace": (
        rename_noreplace,
        ("SRC", "DST"),
        "Rename SRC to DST unless something is at DST. The check and the rename\n"
        "are one operation, so nothing that appears at DST meanwhile is\n"
        "overwritten.",
        "atomicswap rename-noreplace upload.part upload",
    ),
}

_PROGRAM = """\
Replace things on disk atomically: other processes see the old or the new,
never a path missing or half written."""

_COMMAND_LIST = """\
commands:
  swap PATH1 PATH2          exchange two paths (atomicswap PATH1 PATH2 does the same)
  replace SRC DST           put SRC at DST, even over a non-empty directory
  write PATH                write standard input to PATH, all at once
  symlink TARGET LINK       point LINK at TARGET, replacing an old link (ln -sfn)
  rename-noreplace SRC DST  rename SRC to DST, failing if DST exists

A first argument that names a command is that command: to exchange two paths
named like commands, write "atomicswap swap -- write config". Paths that start
with "-" follow "--" too. "atomicswap COMMAND --help" describes each command."""

_EXIT_STATUS = """\
exit status:
  0    success; nothing is printed
  1    failure; one line on standard error names the paths
  2    usage error
  130  interrupted (SIGINT)"""


def main(argv: "list[str] | None" = None) -> int:
    """The command line, ``atomicswap [COMMAND] ARGS...``; returns the exit status.

    ``atomicswap PATH1 PATH2`` exchanges the two paths, as util-linux exch
    does; ``atomicswap --help`` lists the commands. Prints nothing and returns
    0 on success; prints one line naming the paths to stderr and returns 1 on
    failure; returns 2 for a usage error and 130 when interrupted.
    """
    try:
        status = _command_line(sys.argv[1:] if argv is None else list(argv))
        if sys.stdout is not None:
            sys.stdout.flush()  # now, while a closed pipe can still be dealt with
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # --help into a pipe already closed
        _discard_stdout()
        return 1


def _command_line(argv: "list[str]") -> int:
    """Parse *argv*, run the command, report a failure; the exit status."""
    command = argv[0] if argv and argv[0] in _COMMANDS else None
    parser = _parser(command)
    try:
        args = vars(parser.parse_args(argv if command is None else argv[1:]))
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 0
    command = command or "swap"
    function, names = _COMMANDS[command][:2]
    paths = [args.pop(name.lower()) for name in names]
    if function is _write_stdin and sys.stdin is not None and sys.stdin.isatty():
        parser.error("standard input is a terminal: pipe the content in, or redirect it from a file")
    try:
        function(*paths, **args)
    except OSError as e:
        _print_error(_failure(command, paths, e))
        return 1
    return 0


def _parser(command: "str | None") -> "argparse.ArgumentParser":
    """The parser for *command*, or for the program (the short form of swap) if None."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> "NoReturn":
            # argparse would print non-UTF-8 arguments as Python escapes.
            _print_error(f"{self.format_usage()}{self.prog}: error: {message}")
            raise SystemExit(2)

        def _print_message(self, message: str, file: "Any" = None) -> None:
            # argparse 3.10 and later ignore a failed write of help or version;
            # raise, so that a closed pipe exits 1 however stdout is buffered.
            stream = file or sys.stderr
            if message and stream is not None:
                stream.write(message)

    _, names, description, example = _COMMANDS[command or "swap"]
    usage = None
    if command is None:  # the program: the commands, and the short form of swap
        usage = "%(prog)s [-h] [-V] [--durable] PATH1 PATH2\n       %(prog)s COMMAND [-h] ARGS..."
        description = f"{_PROGRAM}\n\n{_COMMAND_LIST}"
        example = "atomicswap /etc/app/active /etc/app/standby"
    parser = Parser(
        prog="atomicswap" if command is None else f"atomicswap {command}",
        usage=usage,
        description=description,
        epilog=f"example:\n  {example}\n\n{_EXIT_STATUS}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if command is None:
        parser.add_argument("-V", "--version", action="version", version=f"atomicswap {__version__}")
    for name in names:
        parser.add_argument(name.lower(), metavar=name)
    if command == "write":
        parser.add_argument(
            "-n", "--no-clobber", dest="overwrite", action="store_false", help="fail if PATH exists"
        )
        parser.add_argument(
            "-m",
            "--mode",
            dest="perms",
            type=_octal_mode,
            metavar="OCTAL",
            help="permission bits of the new file, like 644 (default: those of the file replaced,"
            " or 666 less the umask)",
        )
        parser.add_argument(
            "--no-sync",
            dest="durable",
            action="store_false",
            help="do not sync to disk: still atomic for readers, but a power cut may lose the write",
        )
    else:
        # Left out unless given, so that the function's own default applies.
        parser.add_argument(
            "--durable",
            action="store_true",
            default=argparse.SUPPRESS,
            help="sync the change to disk before exiting",
        )
    return parser


def _octal_mode(text: str) -> int:
    import argparse

    if not 1 <= len(text) <= 4 or not set(text) <= set("01234567"):
        raise argparse.ArgumentTypeError(f"not an octal mode from 0 to 7777, like 644: {text}")
    return int(text, 8)


def _failure(command: str, paths: "list[str]", e: OSError) -> str:
    """``atomicswap: COMMAND PATHS: [OTHER PATH: ]WHAT FAILED``, paths as typed."""
    typed = [os.fsencode(path) for path in paths]
    others = [
        os.fsdecode(name)
        for name in (e.filename, e.filename2)
        if isinstance(name, (str, bytes)) and os.fsencode(name) not in typed
    ]
    what = e.strerror or str(e)
    return ": ".join(["atomicswap", " ".join([command, *paths]), *others, what])


def _print_error(message: str) -> None:
    """Write *message* and a newline to stderr, with paths as the bytes they were given."""
    stream = sys.stderr
    if stream is None:  # descriptor 2 was closed
        return
    message += "\n"
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is None:
            stream.write(message)
        else:
            # str paths carry undecodable bytes as surrogates: encode them back.
            try:
                data = message.encode(_FS_ENCODING, _FS_ERRORS)
            except UnicodeEncodeError:  # text the filesystem encoding cannot hold
                data = message.encode(_FS_ENCODING, "backslashreplace")
            stream.flush()
            buffer.write(data)
            buffer.flush()
    except (OSError, ValueError):
        pass  # stderr is gone, or a pipe closed: nowhere left to say it


def _discard_stdout() -> None:
    """Point descriptor 1 at /dev/null, so that exit does not complain of a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # python atomicswap.py, or python -m atomicswap, where this file is vendored
    raise SystemExit(main())
