"""The keys one instance knows, kept fresh from the shared store.

Every instance polls the store's change sequence (a cheap indexed query) twice a second, so a
revocation, rotation or limit change made anywhere reaches every instance within a second, with
or without Redis. A key not in the cache is read from the store once; unknown ids are
remembered briefly so guessing ids cannot turn into a database load.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ailb.aio import cancel_and_wait
from ailb.auth.keys import ApiKey
from ailb.storage import Store, StoreUnavailable

log = logging.getLogger("ailb.auth")

MISS_TTL_S = 1.0
MAX_MISSES = 10_000


class KeyRing:
    def __init__(self, store: Store, poll_interval: float = 0.5) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.seq = 0
        # Never replaced, only updated: the authenticator's hot path reads it directly.
        self.keys: dict[str, ApiKey] = {}
        self._misses: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        try:
            await self.refresh()
        except StoreUnavailable as e:  # the gateway started while the store was unreachable
            log.warning("key_store_unavailable", extra={"detail": str(e)})
            self._failing = True
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def refresh(self) -> None:
        seq, changed = await self.store.keys_changed_since(self.seq)
        for key in changed:
            self.keys[key.id] = key
            self._misses.pop(key.id, None)
        self.seq = seq

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except StoreUnavailable as e:
                if not self._failing:
                    log.warning("key_store_unavailable", extra={"detail": str(e)})
                self._failing = True
            else:
                if self._failing:
                    log.info("key_store_recovered")
                self._failing = False

    @property
    def failing(self) -> bool:
        """The last refresh could not reach the store (known keys still authenticate)."""
        return self._failing

    async def get(self, key_id: str) -> ApiKey | None:
        key = self.keys.get(key_id)
        if key is not None:
            return key
        now = time.monotonic()
        missed = self._misses.get(key_id)
        if missed is not None and now - missed < MISS_TTL_S:
            return None
        key = await self.store.get_key(key_id)
        if key is None:
            if len(self._misses) >= MAX_MISSES:
                self._misses.clear()
            self._misses[key_id] = now
            return None
        self.put(key)
        return key

    def put(self, key: ApiKey) -> None:
        current = self.keys.get(key.id)
        if current is None or current.version <= key.version:
            self.keys[key.id] = key
        self._misses.pop(key.id, None)
