"""Exchange two paths atomically, and the jobs built on that.

swap(a, b) exchanges two names on one filesystem in a single kernel operation
(Linux renameat2 with RENAME_EXCHANGE, macOS renameatx_np with RENAME_SWAP):
either both names are exchanged or nothing changes, and no process ever sees
either name missing. replace(), atomic_write(), atomic_dir(), symlink() and
rename_noreplace() use the same call. Other platforms raise OSError(ENOTSUP);
nothing falls back to a non-atomic imitation.
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
]
__version__ = "0.3.0"

# Annotations are quoted, so typing is needed only by type checkers: importing
# it, or __future__ for unquoted annotations, would cost nearly as much as this
# whole module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType
    from typing import IO, Any, Callable, TypeVar

    StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
    _T = TypeVar("_T")
    # The C rename function, called (olddirfd, old, newdirfd, new, flags), and AT_FDCWD.
    _Binding = tuple[Callable[[int, bytes, int, bytes, int], int], int]

# Linux <linux/fs.h>
RENAME_NOREPLACE = 0x1
RENAME_EXCHANGE = 0x2
# macOS <sys/stdio.h>
RENAME_SWAP = 0x2
RENAME_EXCL = 0x4


def swap(
    first: "StrOrBytesPath",
    second: "StrOrBytesPath",
    *,
    first_dir_fd: "int | None" = None,
    second_dir_fd: "int | None" = None,
) -> None:
    """Exchange *first* and *second* atomically.

    Both must exist on the same filesystem; they may be files, directories
    (empty or not), symlinks (the links themselves are exchanged, never
    followed) or any mix of these. Either both names are exchanged or nothing
    changes, and no other process can observe either name missing.

    Paths are str, bytes or os.PathLike. A relative path is resolved against
    its dir fd (an open directory), or the current directory when that is None;
    an absolute path ignores its dir fd.

    Raises TypeError for an argument of the wrong type and ValueError for a
    path with an embedded NUL, both before any system call. A failed exchange
    raises OSError (FileNotFoundError, PermissionError, ...) with the errno,
    filename=first and filename2=second, as os.rename does; EXDEV (different
    filesystems) and EINVAL (a filesystem that cannot exchange, or one path
    inside the other) say so in their message. ENOTSUP on platforms other
    than Linux and macOS.
    """
    _renameat2(first, second, RENAME_EXCHANGE, first_dir_fd, second_dir_fd)


exchange = swap


def rename_noreplace(
    src: "StrOrBytesPath",
    dst: "StrOrBytesPath",
    *,
    src_dir_fd: "int | None" = None,
    dst_dir_fd: "int | None" = None,
) -> None:
    """Rename *src* to *dst*, raising FileExistsError if *dst* exists.

    The check and the rename are one kernel operation (Linux RENAME_NOREPLACE,
    macOS RENAME_EXCL), so whatever appears at *dst* meanwhile is never
    overwritten. Where the filesystem rejects the flag with EINVAL (NFS, FUSE,
    9p), a non-directory is moved with link() then unlink(), which never
    overwrites either, though for a moment both names show the file. Paths,
    dir fds and errors are as for swap().
    """
    try:
        _renameat2(src, dst, RENAME_NOREPLACE, src_dir_fd, dst_dir_fd, ("src", "dst"))
        return
    except OSError as e:
        if e.errno != errno.EINVAL or _is_directory(src, src_dir_fd):
            raise
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    try:
        os.unlink(src, dir_fd=src_dir_fd)
    except OSError as e:
        src, dst = os.fspath(src), os.fspath(dst)
        message = f"{dst!r} was created, but {src!r} could not be removed: {e.strerror}"
        raise OSError(e.errno, message, src) from e


def _is_directory(path: "StrOrBytesPath", dir_fd: "int | None") -> bool:
    return stat.S_ISDIR(os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode)


def replace(src: "StrOrBytesPath", dst: "StrOrBytesPath") -> None:
    """Put what is at *src* at *dst* atomically, whatever *dst* is.

    Unlike os.replace(), *dst* may be anything: absent, a file, a symlink, or a
    directory, empty or not, of the same kind as *src* or not. A reader of
    *dst* sees the old or the new, never nothing. Where a rename cannot do it
    (a non-empty directory at *dst*, or one of another kind), *src* and *dst*
    are exchanged and the old content, now at *src*, is removed; if that
    fails, the OSError says that *dst* was replaced and where its old content
    is left. replace(p, p), or two names of one file, changes nothing, as
    with os.replace().
    """
    src, dst = _fsdecode(src, "src"), _fsdecode(dst, "dst")
    if _put(src, dst):
        _remove_old(src, dst)


# Why rename() cannot put src at dst: dst is a non-empty directory (ENOTEMPTY,
# or EEXIST), a directory and src is not (EISDIR), or not one and src is (ENOTDIR).
_NEEDS_EXCHANGE = (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR)


def _put(src: str, dst: str) -> bool:
    """Move *src* to *dst* atomically; True if *dst*'s old content is now at *src*."""
    while True:
        try:
            _renameat2(src, dst, 0, None, None, ("src", "dst"))
            return False
        except OSError as e:
            if e.errno not in _NEEDS_EXCHANGE:
                raise
        try:
            _renameat2(src, dst, RENAME_EXCHANGE, None, None, ("src", "dst"))
            return True
        except FileNotFoundError:
            pass  # dst went away meanwhile: a rename will do


