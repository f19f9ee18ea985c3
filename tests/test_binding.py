"""How atomicswap finds the kernel: lazily, through libc or syscall(), per platform."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_python, write

import atomicswap
from atomicswap import swap


class LibcWithoutRenameat2(ctypes.CDLL):
    """This process's real C library with its renameat2 symbol hidden, as on
    glibc before 2.28 and musl before 1.2.5; records the symbols looked up."""

    def __init__(self) -> None:
        super().__init__(None, use_errno=True)
        self.looked_up: list[str] = []

    def __getitem__(self, name: str) -> Any:
        self.looked_up.append(name)
        if name == "renameat2":
            raise AttributeError(name)
        return super().__getitem__(name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux system call")
def test_syscall_fallback_swaps_for_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_binding: None
) -> None:
    libc = LibcWithoutRenameat2()
    monkeypatch.setattr(atomicswap, "_open_libc", lambda ctypes, name: libc)
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    swap(a, b)

    assert libc.looked_up == ["renameat2", "syscall"]
    assert (a.read_text(), b.read_text()) == ("bravo", "alpha")
    # syscall() reads its arguments as longs: ctypes must pass them so.
    bound: Any = atomicswap._binding[0]  # type: ignore[index]
    assert bound.args == (
        atomicswap._syscall_number(
            os.uname().machine, ctypes.sizeof(ctypes.c_void_p) * 8, sys.implementation._multiarch
        ),
    )
    # PyPy's ctypes keeps argtypes as a list, CPython's as a tuple.
    assert tuple(bound.func.argtypes) == (
        ctypes.c_long,
        ctypes.c_long,
        ctypes.c_char_p,
        ctypes.c_long,
        ctypes.c_char_p,
        ctypes.c_long,
    )
    assert bound.func.restype is ctypes.c_long
    with pytest.raises(FileNotFoundError) as raised:
        swap(a, tmp_path / "missing")
    assert raised.value.filename2 == str(tmp_path / "missing")


@pytest.mark.parametrize(
    ("machine", "pointer_bits", "multiarch", "number"),
    [
        ("x86_64", 64, "x86_64-linux-gnu", 316),
        ("x86_64", 32, "i386-linux-gnu", 353),  # 32-bit Python on a 64-bit kernel
        ("i686", 32, "", 353),
        ("x86_64", 32, "x86_64-linux-gnux32", 0x40000000 + 316),
        ("x86_64", 32, "x86_64-linux-muslx32", 0x40000000 + 316),
        ("aarch64", 64, "aarch64-linux-gnu", 276),
        ("aarch64", 32, "arm-linux-gnueabihf", 382),
        ("armv7l", 32, "arm-linux-gnueabihf", 382),
        ("riscv64", 64, "riscv64-linux-gnu", 276),
        ("loongarch64", 64, "loongarch64-linux-gnu", 276),
        ("ppc64le", 64, "powerpc64le-linux-gnu", 357),
        ("ppc", 32, "powerpc-linux-gnu", 357),
        ("s390x", 64, "s390x-linux-gnu", 347),
        ("mips64", 64, "mips64el-linux-gnuabi64", 5311),
        ("mips64", 32, "mips64el-linux-gnuabin32", 6315),
        ("mips64", 32, "mips64el-linux-gnuabin32sf", 6315),
        ("mips64", 32, "mipsel-linux-gnu", 4351),
        ("mips", 32, "", 4351),
        ("sparc64", 64, "sparc64-linux-gnu", 345),
    ],
)
def test_syscall_number_follows_the_userland_abi(
    machine: str, pointer_bits: int, multiarch: str, number: int
) -> None:
    assert atomicswap._syscall_number(machine, pointer_bits, multiarch) == number


def test_syscall_number_for_an_unknown_machine_raises_enosys() -> None:
    with pytest.raises(OSError) as raised:
        atomicswap._syscall_number("vax", 32, "")
    assert raised.value.errno == errno.ENOSYS
    assert "vax" in str(raised.value)


def test_the_binding_is_made_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")
    swap(a, b)

    def no_second_binding(ctypes: object, name: object) -> None:
        raise AssertionError("bound a second time")

    monkeypatch.setattr(atomicswap, "_open_libc", no_second_binding)
    swap(a, b)
    assert (a.read_text(), b.read_text()) == ("alpha", "bravo")


class FakeLibSystem:
    """Stands in for macOS libSystem, which cannot be loaded here: records the
    library opened, the symbol looked up, the restype set and every call's
    arguments, and fails a call with *fail_errno* when that is set."""

    def __init__(self, fail_errno: int = 0) -> None:
        self.fail_errno = fail_errno
        self.opened: list[object] = []
        self.symbols: list[str] = []
        self.calls: list[tuple[object, ...]] = []
        self.restype: object = None
        self.argtypes: object = None

    def open(self, ctypes: object, name: object) -> FakeLibSystem:
        self.opened.append(name)
        return self

    def __getitem__(self, name: str) -> FakeLibSystem:
        self.symbols.append(name)
        return self

    def __call__(self, *args: object) -> int:
        self.calls.append(args)
        if self.fail_errno:
            ctypes.set_errno(self.fail_errno)
            return -1
        return 0


@pytest.fixture
def libsystem(monkeypatch: pytest.MonkeyPatch, fresh_binding: None) -> FakeLibSystem:
    fake = FakeLibSystem()
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(atomicswap, "_open_libc", fake.open)
    return fake


def test_macos_swap_calls_renameatx_np_with_rename_swap(libsystem: FakeLibSystem) -> None:
    """Argument marshalling only, through a fake libSystem: macOS is not here."""
    swap("a", b"b")
    swap("c", "d", first_dir_fd=3, second_dir_fd=4)

    assert libsystem.opened == ["/usr/lib/libSystem.B.dylib"]
    assert libsystem.symbols == ["renameatx_np"]
    assert libsystem.restype is ctypes.c_int
    assert libsystem.argtypes is None
    # AT_FDCWD is -2 on macOS; RENAME_SWAP is 0x2.
    assert libsystem.calls == [(-2, b"a", -2, b"b", 0x2), (3, b"c", 4, b"d", 0x2)]


def test_macos_error_becomes_oserror_naming_both_paths(libsystem: FakeLibSystem) -> None:
    """Errno handling only, through a fake libSystem that fails with ENOENT."""
    libsystem.fail_errno = errno.ENOENT

    with pytest.raises(FileNotFoundError) as raised:
        swap("a", "b")

    assert (raised.value.errno, raised.value.filename, raised.value.filename2) == (errno.ENOENT, "a", "b")


@pytest.mark.parametrize("platform", ["openbsd7", "netbsd10", "cygwin", "sunos5"])
def test_a_platform_without_an_exchange_raises_enotsup_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_binding: None, platform: str
) -> None:
    """No C library is opened, and nothing on disk changes."""
    opened: list[object] = []
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(atomicswap, "_open_libc", lambda ctypes, name: opened.append(name))
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    with pytest.raises(OSError) as raised:
        swap(a, b)

    assert raised.value.errno == errno.ENOTSUP
    assert platform in str(raised.value)
    assert (raised.value.filename, raised.value.filename2) == (str(a), str(b))
    assert opened == []
    assert (a.read_text(), b.read_text()) == ("alpha", "bravo")


def test_a_platform_without_ctypes_gets_enotsup_not_an_import_error() -> None:
    """WASI and Emscripten builds have no ctypes."""
    result = run_python(
        "import errno, sys\n"
        "sys.modules['ctypes'] = None\n"
        "sys.platform = 'wasi'\n"
        "import atomicswap\n"
        "try:\n"
        "    atomicswap.swap('a', 'b')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno])\n"
    )
    assert result.stdout == "ENOTSUP\n" or result.stdout == "EOPNOTSUPP\n", result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Android is Linux")
def test_android_binds_as_linux_and_swaps_for_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_binding: None
) -> None:
    """Python 3.13 on Android reports sys.platform 'android'; its kernel is Linux."""
    monkeypatch.setattr(sys, "platform", "android")
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    swap(a, b)

    assert (a.read_text(), b.read_text()) == ("bravo", "alpha")


def test_import_stays_cheap() -> None:
    """import atomicswap loads none of the modules that cost milliseconds.

    -S keeps site's .pth hooks from loading any of them first.
    """
    result = run_python(
        "import sys\n"
        "before = set(sys.modules)\n"
        "import atomicswap\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n",
        flags=("-S",),
    )
    loaded = set(result.stdout.split())
    assert "atomicswap" in loaded, result.stderr
    heavy = {"ctypes", "platform", "typing", "pathlib", "contextlib", "tempfile", "shutil", "argparse"}
    assert loaded & heavy == set()


def test_the_file_alone_works_as_a_vendored_module(tmp_path: Path) -> None:
    shutil.copy(ROOT / "atomicswap" / "__init__.py", tmp_path / "atomicswap.py")
    write(tmp_path / "a", "alpha")
    write(tmp_path / "b", "bravo")

    result = run_python(
        "import sys\n"
        "sys.path[:] = ['.'] + [p for p in sys.path if 'site-packages' not in p]\n"
        "sys.modules.pop('atomicswap', None)\n"
        "import atomicswap\n"
        "atomicswap.swap('a', 'b')\n"
        "print(atomicswap.__file__)\n",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == (tmp_path / "atomicswap.py").resolve()
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("bravo", "alpha")


def test_the_vendored_file_runs_as_the_command_line(tmp_path: Path) -> None:
    shutil.copy(ROOT / "atomicswap" / "__init__.py", tmp_path / "atomicswap.py")
    write(tmp_path / "a", "alpha")
    write(tmp_path / "b", "bravo")

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        # -m puts the current directory first on sys.path: the vendored file.
        return subprocess.run(
            [sys.executable, "-m", "atomicswap", *args], cwd=tmp_path, capture_output=True, text=True
        )

    assert command("a", "b").returncode == 0
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("bravo", "alpha")
    failed = command("a", "missing")
    assert (failed.returncode, failed.stderr.startswith("atomicswap: ")) == (1, True)
    assert command().returncode == 2
