"""Response state, so `previous_response_id`, retrieve and delete work on every provider.

Each stored response is one document in the gateway's own store (SQLite in AILB_DATA_DIR, or
PostgreSQL with DATABASE_URL): the Response object as answered, and the conversation that led
to it as chat messages (the earlier responses' too, without instructions), which a follow-up
prepends. Documents belong to the caller (identity.caller_id, as memory's sessions do): another
key finds nothing. They expire after AILB_RESPONSES_TTL seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from ailb.errors import APIError, ServiceUnavailable
from ailb.storage import Store, StoredResponse, StoreUnavailable

log = logging.getLogger("ailb.responses")

# A stored document's largest size: a long chain of responses (each carries the ones before)
# or large inline images stop being stored here rather than growing without bound.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


class Stored(msgspec.Struct):
    response: dict[str, Any]
    messages: list[dict[str, Any]]  # the conversation up to and including this response


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Stored).decode


class ResponseNotFound(APIError):
    status = 404
    type = "invalid_request_error"

    def __init__(self, response_id: str, param: str | None = None) -> None:
        super().__init__(
            f"Response with id '{response_id}' not found.", param=param, code="not_found"
        )


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The response store is unavailable right now; try again.",
        code="response_store_unavailable",
    )


class ResponseStore:
    """Saves are written in batches: while one transaction runs, the responses finished
    meanwhile wait for the next, each request still answered only once its document is durable
    (a follow-up naming it must find it, on any instance). One transaction per request was the
    face's largest cost."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._pending: list[tuple[StoredResponse, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def load(self, owner: str, response_id: str, param: str | None = None) -> Stored:
        try:
            doc = await self.store.get_response(response_id, owner, time.time())
        except StoreUnavailable as e:
            log.warning("response_store_unavailable", extra={"detail": str(e)})
            raise unavailable() from None
        if doc is None:
            raise ResponseNotFound(response_id, param)
        return _decode(doc)

    async def save(
        self, owner: str, response: dict[str, Any], messages: list[dict[str, Any]]
    ) -> bool:
        """Whether it was stored: False when the document is over MAX_DOCUMENT_BYTES or the
        store cannot be reached (logged; the answer still goes out, marked `store: false`
        where it has not left yet: the client paid for it)."""
        doc = _encode(Stored(response, messages))
        if len(doc) > MAX_DOCUMENT_BYTES:
            log.warning(
                "response_not_stored",
                extra={"id": response["id"], "bytes": len(doc), "limit": MAX_DOCUMENT_BYTES},
            )
            return False
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        item = StoredResponse(response["id"], owner, time.time() + self.ttl, doc)
        self._pending.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        # Shielded: a client that goes away does not take the batch's write with it.
        return await asyncio.shield(done)

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.put_responses([item for item, _ in batch])
                stored = True
            except (StoreUnavailable, RuntimeError) as e:  # RuntimeError: closed at shutdown
                log.warning(
                    "response_not_stored", extra={"responses": len(batch), "detail": str(e)}
                )
                stored = False
            for _, done in batch:
                if not done.done():
                    done.set_result(stored)

    async def delete(self, owner: str, response_id: str) -> None:
        try:
            found = await self.store.delete_response(response_id, owner, time.time())
        except StoreUnavailable as e:
            log.warning("response_store_unavailable", extra={"detail": str(e)})
            raise unavailable() from None
        if not found:
            raise ResponseNotFound(response_id)