def _remove_old(old: str, replaced: str) -> None:
    """Remove what replace() moved out of *replaced*; say where it is if that fails."""
    try:
        if _is_directory(old, None):
            import shutil

            shutil.rmtree(old)
        else:
            os.unlink(old)
    except OSError as e:
        message = f"{replaced!r} was replaced, but its old content is left at {old!r}: {e.strerror}"
        raise OSError(e.errno, message, e.filename, None, e.filename2) from e


def atomic_write(
    path: "StrOrBytesPath",
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
    uniquely named file. Leaving the block normally flushes it, fsyncs it
    (F_FULLFSYNC on macOS), renames it over *path* and fsyncs the directory;
    durable=False makes no sync calls, which keeps the write atomic for readers
    but not for a power cut. overwrite=False puts it at *path* only if nothing
    is there by then, as open(path, "x") would: FileExistsError otherwise,
    leaving no trace.

    An exception in the block, or any failure before the rename (a failed
    fsync included), leaves *path* as it was, removes the temporary and
    propagates. If only the directory fsync fails, the OSError says the new
    content is in place but not yet durable.

    *mode* is "w", "wb" or "wt"; read, append and exclusive modes raise
    ValueError. *open_kwargs* (encoding, newline, ...) go to open(). The file
    replaced keeps its permission bits, and its owner where the writer may
    give it (root may), else loses setuid and setgid; a new file gets what
    open() gives it (0o666 less the umask); *perms* sets them. A symlink at
    *path* is written through, as open() does: the link stays a link and the
    file it points to is replaced. Only regular files are replaced: a
    directory, a device or a FIFO at *path* raises OSError.
    """
    return _AtomicWrite(path, mode, overwrite, perms, durable, open_kwargs)


class _AtomicWrite:
    """atomic_write()'s steps: make the temporary, then commit or roll back."""

    def __init__(
        self,
        path: "StrOrBytesPath",
        mode: str,
        overwrite: bool,
        perms: "int | None",
        durable: bool,
        open_kwargs: "dict[str, Any]",
    ) -> None:
        if "w" not in mode or not set(mode) <= set("wbt"):
            raise ValueError(f"atomic_write() mode must be 'w', 'wb' or 'wt', not {mode!r}")
        if perms is not None and (not isinstance(perms, int) or isinstance(perms, bool)):
            raise TypeError(f"perms should be int or None, not {type(perms).__name__}")
        self._path = _fsdecode(path, "path")
        self._mode, self._open_kwargs = mode, open_kwargs
        self._overwrite, self._perms, self._durable = overwrite, perms, durable
        self._dir_fd = self._fd = -1  # open between __enter__ and __exit__
        self._name = ""
        self._temp: str | None = None  # the temporary's name while it is ours to remove
        self._file: IO[Any] | None = None

    def __enter__(self) -> "IO[Any]":
        if self._dir_fd >= 0:
            raise RuntimeError("this atomic_write() is already in use")
        _bind_early(self._path)
        # With overwrite=False anything at path, a dangling symlink too, is in the way.
        target, existing = _write_through(self._path) if self._overwrite else (self._path, None)
        if existing and not stat.S_ISREG(existing.st_mode):
            if stat.S_ISDIR(existing.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self._path)
            raise OSError(errno.EINVAL, "not a regular file, which atomic_write() would make it", self._path)
        directory, self._name = os.path.split(target)
        self._dir_fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # A new file without perms gets 0o666 less the umask from the kernel, as with open().
            mode = 0o666 if self._perms is None and not existing else 0o600
            self._fd, self._temp = _create_temp(self._dir_fd, self._name, mode)
            self._set_owner_and_perms(existing)
            # The descriptor stays ours, so a file closed in the block cannot
            # leave a reused descriptor number to be synced and linked.
            self._file = open(self._fd, self._mode, closefd=False, **self._open_kwargs)
        except BaseException:
            self._rollback()
            raise
        return self._file

    def __exit__(
        self,
        exc_type: "type[BaseException] | None",
        exc: "BaseException | None",
        traceback: "TracebackType | None",
    ) -> None:
        if exc_type is None:
            self._commit()
        else:
            self._rollback()

    def _set_owner_and_perms(self, existing: "os.stat_result | None") -> None:
        perms = self._perms
        if existing:
            try:
                os.fchown(self._fd, existing.st_uid, existing.st_gid)
                kept = 0o7777
            except OSError:
                kept = 0o1777  # the file is the writer's now: setuid or setgid would be too
            if perms is None:
                perms = stat.S_IMODE(existing.st_mode) & kept
        if perms is not None:
            os.fchmod(self._fd, perms)

    def _commit(self) -> None:
        assert self._file is not None
        try:
            self._file.close()  # flushes, unless the block closed it already
            if self._durable:
                _fsync(self._fd)
            self._place()
        except BaseException:
            self._rollback()
            raise
        try:
            if self._durable:
                _fsync(self._dir_fd)
        except OSError as e:
            raise _not_durable(self._path, e) from e
        finally:
            self._close()

    def _place(self) -> None:
        """Give the written file the target's name."""
        try:
            if self._temp is None and not self._overwrite:
                _link_fd(self._fd, self._name, self._dir_fd)  # link() never overwrites
                return
            if self._temp is None:
                _, self._temp = _unique_name(self._name, lambda temp: _link_fd(self._fd, temp, self._dir_fd))
            if self._overwrite:
                _renameat2(self._temp, self._name, 0, self._dir_fd, self._dir_fd)
            else:
                rename_noreplace(self._temp, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            self._temp = None  # it is the target now
        except OSError as e:
            raise _naming(self._path, e) from e

    def _rollback(self) -> None:
        try:
            if self._file is not None:
                self._file.close()
        except OSError:
            pass  # the write is abandoned: what it could not flush no longer matters
        finally:
            if self._temp is not None:
                try:
                    os.unlink(self._temp, dir_fd=self._dir_fd)
                except FileNotFoundError:
                    pass
            self._close()

    def _close(self) -> None:
        for fd in (self._fd, self._dir_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._dir_fd = -1


def _write_through(path: str) -> "tuple[str, os.stat_result | None]":
    """The file open(path, "w") would write, *path* or where its symlinks lead,
    and its stat, None if it does not exist yet."""
    try:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode):
            return path, st
        path = os.path.realpath(path)
        return path, os.stat(path)
    except FileNotFoundError:
        return path, None


_O_TMPFILE = getattr(os, "O_TMPFILE", 0)  # Linux 3.11 and later
if _O_TMPFILE and not os.path.isdir("/proc/self/fd"):
    _O_TMPFILE = 0  # such a file is linked in through /proc/self/fd


def _create_temp(dir_fd: int, name: str, mode: int) -> "tuple[int, str | None]":
    """A new file open for writing in *dir_fd*, and its name if it has one.

    Anonymous (O_TMPFILE) where the kernel and the filesystem can make it: a
    crash while writing then leaves nothing behind.
    """
    if _O_TMPFILE:
        try:
            return os.open(".", _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, mode, dir_fd=dir_fd), None
        except OSError as e:
            # EISDIR: a kernel before 3.11, which sees only O_DIRECTORY.
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR):
                raise
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    return _unique_name(name, lambda temp: os.open(temp, flags, mode, dir_fd=dir_fd))


def _link_fd(fd: int, name: str, dir_fd: int) -> None:
    """Give the O_TMPFILE file *fd* the name *name* in *dir_fd*."""
    # With a dir fd os.link() calls linkat() with AT_SYMLINK_FOLLOW, which
    # follows /proc's link to the open file; a plain link() would not.
    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)


