"""Hot sessions in process: their turns and the vectors of their stored records.

A recall compares the new message with every record of one session, a few dozen to a few
hundred vectors: an exact dot product here takes microseconds, where a filtered query of the
Chroma collection holding every session took several milliseconds (bench/vectors/speed.py).
So a session is read from Chroma once, vectors included, and then searched here. Vectors are
kept as float16 (half the memory; the ranking error, ~1e-3 in cosine, is below MiniLM's own
noise), and the cache is bounded by sessions and by vectors held.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ailb.memory.conversation import Turn

Key = tuple[str, str]  # (owner, session)


class CachedSession:
    __slots__ = ("_matrix", "_owners", "_rows", "turns")

    def __init__(self, turns: list[Turn]) -> None:
        self.turns = turns
        self._owners: list[int] = []  # the ts of the turn each vector belongs to
        self._rows: list[Any] = []
        self._matrix: Any = None

    @property
    def vectors(self) -> int:
        return len(self._owners)

    def add_vectors(self, owners: Sequence[int], vectors: Any) -> None:
        if len(owners):
            self._owners.extend(owners)
            self._rows.append(np.asarray(vectors, dtype=np.float16))
            self._matrix = None

    def nearest(self, query: Any, k: int) -> list[tuple[int, float]]:
        """(turn ts, cosine) of the k records most similar to `query`, best first; a turn
        appears once per vector it has (itself and its sentences)."""
        if not self._owners:
            return []
        if self._matrix is None:
            self._matrix = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
            self._rows = [self._matrix]
        scores = self._matrix.astype(np.float32) @ np.asarray(query, dtype=np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self._owners[i], float(scores[i])) for i in top]


class SessionCache:
    """LRU of sessions, bounded by how many and by the vectors they hold together."""

    def __init__(self, max_sessions: int, max_vectors: int) -> None:
        self.max_sessions = max_sessions
        self.max_vectors = max_vectors
        self.vectors = 0
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
        self.vectors += entry.vectors
        self._shrink()

    def add_vectors(self, key: Key, owners: Sequence[int], vectors: Any) -> None:
        """Vectors of newly stored records, for a session held here (others load on use)."""
        entry = self.get(key)  # a session just written to is a hot one
        if entry is not None:
            entry.add_vectors(owners, vectors)
            self.vectors += len(owners)
            self._shrink()

    def pop(self, key: Key) -> None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self.vectors -= entry.vectors

    def clear(self) -> None:
        self._items.clear()
        self.vectors = 0

    def expire(self, cutoff_ns: int) -> None:
        """Forget sessions whose last turn is older than the cutoff (their records expired)."""
        for key in [k for k, e in self._items.items() if e.turns and e.turns[-1].ts < cutoff_ns]:
            self.pop(key)

    def _shrink(self) -> None:
        while self._items and (
            len(self._items) > self.max_sessions or self.vectors > self.max_vectors
        ):
            _, entry = self._items.popitem(last=False)
            self.vectors -= entry.vectors
