"""A durable queue of records in front of a store: usage records before the ledger, remembered
turns before the memory store.

A record is copied into a segment file mapped into memory (MAP_SHARED: the pages belong to the
kernel's page cache, so a crash of the process loses nothing once the copy is done, and a copy
costs far less than a write system call) before the client gets its answer; like a write
without fsync, it does not survive the machine losing power. A background task closes the
segment every interval, writes its records to the ledger in one transaction and deletes the
file. Segments the ledger could not take (database down) stay on disk and are retried; segments
left by a process that died are picked up by the next one to start (each live writer holds an
flock on its open segment). Writing a record twice is harmless: the ledger keeps one per
request_id, the memory store one per turn id.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import secrets
import struct
from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec

from ailb.billing.records import UsageRecord
from ailb.datadir import private_dir

R = TypeVar("R")

# Each record is framed as its length (4 bytes, little-endian) and its MessagePack encoding: a
# third of the cost of a JSON line, whose floats must be written out as decimal text. The zeros
# after the last record (the segment's unused reserved tail) end the frames.
SUFFIX = ".msgpack"
JSON_SUFFIX = ".jsonl"  # segments of earlier versions: one JSON array per line, still read
_LENGTH = struct.Struct("<I")
SEGMENT_BYTES = 4 * 1024 * 1024
# A segment is sized for the traffic: about twice what was written between the last two
# rotations, within [MIN_SEGMENT_BYTES, segment_bytes]. Its blocks are reserved when it opens
# and the unused tail given back when it closes, a churn that costs in proportion to the size:
# 4 MiB segments rotated every 0.25 s cost about 5 µs per request at 3,000 requests/s,
# segments sized to the traffic about 1.5 µs.
MIN_SEGMENT_BYTES = 64 * 1024
_NO_FALLOCATE = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_encode = msgspec.msgpack.Encoder().encode


class Spool:
    def __init__(
        self, directory: str, segment_bytes: int = SEGMENT_BYTES, prefix: str = "usage"
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.prefix = prefix
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._path: str | None = None
        self._offset = 0
        self._seq = 0
        self._size = 0  # the current segment's
        self._written = 0  # bytes in segments closed since the last rotate(), because full
        self._next_size = min(segment_bytes, MIN_SEGMENT_BYTES)
        self._tag = f"{os.getpid()}-{secrets.token_hex(4)}"

    def open(self) -> None:
        private_dir(self.directory)
        self._roll()

    @property
    def path(self) -> str | None:
        """The segment being written."""
        return self._path

    @property
    def used(self) -> int:
        """Bytes written to the current segment."""
        return self._offset

    def append(self, record: Any) -> str | None:
        """Write one record; returns the path of a segment closed to make room (else None).
        Raises OSError when no segment can be made (a full disk)."""
        return self.append_encoded(_encode(record))

    def append_encoded(self, payload: bytes) -> str | None:
        """append() of a record the caller has encoded already (MessagePack)."""
        length = len(payload)
        start = self._offset
        end = start + 4 + length
        if end > self._size:  # full, or no segment (a size above zero means a map)
            return self._append_elsewhere(payload)
        m: mmap.mmap = self._map  # type: ignore[assignment]
        # Straight into the map, no framed copy made. The record goes before its length: a
        # crash between the two leaves what readers take for the unused tail (a zero length).
        m[start + 4 : end] = payload
        _LENGTH.pack_into(m, start, length)
        self._offset = end
        return None

    def _append_elsewhere(self, payload: bytes) -> str | None:
        """append_encoded() into a new segment: the current one is full (it is closed, and
        its path returned) or there is none."""
        need = len(payload) + 4
        if need > self.segment_bytes:
            raise ValueError("a record larger than a spool segment")
        closed = None
        if self._map is None:  # the last segment could not be made (disk full): try again
            self._roll(need)
        else:  # full: the next one twice as large
            self._written += self._offset
            self._next_size = 2 * self._size
            closed = self._replace(need)
        self.append_encoded(payload)  # it fits now
        return closed

    def rotate(self) -> str | None:
        """Close the current segment (if it holds anything) and start a new one; returns the
        closed segment's path. Called at a steady pace, it sizes the next segment for what was
        written since the last call."""
        written, self._written = self._written + self._offset, 0
        # Room for twice that, shrinking by at most half at a time.
        self._next_size = max(MIN_SEGMENT_BYTES, 2 * written, self._size // 2)
        if self._offset == 0:
            return None
        closed = self._path
        self._unmap()
        self._offset = 0
        with contextlib.suppress(OSError):  # no room for a new one: the next append says so
            self._roll()
        return closed

    def _replace(self, need: int) -> str | None:
        """A full segment for a new one with room for `need` bytes; the new one is made first,
        so a full disk leaves the old one current (and this append failing) rather than a
        closed segment nobody was told about. Returns the closed path (None: it was empty)."""
        made = self._make(need)
        closed = self._path
        self._unmap()
        if self._offset == 0 and closed is not None:  # too small for the record: never used
            remove_segment(closed)
            closed = None
        self._fd, self._map, self._path, self._size = made
        self._offset = 0
        return closed

    def close(self) -> None:
        self._unmap()
        if self._path is not None and self._offset == 0:
            remove_segment(self._path)
        self._path = None

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            self._size = 0  # appends see no room, and make a segment
        if self._fd is not None:
            os.ftruncate(self._fd, self._offset)  # the unused tail of the segment goes
            os.close(self._fd)  # releases the flock: the segment is now anyone's to flush
            self._fd = None

    def _roll(self, need: int = 0) -> None:
        self._unmap()
        self._path, self._size = None, 0
        self._fd, self._map, self._path, self._size = self._make(need)
        self._offset = 0

    def _make(self, need: int) -> tuple[int, mmap.mmap, str, int]:
        """A new segment file, locked, its blocks reserved and mapped: (fd, map, path, size)."""
        page = mmap.PAGESIZE
        size = min(self.segment_bytes, -(-max(self._next_size, need) // page) * page)
        self._seq += 1
        name = f"{self.prefix}-{self._tag}-{self._seq:08d}{SUFFIX}"
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Blocks reserved now: a full disk is an error here, not a SIGBUS on a later copy.
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as e:
                if e.errno not in _NO_FALLOCATE:
                    raise
                os.ftruncate(fd, size)  # a file system without reservations
            return fd, mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_WRITE), path, size
        except OSError:
            os.close(fd)
            remove_segment(path)
            raise

    def orphans(self) -> Iterator[str]:
        """Closed segments nobody is writing: this process's rotated ones and dead processes'."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.directory, name)
            if not name.startswith(self.prefix + "-") or not name.endswith((SUFFIX, JSON_SUFFIX)):
                continue
            if path == self._path:
                continue
            if _unlocked(path):
                yield path


