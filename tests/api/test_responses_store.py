"""ResponseStore: written behind the answer in batches, yet always found by its owner."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ailb.api.responses.reply import completion_fields, whole
from ailb.api.responses.store import (
    BATCH_SECONDS,
    MAX_DOCUMENT_BYTES,
    ResponseNotFound,
    ResponseStore,
    ServiceUnavailable,
    document,
)
from ailb.journal import Journal
from ailb.storage import StoredResponse, StoreUnavailable
from ailb.storage.sqlite import SqliteStore


class GatedStore:
    """A store whose writes wait for `gate`; it records each batch."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.batches: list[list[str]] = []
        self.docs: dict[tuple[str, str], bytes] = {}
        self.fail = False

    async def put_responses(self, items: Sequence[StoredResponse]) -> None:
        await self.gate.wait()
        if self.fail:
            raise StoreUnavailable("down")
        self.batches.append([i.id for i in items])
        for i in items:
            self.docs[(i.id, i.owner)] = i.doc

    async def get_response(self, response_id: str, owner: str, now: float) -> bytes | None:
        if self.fail:
            raise StoreUnavailable("down")
        return self.docs.get((response_id, owner))

    async def delete_response(self, response_id: str, owner: str, now: float) -> bool:
        return self.docs.pop((response_id, owner), None) is not None


async def started(backend: Any, ttl: float, journal: Path) -> ResponseStore:
    store = ResponseStore(backend, ttl, Journal(str(journal), StoredResponse, "responses"))
    await store.start()
    return store


def response(rid: str) -> dict[str, Any]:
    return {"id": rid, "object": "response", "output": []}


MESSAGES = [{"role": "user", "content": "hi"}]


def test_unwritten_documents_are_found_by_their_owner_only(tmp_path: Path):
    async def scenario() -> None:
        backend = GatedStore()
        store = await started(backend, 60, tmp_path / "store")
        assert await store.save("alice", response("resp_1"), MESSAGES)
        assert await store.save("alice", response("resp_2"), MESSAGES)
        assert backend.batches == []  # not written yet: the answers did not wait
        assert (await store.load("alice", "resp_1")).messages == MESSAGES
        with pytest.raises(ResponseNotFound):
            await store.load("bob", "resp_1")
        backend.gate.set()
        await store.flush()
        assert backend.batches == [["resp_1"], ["resp_2"]] or backend.batches == [
            ["resp_1", "resp_2"]
        ]
        assert (await store.load("alice", "resp_2")).response["id"] == "resp_2"

    asyncio.run(scenario())


def test_saves_made_during_a_write_go_in_one_batch(tmp_path: Path):
    async def scenario() -> None:
        backend = GatedStore()
        store = await started(backend, 60, tmp_path / "store")
        await store.save("o", response("first"), MESSAGES)
        await asyncio.sleep(BATCH_SECONDS * 3)  # the writer takes "first", waits on the gate
        for i in range(5):
            await store.save("o", response(f"r{i}"), MESSAGES)
        backend.gate.set()
        await store.flush()
        assert backend.batches == [["first"], [f"r{i}" for i in range(5)]]

    asyncio.run(scenario())


def test_delete_of_an_unwritten_document_waits_for_its_write(tmp_path: Path):
    async def scenario() -> None:
        backend = GatedStore()
        store = await started(backend, 60, tmp_path / "store")
        await store.save("o", response("resp_1"), MESSAGES)
        deleting = asyncio.create_task(store.delete("o", "resp_1"))
        await asyncio.sleep(0.01)
        assert not deleting.done()
        backend.gate.set()
        await deleting
        assert backend.docs == {}  # written, then deleted: not brought back
        with pytest.raises(ResponseNotFound):
            await store.load("o", "resp_1")

    asyncio.run(scenario())


def test_a_failed_write_is_logged_not_raised(caplog, tmp_path: Path):
    async def scenario() -> None:
        backend = GatedStore()
        backend.fail = True
        backend.gate.set()
        store = await started(backend, 60, tmp_path / "store")
        assert await store.save("o", response("resp_1"), MESSAGES)
        await store.flush()
        with pytest.raises(ServiceUnavailable):
            await store.load("o", "resp_1")

    asyncio.run(scenario())
    assert any(r.message == "response_not_stored" for r in caplog.records)


def test_too_large_documents_are_not_kept(tmp_path: Path):
    async def scenario() -> None:
        store = await started(GatedStore(), 60, tmp_path / "store")
        big = [{"role": "user", "content": "x" * (MAX_DOCUMENT_BYTES + 1)}]
        assert not await store.save("o", response("resp_big"), big)
        with pytest.raises(ResponseNotFound):
            await store.load("o", "resp_big")

    asyncio.run(scenario())


