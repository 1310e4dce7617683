"""Hot sessions in process: their turns and the vectors of their stored records.

A recall compares the new message with every record of one session, a few dozen to a few
hundred vectors: an exact dot product here takes microseconds, where a filtered query of the
Chroma collection holding every session took several milliseconds (bench/vectors/speed.py).
So a session is read from Chroma once, vectors included, and then searched here. Vectors are
kept as float16 (half the memory; the ranking error, ~1e-3 in cosine, is below MiniLM's own
noise), and the cache is bounded by sessions and by the bytes its turns and vectors take
(approximately: the Python objects are counted at their typical sizes).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ailb.memory.conversation import Turn

Key = tuple[str, str]  # (owner, session)
TURN_OVERHEAD = 120  # the Turn, its ts int and its list slot, beyond the text itself
OWNER_BYTES = 44  # a vector's turn ts: an int in a list


def turn_bytes(turns: Sequence[Turn]) -> int:
    return sum(sys.getsizeof(t.content) + TURN_OVERHEAD for t in turns)


class CachedSession:
    __slots__ = ("_matrix", "_owners", "_rows", "nbytes", "turns")

    def __init__(self, turns: list[Turn]) -> None:
        self.turns = turns
        self._owners: list[int] = []  # the ts of the turn each vector belongs to
        self._rows: list[Any] = []
        self._matrix: Any = None
        self.nbytes = turn_bytes(turns)

    @property
    def vectors(self) -> int:
        return len(self._owners)

    def add_turns(self, turns: Sequence[Turn]) -> int:
        self.turns.extend(turns)
        added = turn_bytes(turns)
        self.nbytes += added
        return added

    def add_vectors(self, owners: Sequence[int], vectors: Any) -> int:
        if not len(owners):
            return 0
        rows = np.asarray(vectors, dtype=np.float16)
        self._owners.extend(owners)
        self._rows.append(rows)
        self._matrix = None
        added = rows.nbytes + OWNER_BYTES * len(owners)
        self.nbytes += added
        return added

    def drop_before(self, cutoff_ns: int) -> int:
        """Forget turns and vectors older than the cutoff (expired in the store too); the
        bytes freed."""
        before = self.nbytes
        old = [t for t in self.turns if t.ts < cutoff_ns]
        if old:
            self.turns = [t for t in self.turns if t.ts >= cutoff_ns]
            self.nbytes -= turn_bytes(old)
        if self._owners and min(self._owners) < cutoff_ns:
            matrix = self._stacked()
            keep = np.fromiter((ts >= cutoff_ns for ts in self._owners), bool, len(self._owners))
            dropped = int((~keep).sum())
            self._owners = [ts for ts in self._owners if ts >= cutoff_ns]
            self._matrix = matrix[keep]
            self._rows = [self._matrix]
            self.nbytes -= dropped * (matrix.shape[1] * matrix.itemsize + OWNER_BYTES)
        return before - self.nbytes

    def _stacked(self) -> Any:
        if self._matrix is None:
            self._matrix = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
            self._rows = [self._matrix]
        return self._matrix

    def nearest(self, query: Any, k: int) -> list[tuple[int, float]]:
        """(turn ts, cosine) of the k records most similar to `query`, best first; a turn
        appears once per vector it has (itself and its sentences)."""
        if not self._owners:
            return []
        scores = self._stacked().astype(np.float32) @ np.asarray(query, dtype=np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self._owners[i], float(scores[i])) for i in top]


class SessionCache:
    """LRU of sessions, bounded by how many and by the bytes they hold together."""

    def __init__(self, max_sessions: int, max_bytes: int) -> None:
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[Key, CachedSession] = OrderedDict()

    def __contains__(self, key: Key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Key) -> CachedSession | None:
        entry = self._items.get(key)
        if entry is not None:
            self._items.move_to_end(key)
        return entry

    def put(self, key: Key, entry: CachedSession) -> None:
        self.pop(key)
        self._items[key] = entry
        self.nbytes += entry.nbytes
        self._shrink()

    def add_turns(self, key: Key, turns: Sequence[Turn]) -> None:
        """New turns of a session held here (others load on use)."""
        entry = self.get(key)
        if entry is not None:
            self.nbytes += entry.add_turns(turns)
            self._shrink()

    def add_vectors(self, key: Key, owners: Sequence[int], vectors: Any) -> None:
        """Vectors of newly stored records, for a session held here (others load on use)."""
        entry = self.get(key)  # a session just written to is a hot one
        if entry is not None:
            self.nbytes += entry.add_vectors(owners, vectors)
            self._shrink()

    def pop(self, key: Key) -> None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self.nbytes -= entry.nbytes

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0

    def expire(self, cutoff_ns: int) -> None:
        """Forget what expired in the store: older turns and vectors of the sessions held,
        and sessions left with no turn."""
        for key, entry in list(self._items.items()):
            self.nbytes -= entry.drop_before(cutoff_ns)
            if not entry.turns:
                self.pop(key)

    def _shrink(self) -> None:
        while self._items and (
            len(self._items) > self.max_sessions or self.nbytes > self.max_bytes
        ):
            _, entry = self._items.popitem(last=False)
            self.nbytes -= entry.nbytes
