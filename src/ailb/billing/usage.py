"""Recording usage off the request path: spool first, ledger in batches."""

from __future__ import annotations

import asyncio
import logging
import os

from ailb.aio import cancel_and_wait
from ailb.billing.records import UsageRecord, encode_record
from ailb.spool import Spool, read_segment, remove_segment
from ailb.storage import Store, StoreUnavailable

log = logging.getLogger("ailb.usage")

FLUSH_INTERVAL_S = 1.0  # records are durable in the spool: this is only how fresh the ledger is
MAX_HELD = 200_000  # records kept in memory while the ledger is down
MAX_RETRY_S = 10.0


class UsageRecorder:
    def __init__(self, store: Store, spool_dir: str, interval: float = FLUSH_INTERVAL_S) -> None:
        self.store = store
        self.spool = Spool(spool_dir)
        self.interval = interval
        self.flushed = 0
        self.failing = False  # the ledger (database) refuses writes
        self.disk_failing = False  # the spool cannot be written
        self._task: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._backoff = interval
        # This process's records are also kept in memory until written, with their encodings,
        # so flushing them neither reads and decodes what was just encoded nor encodes them
        # again for the ledger; the files are for crashes and outages.
        self._current: list[UsageRecord] = []
        self._encoded: list[bytes] = []
        self._closed: dict[str, tuple[list[UsageRecord], list[bytes]]] = {}
        self._held = 0

    async def start(self) -> None:
        self.spool.open()
        await self.flush()  # what a crashed predecessor left behind
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self._rotate()
        await self.flush()
        self.spool.close()

    async def sync(self) -> None:
        """Everything recorded so far into the ledger now (raises StoreUnavailable)."""
        self._rotate()
        if not await self.flush():
            raise StoreUnavailable("the usage ledger is unavailable")

    def record(self, record: UsageRecord) -> bool:
        """Spool one record; False when it could not be made durable (the disk is full)."""
        encoded = encode_record(record)
        try:
            closed = self.spool.append_encoded(encoded)
        except OSError as e:
            if not self.disk_failing:
                log.error("usage_spool_unwritable", extra={"detail": str(e)})
            self.disk_failing = True
            return False
        self.disk_failing = False
        if closed is not None:  # the segment filled up before this record
            self._closed_now(closed)
        self._current.append(record)
        self._encoded.append(encoded)
        return True

    def _rotate(self) -> None:
        closed = self.spool.rotate()
        if closed is not None:
            self._closed_now(closed)

    def _closed_now(self, closed: str) -> None:
        self._held += len(self._current)
        self._closed[closed] = (self._current, self._encoded)
        self._current, self._encoded = [], []
        if self._held > MAX_HELD:  # a long outage: the files alone keep what waits
            self._closed.clear()
            self._held = 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            if self.failing and loop.time() < self._retry_at:
                continue
            self._rotate()
            ok = await self.flush()
            if ok:
                self._backoff = self.interval
            else:
                self._backoff = min(self._backoff * 2, MAX_RETRY_S)
                self._retry_at = loop.time() + self._backoff

    async def flush(self) -> bool:
        """Every closed segment into the ledger; False when the ledger is unavailable (the
        segments stay on disk for the next attempt)."""
        for path in list(self.spool.orphans()):
            held = self._closed.get(path)
            try:
                records, encoded = held if held is not None else (read_segment(path), None)
            except FileNotFoundError:
                continue  # another instance flushed it first
            try:
                if records:
                    batch = os.path.basename(path)
                    self.flushed += await self.store.insert_usage(records, batch, encoded)
            except StoreUnavailable as e:
                if not self.failing:
                    log.warning("usage_ledger_unavailable", extra={"detail": str(e)})
                self.failing = True
                return False
            remove_segment(path)
            self._held -= len(self._closed.pop(path, ((), ()))[0])
        if self.failing:
            log.info("usage_ledger_recovered")
        self.failing = False
        return True
