"""Fair turns between keys for a scarce resource (the encoder's bulk lane, for ingestion).

One holder at a time. The next turn goes by start-time fair queueing: each waiting turn is
tagged, when it asks, with the later of the virtual time (the tag of the turn last granted)
and the end of its key's previous turn; the smallest tag goes first. So keys alternate, turn by
turn: a key with ten requests in flight gets the same share as a key with one, a key that was
idle starts at once without a credit for its idle time, and nobody waits for another key's
whole document, only for one turn.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

KEYS_KEPT = 256  # past this many, keys caught up with the virtual time are forgotten


class FairTurns:
    def __init__(self) -> None:
        self._busy = False
        self._now = 0  # the virtual time: the tag of the turn granted last
        self._ends: dict[str, int] = {}  # key -> the tag after its last turn asked for
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap
        self._order = itertools.count()  # ties go first come, first served

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        tag = max(self._now, self._ends.get(key, 0))
        self._ends[key] = tag + 1
        if self._busy:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (tag, next(self._order), fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._next()  # granted just as it was cancelled: pass the turn on
                raise  # a waiter still queued is skipped when its turn comes
        else:
            self._busy = True
            self._now = tag
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        while self._waiting:
            tag, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                self._now = tag
                fut.set_result(None)  # still busy: the turn passes straight to it
                self._forget()
                return
        self._busy = False
        self._forget()

    def _forget(self) -> None:
        if len(self._ends) > KEYS_KEPT:
            self._ends = {k: end for k, end in self._ends.items() if end > self._now}
