"""Remembered exchanges on disk from the moment they are queued until the store has them.

Memory writes are batched off the request path (embedding takes milliseconds), so a crash of
the process between an answer and the batch that stores its exchange would lose it. Each
exchange is first copied into a spool segment (ailb/spool.py: a shared memory map, which
survives the process), and a segment is deleted once every exchange in it is stored. Segments
left by a process that died are replayed by the next one to start on the same data directory;
storing a turn twice is harmless (records are keyed by turn).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec

from ailb.spool import Spool, read_segment, remove_segment

log = logging.getLogger("ailb.memory")

SEGMENT_BYTES = 8 * 1024 * 1024  # an exchange larger than this is kept in memory only
ROTATE_BYTES = 1024 * 1024  # when everything is stored, a segment this full is replaced


class JournalEntry(msgspec.Struct, array_like=True):
    owner: str
    session: str
    turns: list[tuple[str, str, int]]  # (role, content, ts)


class TurnJournal:
    def __init__(self, directory: str, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.spool = Spool(directory, segment_bytes=segment_bytes, prefix="memory")
        self._outstanding: dict[str, int] = {}  # segment -> exchanges in it not yet stored
        self.unjournaled = 0  # exchanges that could not be written (disk full, too large)

    def open(self) -> list[tuple[str, JournalEntry]]:
        """Start a segment; returns what dead processes (or this one before a failed stop)
        left unstored, each entry with its segment, to be stored again."""
        self.spool.open()
        left: list[tuple[str, JournalEntry]] = []
        for path in list(self.spool.orphans()):
            entries = read_segment(path, JournalEntry)
            if entries:
                self._outstanding[path] = len(entries)
                left += [(path, e) for e in entries]
            else:
                remove_segment(path)
        if left:
            log.info("memory_journal_replayed", extra={"exchanges": len(left)})
        return left

    def append(self, entry: JournalEntry) -> str | None:
        """Copy one exchange to disk; returns its segment, or None when it could not be."""
        try:
            closed = self.spool.append(entry)
        except (OSError, ValueError) as e:
            if not self.unjournaled:
                log.warning("memory_journal_unwritable", extra={"detail": str(e)[:300]})
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
        """These exchanges are in the store: a closed segment with nothing left goes."""
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
        """Stop writing; a segment with unstored exchanges stays for the next start."""
        self.spool.close()