def _unique_name(path: str, create: "Callable[[str], _T]") -> "tuple[_T, str]":
    """Call create() with hidden names beside *path* until one is free.

    The name, .NAME.RANDOM.tmp, says what a leftover was meant to become.
    """
    directory, name = os.path.split(path)
    while len(os.fsencode(name)) > 200:  # the name gains 18 bytes; NAME_MAX is 255
        name = name[:-1]
    while True:
        temp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            return create(temp), temp
        except FileExistsError:
            continue


def _fsync(fd: int) -> None:
    if sys.platform == "darwin":
        import fcntl

        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # fsync() on macOS stops at the drive's cache
    else:
        os.fsync(fd)


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # a write-only file: fsync takes either
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def _not_durable(path: str, e: OSError) -> OSError:
    return OSError(e.errno, f"{path!r} has its new content, but it is not yet durable: {e.strerror}", path)


def _naming(path: str, e: OSError) -> OSError:
    """*e* again, naming the user's *path* rather than a temporary."""
    return OSError(e.errno, e.strerror, path)


def atomic_dir(path: "StrOrBytesPath", *, overwrite: bool = True, durable: bool = True) -> "_AtomicDir":
    """Build a directory in private, then publish it at *path* all at once.

        with atomic_dir("public/site") as staging:
            (staging / "index.html").write_text(html)

    Yields a fresh, empty staging directory beside *path*, as an absolute
    pathlib.Path. Leaving the block normally fsyncs every file and directory
    staged (when *durable*), then publishes the tree at *path* with replace(),
    or with rename_noreplace() when overwrite=False (FileExistsError if *path*
    exists). An exception, in the block or while publishing, leaves *path*
    untouched and removes the staging directory. A symlink at *path* is
    replaced like anything else, not followed: to repoint one, use symlink().
    """
    return _AtomicDir(_fsdecode(path, "path"), overwrite, durable)