def remove_segment(path: str) -> None:
    """Delete a segment whose records are stored (another process may have done it first)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _unlocked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's lock
    return True


def read_segment(path: str, kind: type[R] = UsageRecord) -> list[R]:  # type: ignore[assignment]
    """The records of a segment. A torn last record (a crash mid-write) is left out, and so is
    a damaged one (a bad disk), without losing the others."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(JSON_SUFFIX):
        return _read_json_segment(data, kind)
    decode = msgspec.msgpack.Decoder(kind).decode
    view = memoryview(data)
    out: list[R] = []
    offset, size = 0, len(data)
    while offset + 4 <= size:
        (length,) = _LENGTH.unpack_from(data, offset)
        start, offset = offset + 4, offset + 4 + length
        if length == 0 or offset > size:
            break  # the unused tail, or a frame cut short
        try:
            out.append(decode(view[start:offset]))
        except (msgspec.DecodeError, ValueError):  # ValueError: damaged UTF-8 in a string
            continue
    return out


def _read_json_segment(data: bytes, kind: type[R]) -> list[R]:
    """A segment of JSON lines (earlier versions). Decoded as one array: a bad line costs a
    slower line-by-line pass, not the segment."""
    end = data.rfind(b"\n")
    if end < 0:
        return []
    lines = data[:end].split(b"\n")
    try:
        return msgspec.json.decode(b"[" + b",".join(lines) + b"]", type=list[kind])  # type: ignore[valid-type]
    except msgspec.DecodeError:
        out = []
        for line in lines:
            try:
                out.append(msgspec.json.decode(line, type=kind))
            except msgspec.DecodeError:
                continue
        return out