def test_flush_writes_everything_to_sqlite(tmp_path: Path):
    async def scenario() -> None:
        backend = SqliteStore(str(tmp_path / "ailb.db"))
        await backend.open()
        try:
            store = await started(backend, 60, tmp_path / "store")
            for i in range(50):
                await store.save("o", response(f"resp_{i}"), MESSAGES)
            await store.flush()
            for i in range(50):
                assert await backend.get_response(f"resp_{i}", "o", time.time()) is not None
            expired = await started(backend, -1, tmp_path / "expired")
            await expired.save("o", response("resp_old"), MESSAGES)
            with pytest.raises(ResponseNotFound):
                await expired.load("o", "resp_old")
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_documents_a_crashed_process_left_unwritten_are_stored_at_the_next_start(tmp_path: Path):
    """Saved (the client has its id) but the store never took the batch before the process
    died: the journal keeps the documents, and the next start on the data directory stores
    them, so `previous_response_id` still finds them."""

    async def crashed() -> None:
        store = await started(GatedStore(), 60, tmp_path / "journal")  # writes never finish
        for i in range(3):
            assert await store.save("o", response(f"resp_{i}"), MESSAGES)
        # No stop(): the process dies with its writer waiting. Its death closes the segment's
        # file (and so its lock), which this process must do by hand.
        store.journal.close()

    asyncio.run(crashed())

    async def restarted() -> None:
        backend = SqliteStore(str(tmp_path / "ailb.db"))
        await backend.open()
        try:
            store = await started(backend, 60, tmp_path / "journal")
            await store.flush()
            for i in range(3):
                assert await backend.get_response(f"resp_{i}", "o", time.time()) is not None
                assert (await store.load("o", f"resp_{i}")).response["id"] == f"resp_{i}"
            await store.stop()
            assert not list((tmp_path / "journal").glob("responses*"))  # all stored: none left
        finally:
            await backend.close()

    asyncio.run(restarted())


def test_a_document_keeps_only_what_is_not_a_default_and_loads_whole(tmp_path: Path):
    """The document is most of what storing costs: fields a Response has by default and the
    answer's own message (its output gives it) are not written, and come back on load."""
    completion = {
        "model": "m",
        "choices": [{"message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    fields = completion_fields(completion, "resp_abc", 1.0, {"model": "m"})

    async def scenario() -> None:
        backend = SqliteStore(str(tmp_path / "ailb.db"))
        await backend.open()
        try:
            store = await started(backend, 60, tmp_path / "store")
            earlier = [
                {"role": "user", "content": "before"},
                {"role": "assistant", "content": "ok"},
            ]
            assert await store.save("o", fields, [*earlier, *MESSAGES], len(MESSAGES))
            await store.flush()
            doc = await backend.get_response("resp_abc", "o", time.time())
            assert doc is not None
            for absent in (b'"top_p"', b'"truncation"', b'"tools"'):
                assert absent not in doc
            assert b'"m":[' in doc and b"Hi!" not in doc.split(b'"m":[')[1]  # not the answer
            loaded = await store.load("o", "resp_abc")
            assert loaded.response == whole(fields)
            assert loaded.response["top_p"] is None and loaded.response["tools"] == []
            assert loaded.messages == [*earlier, *MESSAGES, {"role": "assistant", "content": "Hi!"}]
            assert loaded.inputs == MESSAGES  # this response's own input, for input_items
        finally:
            await backend.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("inputs", [None, 0, 2])
def test_a_document_from_fields_already_encoded_is_the_same_document(inputs):
    """The face hands the store the fields' JSON it answered with (one encoding for both):
    the document is byte for byte the one made from the fields."""
    completion = {"model": "m", "choices": [{"message": {"role": "assistant", "content": "é"}}]}
    fields = completion_fields(completion, "resp_abc", 1.0, {"model": "m", "user": "u"})
    conversation = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    encoded = msgspec.json.encode(fields)
    assert document(fields, conversation, inputs, encoded) == document(fields, conversation, inputs)


def test_a_document_of_the_earlier_version_is_still_served(tmp_path: Path):
    earlier = {"id": "resp_old", "object": "response", "output": [], "top_p": 0.5}
    conversation = [*MESSAGES, {"role": "assistant", "content": "before"}]
    doc = json.dumps({"response": earlier, "messages": conversation}).encode()

    async def scenario() -> None:
        backend = SqliteStore(str(tmp_path / "ailb.db"))
        await backend.open()
        try:
            await backend.put_responses([StoredResponse("resp_old", "o", time.time() + 60, doc)])
            store = await started(backend, 60, tmp_path / "store")
            loaded = await store.load("o", "resp_old")
            assert loaded.response == earlier and loaded.messages == conversation
            assert loaded.inputs == conversation  # no answer in its output to leave out
        finally:
            await backend.close()

    asyncio.run(scenario())