class _AtomicDir:
    """atomic_dir()'s steps: make the staging directory, then publish or remove it."""

    def __init__(self, path: str, overwrite: bool, durable: bool) -> None:
        # Absolute, so that a chdir in the block changes nothing, and without
        # a trailing slash, which would put the staging directory inside path.
        self._path, self._overwrite, self._durable = os.path.abspath(path), overwrite, durable
        self._staging = ""

    def __enter__(self) -> "Path":
        from pathlib import Path

        _bind_early(self._path)
        _, self._staging = _unique_name(self._path, os.mkdir)
        return Path(self._staging)

    def __exit__(
        self,
        exc_type: "type[BaseException] | None",
        exc: "BaseException | None",
        traceback: "TracebackType | None",
    ) -> None:
        if exc_type is not None:
            _remove_staging(self._staging)
            return
        try:
            if self._durable:
                _fsync_tree(self._staging)
            old_is_at_staging = self._publish()
        except BaseException:
            _remove_staging(self._staging)
            raise
        try:
            if self._durable:
                _fsync_path(os.path.dirname(self._path))
        except OSError as e:
            raise _not_durable(self._path, e) from e
        finally:
            if old_is_at_staging:
                _remove_old(self._staging, self._path)

    def _publish(self) -> bool:
        try:
            if self._overwrite:
                return _put(self._staging, self._path)
            rename_noreplace(self._staging, self._path)
            return False
        except OSError as e:
            raise _naming(self._path, e) from e


