"""Exchange two paths atomically.

swap(a, b) exchanges two names on one filesystem in a single kernel operation
(Linux renameat2 with RENAME_EXCHANGE, macOS renameatx_np with RENAME_SWAP):
either both names are exchanged or nothing changes, and no process ever sees
either name missing. Other platforms raise OSError(ENOTSUP); nothing falls back
to a non-atomic imitation.
"""

import errno
import os
import sys

__all__ = ["exchange", "main", "swap"]
__version__ = "0.3.0"

# Annotations are quoted, so typing is needed only by type checkers: importing
# it, or __future__ for unquoted annotations, would cost more than this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
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
    call, at_fdcwd = _binding or _bind()
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
    if isinstance(path, str):
        path = path.encode(_FS_ENCODING, _FS_ERRORS)
    elif not isinstance(path, bytes):
        try:
            path = os.fsencode(path)
        except TypeError:
            kind = type(path).__name__
            raise TypeError(f"{name} should be str, bytes or os.PathLike, not {kind}") from None
    if 0 in path:
        raise ValueError(f"{name}: embedded null byte")
    return path


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


def _bind() -> "_Binding":
    """Find the platform's C rename function with flags and cache it."""
    global _binding
    import ctypes

    if sys.platform.startswith("linux"):
        _binding = _bind_linux(ctypes)
    elif sys.platform == "darwin":
        _binding = _bind_darwin(ctypes)
    else:
        raise OSError(
            errno.ENOTSUP,
            f"atomicswap needs Linux or macOS to rename atomically; this is {sys.platform!r}",
        )
    return _binding


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


def _bind_linux(ctypes: "Any") -> "tuple[Callable[[int, bytes, int, bytes, int], int], int]":
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
    # syscall() is variadic and reads every argument as a long: without argtypes
    # the number and the ints would be passed as 32-bit ints.
    c_int, c_char_p = ctypes.c_int, ctypes.c_char_p
    syscall.argtypes = (ctypes.c_long, c_int, c_char_p, c_int, c_char_p, ctypes.c_uint)
    syscall.restype = ctypes.c_long
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


def _bind_darwin(ctypes: "Any") -> "tuple[Callable[[int, bytes, int, bytes, int], int], int]":
    renameatx_np = _open_libc(ctypes, "/usr/lib/libSystem.B.dylib")["renameatx_np"]
    renameatx_np.restype = ctypes.c_int  # no argtypes, as for Linux renameat2
    darwin_flags = {0: 0, RENAME_EXCHANGE: RENAME_SWAP, RENAME_NOREPLACE: RENAME_EXCL}

    def call(old_fd: int, old: bytes, new_fd: int, new: bytes, flags: int) -> int:
        return renameatx_np(old_fd, old, new_fd, new, darwin_flags[flags])  # type: ignore[no-any-return]

    return call, -2  # macOS AT_FDCWD


def main(argv: "list[str] | None" = None) -> int:
    """The command line: ``atomicswap PATH1 PATH2`` exchanges the two paths.

    Like util-linux exch: prints nothing and returns 0 on success; on failure
    prints one line naming the paths to stderr and returns 1. Usage errors
    exit with status 2.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="atomicswap",
        description="Exchange two paths on one filesystem atomically.",
    )
    parser.add_argument("path1")
    parser.add_argument("path2")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    try:
        swap(args.path1, args.path2)
    except OSError as e:
        print(f"atomicswap: {e}", file=sys.stderr)
        return 1
    return 0
