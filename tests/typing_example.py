# pyright: strict, reportUnnecessaryTypeIgnoreComment=true
"""What a type checker makes of atomicswap's API: checked by mypy --strict
(in .ci/run, over tests/), not run.

Every line marked "type: ignore[...]" is a mistake the types must catch:
mypy --strict also reports an ignore that catches nothing, so if one of
these mistakes stopped being an error, the check would fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, TextIO

from atomicswap import atomic_write, write_bytes, write_text


def text_modes_give_a_text_file(path: Path) -> None:
    with atomic_write(path) as f:
        text: TextIO = f
        text.write("settings\n")
    with atomic_write(path, "a", encoding="utf-8") as f:
        f.write("appended\n")
    with atomic_write(path, "r+") as f:
        f.write(f.read().upper())
    with atomic_write(path, "w") as f:
        f.write(b"bytes on a text file")  # type: ignore[arg-type]


def binary_modes_give_a_binary_file(path: Path) -> None:
    with atomic_write(path, "wb") as f:
        binary: BinaryIO = f
        binary.write(b"\x00\x01")
    with atomic_write(path, "ab+") as f:
        f.write(f.read())
    with atomic_write(path, "rb+") as f:
        f.write("text on a binary file")  # type: ignore[call-overload]


def modes_that_do_not_write_are_errors(path: Path) -> None:
    atomic_write(path, "r")  # type: ignore[call-overload]
    atomic_write(path, "x")  # type: ignore[call-overload]
    atomic_write(path, "wb", encoding="utf-8")  # type: ignore[call-overload]


def one_shot_writes(path: Path) -> int:
    written: int = write_bytes(path, memoryview(b"data")) + write_text(path, "text", encoding="utf-8")
    write_bytes(path, "text")  # type: ignore[arg-type]
    write_text(path, b"bytes")  # type: ignore[arg-type]
    return written


def only_public_names_exist() -> None:
    from atomicswap import StrOrBytesPath  # type: ignore[attr-defined]  # noqa: F401