def _fsync_tree(directory: str) -> None:
    """fsync every regular file and directory in *directory*, then itself."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _fsync_tree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                _fsync_path(entry.path)
    _fsync_path(directory)


def _remove_staging(path: str) -> None:
    """Remove a staging tree, whatever modes the block gave its directories."""
    import shutil

    try:
        shutil.rmtree(path)
    except PermissionError:
        os.chmod(path, 0o700)
        for directory, subdirectories, _ in os.walk(path):
            for name in subdirectories:
                if not os.path.islink(os.path.join(directory, name)):
                    os.chmod(os.path.join(directory, name), 0o700)
        shutil.rmtree(path)


def symlink(target: "StrOrBytesPath", link_path: "StrOrBytesPath", *, overwrite: bool = True) -> None:
    """Make *link_path* a symlink to *target*, atomically repointing an old one.

    The new link is made under a hidden name beside *link_path* and renamed
    over it, so readers find the old link or the new one, never none. A file
    at *link_path* is replaced too; a directory is not (IsADirectoryError).
    overwrite=False is os.symlink(): FileExistsError if *link_path* exists.
    """
    target, link_path = _fsdecode(target, "target"), _fsdecode(link_path, "link_path")
    if not overwrite:
        os.symlink(target, link_path)
        return
    _bind_early(link_path)
    _, temp = _unique_name(link_path, lambda temp: os.symlink(target, temp))
    try:
        _renameat2(temp, link_path, 0)
    except OSError as e:
        os.unlink(temp)
        raise _naming(link_path, e) from e
    except BaseException:
        os.unlink(temp)
        raise


# The binding: every public function reaches the kernel through _renameat2().
# The C function is looked up on the first call and cached in _binding, so that
# importing this module never loads ctypes.

_binding: "_Binding | None" = None
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
_C_INT_MIN, _C_INT_MAX = -(2**31), 2**31 - 1


def _renameat2(
    first: "StrOrBytesPath",
    second: "StrOrBytesPath",
    flags: int,
    first_dir_fd: "int | None" = None,
    second_dir_fd: "int | None" = None,
    names: "tuple[str, str]" = ("first", "second"),
) -> None:
    """Rename *first* to *second* with Linux *flags*; raise OSError naming both.

    *names* are the caller's parameter names, for TypeError and ValueError.
    """
    # str, the common case, is encoded inline: two calls to _fsencode would
    # cost 5% of the system call itself.
    old = first.encode(_FS_ENCODING, _FS_ERRORS) if type(first) is str else _fsencode(first, names[0])
    new = second.encode(_FS_ENCODING, _FS_ERRORS) if type(second) is str else _fsencode(second, names[1])
    if 0 in old or 0 in new:  # seven times faster than b"\0" in old
        _fsencode(first, names[0])  # raises ValueError naming the path
        _fsencode(second, names[1])
    if first_dir_fd is not None or second_dir_fd is not None:
        _check_dir_fd(first_dir_fd, names[0])
        _check_dir_fd(second_dir_fd, names[1])
    call, at_fdcwd = _binding or _bind(first, second)
    if call(
        at_fdcwd if first_dir_fd is None else first_dir_fd,
        old,
        at_fdcwd if second_dir_fd is None else second_dir_fd,
        new,
        flags,
    ):
        raise _rename_error(flags, first, second)


def _fsencode(path: "StrOrBytesPath", name: str) -> bytes:
    """*path* as the kernel takes it; TypeError or ValueError naming *name*."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} should be str, bytes or os.PathLike, not {type(path).__name__}")
    path = os.fspath(path)
    # Exact bytes, so that no subclass's __contains__ can hide a NUL from the
    # check: ctypes would cut the path there.
    encoded = str.encode(path, _FS_ENCODING, _FS_ERRORS) if isinstance(path, str) else bytes(path)
    if 0 in encoded:
        raise ValueError(f"{name}: embedded null byte")
    return encoded


