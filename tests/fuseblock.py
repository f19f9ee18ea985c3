"""A disk that remembers the order of everything written to it: a FUSE server
for the power-cut test.

    python tests/fuseblock.py MOUNTPOINT IMAGE LOG

serves two files at MOUNTPOINT:

- ``disk.img``, whose content is IMAGE (a sparse file, on tmpfs). A loop
  device over ``disk.img`` is the disk a filesystem under test lives on.
- ``marks``, a file the program under test writes lines to ("begin 3",
  "end 3"), so that its progress and its disk traffic fall into one order.

The server speaks the FUSE kernel protocol on /dev/fuse itself (standard
library only, no libfuse) and mounts with mount(2) through ctypes, as
fusermount would. It handles one request at a time, so the order in which it
answers them is the order in which they completed. Every WRITE to the disk is
applied to IMAGE and appended to LOG with its offset and data; every FSYNC of
the disk is logged as a flush barrier; every FALLOCATE (the loop device's
discard and write-zeroes) is applied and logged as zeros written; every WRITE
to ``marks`` is logged as a mark. Nothing else is logged.

Why FSYNC is a flush: a loop device reports a volatile write cache without
FUA, so the block layer turns a filesystem's cache flush, and the flush
around every FUA write, into a flush request, which the loop driver serves
with vfs_fsync() of its backing file, here a FUSE_FSYNC. FUSE's writeback
cache is not enabled (FUSE_WRITEBACK_CACHE is not in the INIT reply), so
every write(2) to ``disk.img`` reaches the server before it returns. The
test suite checks both (test_powercut.py), rather than assuming them.

A write answered before a flush is on the disk once that flush is answered;
one answered after the last flush may or may not be. So the disk after a
power cut at any moment is IMAGE as it was when the server started, plus
every write logged before some flush, plus any subset of the writes logged
after it: read_log() gives the harness what it needs to build such states.

LOG is a sequence of records, each a header struct.pack("<cQI", kind,
offset, length) followed, for kinds W and M, by *length* bytes: W (data
written at offset), Z (length zeros at offset), F (a flush), M (a mark).

The server prints "ready" once mounted, and exits when the kernel ends the
session (on umount, or an abort through /sys/fs/fuse/connections).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
import sys
from typing import NamedTuple

# <linux/fuse.h>: opcodes.
LOOKUP, FORGET, GETATTR, SETATTR = 1, 2, 3, 4
OPEN, READ, WRITE, STATFS, RELEASE, FSYNC = 14, 15, 16, 17, 18, 20
FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 25, 26, 27, 28, 29, 30
INTERRUPT, DESTROY, BATCH_FORGET, FALLOCATE = 36, 38, 42, 43

# <linux/fuse.h>: the structures this server reads and writes.
IN_HEADER = struct.Struct("<IIQQIIIHH")  # len, opcode, unique, nodeid, uid, gid, pid, extlen, pad
OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
INIT_IN = struct.Struct("<IIII")  # major, minor, max_readahead, flags
# major, minor, max_readahead, flags, max_background, congestion_threshold,
# max_write, time_gran, max_pages, map_alignment, flags2, max_stack_depth, unused[6]
INIT_OUT = struct.Struct("<IIIIHHIIHHII24x")
# ino, size, blocks, atime, mtime, ctime, their nsecs, mode, nlink, uid, gid, rdev, blksize, flags
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ATTR_OUT = struct.Struct("<QII")  # attr_valid, attr_valid_nsec, dummy; then ATTR
ENTRY_OUT = struct.Struct("<QQQQII")  # nodeid, generation, entry_valid, attr_valid, nsecs; then ATTR
OPEN_OUT = struct.Struct("<QII")  # fh, open_flags, padding
READ_IN = struct.Struct("<QQII")  # fh, offset, size, read_flags (then lock_owner, flags)
WRITE_IN = struct.Struct("<QQIIQII")  # fh, offset, size, write_flags, lock_owner, flags, padding
WRITE_OUT = struct.Struct("<II")
FALLOCATE_IN = struct.Struct("<QQQII")  # fh, offset, length, mode, padding
KSTATFS = struct.Struct("<QQQQQIII28x")  # blocks bfree bavail files ffree bsize namelen frsize
DIRENT = struct.Struct("<QQII")  # ino, off, namelen, type

MAX_WRITE = 128 << 10  # the kernel's default max_pages (32) allows this much per WRITE
ROOT_NODE, DISK_NODE, MARKS_NODE = 1, 2, 3
NAMES = {b"disk.img": DISK_NODE, b"marks": MARKS_NODE}

RECORD = struct.Struct("<cQI")  # kind, offset, length

# <linux/falloc.h>
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x1, 0x2, 0x10


class Record(NamedTuple):
    kind: str  # "W" data written, "Z" zeros written, "F" a flush, "M" a mark
    offset: int
    data: bytes  # W: the data; M: the mark's text; Z: empty (see length)
    length: int


def read_log(path: str) -> list[Record]:
    """The records of a LOG this server wrote, in the order it answered them."""
    records = []
    with open(path, "rb") as f:
        log = f.read()
    position = 0
    while position < len(log):  # each record advances position by at least its header
        kind, offset, length = RECORD.unpack_from(log, position)
        position += RECORD.size
        data = b""
        if kind in (b"W", b"M"):
            data = log[position : position + length]
            position += length
        records.append(Record(kind.decode(), offset, data, length))
    return records


class Server:
    """One FUSE session: answers requests until the kernel ends it."""

    def __init__(self, device: int, image: int, log: int) -> None:
        self.device, self.image, self.log = device, image, log
        self.disk_size = os.fstat(image).st_size
        self.marks_size = 0

    def serve(self) -> None:
        while True:  # ends when the kernel ends the session: ENODEV, or DESTROY
            try:
                request = os.read(self.device, MAX_WRITE + 4096)
            except OSError as e:
                if e.errno == errno.ENODEV:
                    return
                if e.errno in (errno.EINTR, errno.ENOENT):  # ENOENT: an interrupted request
                    continue
                raise
            length, opcode, unique, node, *_ = IN_HEADER.unpack_from(request)
            body = request[IN_HEADER.size : length]
            if opcode == DESTROY:
                self.reply(unique, b"")
                return
            if opcode in (FORGET, BATCH_FORGET, INTERRUPT):
                continue  # no reply expected (INTERRUPT: every request is answered at once anyway)
            try:
                answer = self.answer(opcode, node, body)
            except OSError as e:
                self.reply(unique, b"", e.errno or errno.EIO)
            else:
                self.reply(unique, answer)

    def reply(self, unique: int, payload: bytes, error: int = 0) -> None:
        try:
            os.write(self.device, OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error, unique) + payload)
        except FileNotFoundError:
            pass  # the request was interrupted and is gone

    def answer(self, opcode: int, node: int, body: bytes) -> bytes:
        if opcode == INIT:
            _, _, max_readahead, _ = INIT_IN.unpack_from(body)
            # No flags at all: in particular not FUSE_WRITEBACK_CACHE.
            return INIT_OUT.pack(7, 31, max_readahead, 0, 16, 12, MAX_WRITE, 1, 32, 0, 0, 0)
        if opcode == LOOKUP:
            child = NAMES.get(body.rstrip(b"\0"))
            if node != ROOT_NODE or child is None:
                raise OSError(errno.ENOENT, "no such file")
            return ENTRY_OUT.pack(child, 0, 3600, 3600, 0, 0) + self.attr(child)
        if opcode in (GETATTR, SETATTR):  # SETATTR: sizes and times stay as they are
            return ATTR_OUT.pack(3600, 0, 0) + self.attr(node)
        if opcode in (OPEN, OPENDIR):
            return OPEN_OUT.pack(node, 0, 0)
        if opcode == READ:
            _, offset, size, _ = READ_IN.unpack_from(body)
            if node == DISK_NODE:
                return os.pread(self.image, min(size, max(self.disk_size - offset, 0)), offset)
            return b""  # marks are written, never read back
        if opcode == WRITE:
            return self.write(node, body)
        if opcode == FSYNC:
            if node == DISK_NODE:
                os.fsync(self.image)  # tmpfs: instant; the log is what matters
                self.record(b"F", 0, b"")
            return b""
        if opcode == FALLOCATE:
            return self.fallocate(node, body)
        if opcode == READDIR:
            return self.readdir(node, body)
        if opcode == STATFS:
            return KSTATFS.pack(0, 0, 0, 3, 0, 4096, 255, 4096)
        if opcode in (RELEASE, RELEASEDIR, FLUSH, FSYNCDIR):
            return b""
        raise OSError(errno.ENOSYS, "not implemented")

    def attr(self, node: int) -> bytes:
        if node == ROOT_NODE:
            mode, size, nlink = stat.S_IFDIR | 0o755, 0, 2
        elif node == DISK_NODE:
            mode, size, nlink = stat.S_IFREG | 0o600, self.disk_size, 1
        elif node == MARKS_NODE:
            mode, size, nlink = stat.S_IFREG | 0o600, self.marks_size, 1
        else:
            raise OSError(errno.ENOENT, "no such node")
        return ATTR.pack(node, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0, mode, nlink, 0, 0, 0, 4096, 0)

    def write(self, node: int, body: bytes) -> bytes:
        _, offset, size, *_ = WRITE_IN.unpack_from(body)
        data = body[WRITE_IN.size : WRITE_IN.size + size]
        if node == DISK_NODE:
            if offset + size > self.disk_size:
                raise OSError(errno.ENOSPC, "past the end of the disk")
            os.pwrite(self.image, data, offset)
            self.record(b"W", offset, data)
        elif node == MARKS_NODE:
            self.marks_size = max(self.marks_size, offset + size)
            self.record(b"M", offset, data)
        else:
            raise OSError(errno.EBADF, "not a file")
        return WRITE_OUT.pack(size, 0)

    def fallocate(self, node: int, body: bytes) -> bytes:
        _, offset, length, mode, _ = FALLOCATE_IN.unpack_from(body)
        if node != DISK_NODE or offset + length > self.disk_size:
            raise OSError(errno.EOPNOTSUPP, "only within the disk")
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            # Discard and write-zeroes both leave zeros here, a thing a real disk may do.
            punch_hole(self.image, offset, length)
            self.record(b"Z", offset, b"", length)
        return b""

    def readdir(self, node: int, body: bytes) -> bytes:
        _, offset, size, _ = READ_IN.unpack_from(body)
        entries = [(b".", ROOT_NODE, 4), (b"..", ROOT_NODE, 4)] + [(n, i, 8) for n, i in NAMES.items()]
        out = b""
        for index, (name, ino, kind) in enumerate(entries[offset:], start=offset + 1):
            entry = DIRENT.pack(ino, index, len(name), kind) + name
            entry += b"\0" * (-len(entry) % 8)
            if len(out) + len(entry) > size:
                break
            out += entry
        return out

    def record(self, kind: bytes, offset: int, data: bytes, length: int | None = None) -> None:
        size = len(data) if length is None else length
        os.write(self.log, RECORD.pack(kind, offset, size) + data)


_libc = ctypes.CDLL(None, use_errno=True)


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Zeros at *offset*, without allocating them."""
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    if _libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def mount(device: int, point: str) -> None:
    """Mount the FUSE session on *device* at *point*, as fusermount does."""
    options = f"fd={device},rootmode=40000,user_id=0,group_id=0,allow_other"
    flags = 0x2 | 0x4  # MS_NOSUID | MS_NODEV
    if _libc.mount(b"fuseblock", os.fsencode(point), b"fuse.fuseblock", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount fuse: {os.strerror(err)}", point)


def main(argv: list[str]) -> int:
    point, image_path, log_path = argv
    device = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    image = os.open(image_path, os.O_RDWR | os.O_CLOEXEC)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
    mount(device, point)
    print("ready", flush=True)
    Server(device, image, log).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
