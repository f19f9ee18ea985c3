"""Windows' os module, simulated on Linux, for atomicswap's Windows path.

Windows is not here, so its path is tested by simulation: simulate() is
called in a fresh interpreter before atomicswap is imported, and makes that
interpreter look like CPython on Windows to atomicswap:

- sys.platform is "win32"; ctypes and fcntl cannot be imported, so any use of
  either fails the test (the Windows path must use the standard library's os
  alone, as CPython ships it for Windows);
- os lacks what Windows' os lacks: O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC,
  O_NONBLOCK, O_PATH, O_TMPFILE, fchown and fchmod (before Python 3.13), and
  dir_fd support: any dir_fd other than None raises NotImplementedError, and
  os.supports_dir_fd is empty; it gains O_BINARY and O_NOINHERIT;
- a directory cannot be opened (PermissionError), as on Windows;
- os.rename never replaces (FileExistsError), as MoveFileEx without
  MOVEFILE_REPLACE_EXISTING; os.replace cannot put anything over a directory
  nor move a directory over anything (PermissionError, as Windows' "Access is
  denied"); and a path listed in LOCKED, as if another process held it open
  without delete sharing, cannot be replaced (PermissionError).

The files themselves are real, on the Linux filesystem under test. What this
cannot show is Windows' own behaviour beyond these rules: README says so.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from typing import Any

# Paths that a simulated other process holds open without FILE_SHARE_DELETE.
LOCKED: set[str] = set()


def _no_dir_fd(function: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for key in ("dir_fd", "src_dir_fd", "dst_dir_fd"):
            if kwargs.pop(key, None) is not None:
                raise NotImplementedError(f"{key} unavailable on this platform")
        return function(*args, **kwargs)

    return wrapper


def _is_directory(path: Any) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def simulate() -> None:
    # pathlib (before 3.10) keeps os.open as a class attribute: a function put
    # there later would be bound as a method. Windows' interpreter has it loaded.
    import pathlib  # noqa: F401

    real = {name: getattr(os, name) for name in ("open", "rename", "replace", "mkdir", "unlink", "rmdir")}
    real.update(stat=os.stat, symlink=os.symlink, link=os.link, chmod=os.chmod)
    cloexec = os.O_CLOEXEC

    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
        if dir_fd is not None:
            raise NotImplementedError("dir_fd unavailable on this platform")
        if _is_directory(path):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return int(real["open"](path, flags | cloexec, mode))

    def rename(src: Any, dst: Any, **kwargs: Any) -> None:
        if os.path.lexists(dst):
            raise FileExistsError(
                errno.EEXIST, "Cannot create a file when that file already exists", src, None, dst
            )
        _no_dir_fd(real["rename"])(src, dst, **kwargs)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        moving_a_directory = _is_directory(src) and os.path.lexists(dst)
        locked = os.path.abspath(os.fsdecode(dst)) in {os.path.abspath(path) for path in LOCKED}
        if moving_a_directory or _is_directory(dst) or locked:
            raise PermissionError(errno.EACCES, "Access is denied", src, None, dst)
        _no_dir_fd(real["replace"])(src, dst, **kwargs)

    sys.platform = "win32"
    sys.modules["ctypes"] = None  # type: ignore[assignment]
    sys.modules["fcntl"] = None  # type: ignore[assignment]
    for name in ("O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC", "O_NONBLOCK", "O_PATH", "O_TMPFILE", "fchown"):
        if hasattr(os, name):
            delattr(os, name)
    if sys.version_info < (3, 13):
        del os.fchmod
    os.O_BINARY = 0o100000  # type: ignore[attr-defined]  # O_LARGEFILE here: harmless
    os.O_NOINHERIT = cloexec  # type: ignore[attr-defined]
    os.open = open_
    os.rename = rename
    os.replace = replace
    for name in ("mkdir", "unlink", "rmdir", "stat", "symlink", "link", "chmod"):
        setattr(os, name, _no_dir_fd(real[name]))
    os.supports_dir_fd = set()
