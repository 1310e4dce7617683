"""Response state, so `previous_response_id`, retrieve and delete work on every provider.

Each stored response is one document in the gateway's own store (SQLite in AILB_DATA_DIR, or
PostgreSQL with DATABASE_URL): the Response object as answered, and the conversation that led
to it as chat messages (the earlier responses' too, without instructions), which a follow-up
prepends. A document keeps only what it must (the response's fields that are not defaults,
the conversation before the answer, which its output gives): written on every request, its
size is most of what storing costs. Documents belong to the caller (identity.caller_id, as
memory's sessions do): another key finds nothing. They expire after AILB_RESPONSES_TTL seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from ailb.api.responses.reply import as_chat_messages, whole
from ailb.errors import APIError, ServiceUnavailable
from ailb.journal import Journal
from ailb.storage import Store, StoredResponse, StoreUnavailable

log = logging.getLogger("ailb.responses")

# A stored document's largest size: a long chain of responses (each carries the ones before)
# or large inline images stop being stored here rather than growing without bound.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
# Documents saved and not yet written (ResponseStore): past this, answers wait for the writer.
MAX_UNWRITTEN = 10000
# The writer gathers a batch this long (or to BATCH_ROWS): a transaction's fixed cost (the
# thread hand-off, BEGIN, COMMIT, the pages every commit rewrites) spread over many documents.
# A store other instances share (PostgreSQL) is written sooner, so that a follow-up through
# another instance finds the response; only the answering instance reads SQLite, and finds
# unwritten documents in memory.
BATCH_SECONDS = 0.02
LOCAL_BATCH_SECONDS = 0.25
BATCH_ROWS = 2000


class Stored(msgspec.Struct):
    response: dict[str, Any]
    messages: list[dict[str, Any]]  # the conversation up to and including this response
    # This response's own input (the end of the conversation before its answer), as chat
    # messages: what GET /v1/responses/{id}/input_items lists.
    inputs: list[dict[str, Any]] = msgspec.field(default_factory=list)


class Document(msgspec.Struct, omit_defaults=True):
    """As stored: `r`, the response's fields (reply.response_fields); `m`, the conversation
    before its answer. Documents of an earlier version hold `response` and `messages` whole."""

    r: dict[str, Any] | None = None
    m: list[dict[str, Any]] | None = None
    n: int | None = None  # how many of m are this response's own input (its last ones)
    response: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None


_encode = msgspec.json.Encoder().encode
_decode_document = msgspec.json.Decoder(Document).decode


def document(
    fields: dict[str, Any],
    conversation: list[dict[str, Any]],
    inputs: int | None = None,
    encoded: bytes | None = None,
) -> bytes:
    """A Document's JSON; `encoded`: the fields' JSON when the caller has it already."""
    if encoded is None:
        return _encode(Document(fields, conversation, inputs))
    tail = b"}" if inputs is None else b',"n":' + str(inputs).encode() + b"}"
    return b'{"r":' + encoded + b',"m":' + _encode(conversation) + tail


def _decode(doc: bytes) -> Stored:
    found = _decode_document(doc)
    if found.r is None:  # an earlier version's document: its input is not told apart
        response, messages = found.response or {}, found.messages or []
        answer = len(as_chat_messages(response.get("output") or []))
        return Stored(response, messages, messages[: len(messages) - answer])
    response = whole(found.r)
    before = found.m or []
    inputs = before if found.n is None else before[len(before) - found.n :]
    return Stored(response, [*before, *as_chat_messages(response["output"])], inputs)


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
    """Saves are written to the store behind the answer, in batches: a transaction per request
    (and, with SQLite, its worker thread waiting for the GIL while the event loop is busy) cost
    the face most of its throughput. Before the answer, a document is copied into a journal
    (ailb.journal: a memory-mapped segment, which survives a crash of the process), so what a
    client was told is stored is never lost: a process that dies before its batch commits
    leaves the segment to the next one to start, which stores it. Until its batch commits, a
    document is served from `_unwritten`, so a follow-up through this instance always finds it;
    through another instance sharing PostgreSQL it is found once the batch commits,
    milliseconds after the answer (README). Unwritten documents are bounded: past
    MAX_UNWRITTEN a save waits for the writer."""

    def __init__(
        self,
        store: Store,
        ttl: float,
        journal: Journal[StoredResponse],
        batch_seconds: float = BATCH_SECONDS,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.journal = journal
        self.batch_seconds = batch_seconds
        self._unwritten: dict[str, StoredResponse] = {}  # response id -> its document
        self._queued: list[tuple[StoredResponse, str | None]] = []  # with its segment
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the journal and store what a process that died left in it."""
        left = await asyncio.to_thread(self.journal.open)
        if not left:
            return
        now = time.time()
        for segment, item in left:
            item = StoredResponse(*item)
            if item.expires > now:
                self._unwritten[item.id] = item
            self._queued.append((item, segment))
        self._writer = asyncio.create_task(self._write())

    async def stop(self) -> None:
        """Write what is queued; a segment whose documents could not be stored stays."""
        await self.flush()
        self.journal.close()

    async def load(self, owner: str, response_id: str, param: str | None = None) -> Stored:
        item = self._unwritten.get(response_id)
        if item is not None and item.owner == owner and item.expires > time.time():
            return _decode(item.doc)
        try:
            doc = await self.store.get_response(response_id, owner, time.time())
        except StoreUnavailable as e:
            log.warning("response_store_unavailable", extra={"detail": str(e)})
            raise unavailable() from None
        if doc is None:
            raise ResponseNotFound(response_id, param)
        return _decode(doc)

    async def save(
        self,
        owner: str,
        fields: dict[str, Any],
        conversation: list[dict[str, Any]],
        inputs: int | None = None,
        encoded: bytes | None = None,
    ) -> bool:
        """Keep a response (its `fields`: reply.response_fields) and the `conversation` before
        its answer. Whether it is kept: False when the document is over MAX_DOCUMENT_BYTES
        (logged; the answer still goes out, marked `store: false` where it has not left yet:
        the client paid for it). `inputs`: how many of the conversation's last messages are
        this request's own input (None: all of them); `encoded`: the fields' JSON, when the
        caller has encoded them already."""
        doc = document(fields, conversation, inputs, encoded)
        if len(doc) > MAX_DOCUMENT_BYTES:
            log.warning(
                "response_not_stored",
                extra={"id": fields["id"], "bytes": len(doc), "limit": MAX_DOCUMENT_BYTES},
            )
            return False
        if len(self._unwritten) >= MAX_UNWRITTEN:
            await self.flush()  # the store is slower than the answers: hold them back
        item = StoredResponse(fields["id"], owner, time.time() + self.ttl, doc)
        segment = self.journal.append(item)  # durable before the answer, as the ledger is
        self._unwritten[item.id] = item
        self._queued.append((item, segment))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return True

    async def flush(self) -> None:
        """Until every document saved so far is written (or could not be)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        while self._queued:
            if len(self._queued) < BATCH_ROWS:
                await asyncio.sleep(self.batch_seconds)
            queued, self._queued = self._queued, []
            batch = [item for item, _ in queued]
            try:
                await self.store.put_responses(batch)
            except Exception as e:  # unreachable, closed at shutdown ...: logged, not silent
                # Their journal segments stay: the next start stores them.
                log.warning(
                    "response_not_stored", extra={"responses": len(batch), "detail": str(e)}
                )
            else:
                self.journal.stored(segment for _, segment in queued)
                if not self._queued:
                    self.journal.drained()
            for item in batch:
                if self._unwritten.get(item.id) is item:
                    del self._unwritten[item.id]

    async def delete(self, owner: str, response_id: str) -> None:
        item = self._unwritten.get(response_id)
        if item is not None and item.owner == owner:
            await self.flush()  # deleted after its write, or the write would bring it back
        try:
            found = await self.store.delete_response(response_id, owner, time.time())
        except StoreUnavailable as e:
            log.warning("response_store_unavailable", extra={"detail": str(e)})
            raise unavailable() from None
        if not found:
            raise ResponseNotFound(response_id)
