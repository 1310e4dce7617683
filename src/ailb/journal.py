"""Records on disk from the moment they are queued until their store has them.

Memory's remembered exchanges and the Responses API's stored responses are written in batches
off the request path, so a crash of the process between an answer and the batch that stores
its record would lose it. Each record is first copied into a spool segment (ailb/spool.py: a
shared memory map, which survives the process), and a segment is deleted once every record in
it is stored. Segments left by a process that died are replayed by the next one to start on
the same data directory; storing a record twice is harmless (records are keyed: a turn, a
response id).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Generic, TypeVar

from ailb.spool import Spool, read_segment, remove_segment

log = logging.getLogger("ailb.journal")

SEGMENT_BYTES = 8 * 1024 * 1024  # a record larger than this is kept in memory only
ROTATE_BYTES = 1024 * 1024  # when everything is stored, a segment this full is replaced
E = TypeVar("E")


class Journal(Generic[E]):
    """`kind` is the records' type (MessagePack-encodable); `prefix` names the segments and
    the log lines (`<prefix>_journal_replayed` ...)."""

    def __init__(
        self, directory: str, kind: type[E], prefix: str, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.spool = Spool(directory, segment_bytes=segment_bytes, prefix=prefix)
        self.kind = kind
        self.prefix = prefix
        self._outstanding: dict[str, int] = {}  # segment -> records in it not yet stored
        self.unjournaled = 0  # records that could not be written (disk full, too large)

    def open(self) -> list[tuple[str, E]]:
        """Start a segment; returns what dead processes (or this one before a failed stop)
        left unstored, each entry with its segment, to be stored again."""
        self.spool.open()
        left: list[tuple[str, E]] = []
        for path in list(self.spool.orphans()):
            entries = read_segment(path, self.kind)
            if entries:
                self._outstanding[path] = len(entries)
                left += [(path, e) for e in entries]
            else:
                remove_segment(path)
        if left:
            log.info(f"{self.prefix}_journal_replayed", extra={"records": len(left)})
        return left

    def append(self, entry: E) -> str | None:
        """Copy one record to disk; returns its segment, or None when it could not be."""
        try:
            closed = self.spool.append(entry)
        except (OSError, ValueError) as e:
            if not self.unjournaled:
                log.warning(f"{self.prefix}_journal_unwritable", extra={"detail": str(e)[:300]})
            self.unjournaled += 1
            return None
        path = self.spool.path
        if closed is not None and not self._outstanding.get(closed):
            self._outstanding.pop(closed, None)
            remove_segment(closed)
        if path is not None:
            self._outstanding[path] = self._outstanding.get(path, 0) + 1
        return path

    def stored(self, segments: Iterable[str | None]) -> None:
        """These records are in the store: a closed segment with nothing left goes."""
        for path in segments:
            if path is None:
                continue
            left = self._outstanding.get(path, 0) - 1
            if left > 0:
                self._outstanding[path] = left
                continue
            self._outstanding.pop(path, None)
            if path != self.spool.path:
                remove_segment(path)

    def drained(self, force: bool = False) -> None:
        """Nothing is waiting to be stored: replace the current segment (and delete it) once it
        holds ROTATE_BYTES, or at once with `force` (a forgotten session must not come back
        from a replay)."""
        if self.spool.path is None or self._outstanding.get(self.spool.path):
            return
        if force or self.spool.used >= ROTATE_BYTES:
            closed = self.spool.rotate()
            if closed is not None:
                remove_segment(closed)

    def close(self) -> None:
        """Stop writing; a segment with unstored records stays for the next start."""
        self.spool.close()