def _fsdecode(path: "StrOrBytesPath", name: str) -> str:
    return os.fsdecode(_fsencode(path, name))


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
    errno.EXDEV: "the two paths are on different filesystems",
    errno.ENOSYS: "the kernel has no renameat2; Linux 3.15 or later is needed",
    errno.ENOTSUP: "this filesystem does not support {operation}",
    errno.EINVAL: (
        "{operation} is not supported by this filesystem (NFS, FUSE, 9p, ...) or kernel"
        " (Linux before 3.15), or a directory would move inside itself"
    ),
}
_OPERATIONS = {
    RENAME_EXCHANGE: "exchanging two names",
    RENAME_NOREPLACE: "renaming without replacing",
}


def _rename_error(flags: int, first: "StrOrBytesPath", second: "StrOrBytesPath") -> OSError:
    import ctypes  # loaded by _bind() already

    err = ctypes.get_errno()
    message = os.strerror(err)
    explanation = _EXPLANATIONS.get(err)
    if explanation and flags in _OPERATIONS:
        message += f" ({explanation.format(operation=_OPERATIONS[flags])})"
    elif err == errno.EINVAL:
        message += " (a directory would move inside itself)"
    return OSError(err, message, os.fspath(first), None, os.fspath(second))  # as os.rename does


def _bind(first: "StrOrBytesPath | None" = None, second: "StrOrBytesPath | None" = None) -> "_Binding":
    """Find the platform's C rename function with flags and cache it.

    *first* and *second* name the paths in the error on other platforms.
    """
    global _binding
    binder = _BINDERS.get(sys.platform)
    if binder is None:
        message = f"atomicswap needs Linux or macOS to rename atomically; this is {sys.platform!r}"
        first, second = (None if path is None else os.fspath(path) for path in (first, second))
        raise OSError(errno.ENOTSUP, message, first, None, second)
    import ctypes

    _binding = binder(ctypes)
    return _binding


def _bind_early(path: str) -> None:
    """Bind before making a temporary that a rename will move to *path*.

    The first binding imports ctypes, milliseconds during which a crash
    would leave the temporary behind if they fell just before the rename.
    """
    if _binding is None:
        _bind(path)


def _open_libc(ctypes: "Any", name: "str | None") -> "Any":
    # use_errno makes ctypes save errno right after the call, per thread, for
    # get_errno() in _rename_error(); CDLL (not PyDLL) releases the GIL.
    return ctypes.CDLL(name, use_errno=True)


# Linux AT_FDCWD is -100; the number of the renameat2 system call per
# (architecture, userland ABI), from the kernel's syscall tables
# (arch/*/entry/syscalls/*.tbl, arch/*/kernel/syscalls/*.tbl, asm-generic/unistd.h).
_LINUX_AT_FDCWD = -100
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


def _bind_linux(ctypes: "Any") -> "_Binding":
    libc = _open_libc(ctypes, None)  # the C library Python runs on: glibc, musl, ...
    try:
        renameat2 = libc["renameat2"]  # glibc 2.28 and later
    except AttributeError:
        return _bind_syscall(ctypes, libc), _LINUX_AT_FDCWD
    # No argtypes: ctypes' default conversions (int to int, bytes to char *) are
    # exactly renameat2's prototype, and _renameat2 has already checked types and
    # ranges; argtypes would check them again at 70 ns an argument, 8% of the call.
    renameat2.restype = ctypes.c_int
    return renameat2, _LINUX_AT_FDCWD


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


def _bind_darwin(ctypes: "Any") -> "_Binding":
    renameatx_np = _open_libc(ctypes, "/usr/lib/libSystem.B.dylib")["renameatx_np"]
    renameatx_np.restype = ctypes.c_int  # no argtypes, as for Linux renameat2
    darwin_flags = {0: 0, RENAME_EXCHANGE: RENAME_SWAP, RENAME_NOREPLACE: RENAME_EXCL}

    def call(old_fd: int, old: bytes, new_fd: int, new: bytes, flags: int) -> int:
        return renameatx_np(old_fd, old, new_fd, new, darwin_flags[flags])  # type: ignore[no-any-return]

    return call, -2  # macOS AT_FDCWD


# sys.platform: how to bind there. Android is Linux, with Bionic as its libc.
_BINDERS = {"linux": _bind_linux, "android": _bind_linux, "darwin": _bind_darwin}


# ---- The command line ----
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
