"""Remembered exchanges on disk until the memory store has them (ailb.journal)."""

from __future__ import annotations

import msgspec

from ailb.journal import SEGMENT_BYTES, Journal


class JournalEntry(msgspec.Struct, array_like=True):
    owner: str
    session: str
    turns: list[tuple[str, str, int]]  # (role, content, ts)


class TurnJournal(Journal[JournalEntry]):
    def __init__(self, directory: str, segment_bytes: int = SEGMENT_BYTES) -> None:
        super().__init__(directory, JournalEntry, "memory", segment_bytes)
