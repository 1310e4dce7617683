"""Per-key RAG quotas over HTTP: collections, documents (all of a key's collections together)
and bytes of text in one ingestion request. Past one is a clear OpenAI-style 4xx that the
openai SDK does not retry; other keys are unaffected; concurrent requests cannot pass a quota
together."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest

from tests.fakes.openai import gateway_config

ALICE = {"Authorization": "Bearer sk-alice"}
BOB = {"Authorization": "Bearer sk-bob"}


@pytest.fixture
def gw(openai_upstream: Any, gateway_factory: Any) -> Any:
    env = {
        "ENABLE_RAG": "true",
        "AILB_RAG_MAX_COLLECTIONS": "2",
        "AILB_RAG_MAX_DOCUMENTS": "3",
        "AILB_RAG_MAX_INGEST_BYTES": "1000",
    }
    return gateway_factory(gateway_config(openai_upstream.url), env)


def error(r: httpx2.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert e["code"] == code and e["type"] == "invalid_request_error", e
    return str(e["message"])


def add(c: httpx2.Client, name: str, *ids: str, headers: dict[str, str] = ALICE) -> Any:
    docs = [{"id": i, "text": f"Document {i} about the harbour lamps."} for i in ids]
    return c.post(f"/api/rag/collections/{name}/documents", headers=headers,
                  json={"documents": docs})  # fmt: skip


def test_collections_per_key(gw: Any) -> None:
    with httpx2.Client(base_url=gw.url, timeout=30) as c:
        for name in ("one", "two"):
            assert c.post("/api/rag/collections", json={"name": name}, headers=ALICE).is_success
        r = c.post("/api/rag/collections", json={"name": "three"}, headers=ALICE)
        message = error(r, 403, "collection_quota_exceeded")
        assert "2 RAG collections" in message and "AILB_RAG_MAX_COLLECTIONS" in message
        assert r.json()["error"]["param"] == "name"
        # Per key: bob has his own two.
        assert c.post("/api/rag/collections", json={"name": "one"}, headers=BOB).is_success
        # A deleted collection frees its place.
        assert c.delete("/api/rag/collections/two", headers=ALICE).is_success
        assert c.post("/api/rag/collections", json={"name": "three"}, headers=ALICE).is_success
        names = [x["name"] for x in c.get("/api/rag/collections", headers=ALICE).json()["data"]]
        assert names == ["one", "three"]


def test_concurrent_creates_cannot_pass_the_quota_together(gw: Any) -> None:
    with httpx2.Client(base_url=gw.url, timeout=30) as c:
        assert c.get("/api/rag/collections", headers=ALICE).is_success  # the store is open

        def create(i: int) -> int:
            r = c.post("/api/rag/collections", json={"name": f"c-{i}"}, headers=ALICE)
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(create, range(8)))
        assert sorted(answers) == [200, 200, 403, 403, 403, 403, 403, 403], answers
        assert len(c.get("/api/rag/collections", headers=ALICE).json()["data"]) == 2


def test_documents_per_key_across_its_collections(gw: Any) -> None:
    with httpx2.Client(base_url=gw.url, timeout=30) as c:
        for name in ("one", "two"):
            assert c.post("/api/rag/collections", json={"name": name}, headers=ALICE).is_success
        assert add(c, "one", "a.md", "b.md").is_success
        assert add(c, "two", "c.md").is_success
        message = error(add(c, "two", "d.md"), 403, "document_quota_exceeded")
        assert "holds 3 documents" in message and "AILB_RAG_MAX_DOCUMENTS" in message
        # A request that would pass it adds nothing at all.
        error(add(c, "one", "a.md", "e.md"), 403, "document_quota_exceeded")
        assert add(c, "one", "a.md").is_success  # replacing a document adds none
        listed = {x["name"]: x["documents"] for x in
                  c.get("/api/rag/collections", headers=ALICE).json()["data"]}  # fmt: skip
        assert listed == {"one": 2, "two": 1}
        # Bob's documents are his own count.
        assert c.post("/api/rag/collections", json={"name": "one"}, headers=BOB).is_success
        assert add(c, "one", "x.md", "y.md", "z.md", headers=BOB).is_success
        # Deleting a document frees its place.
        assert c.delete("/api/rag/collections/one/documents/b.md", headers=ALICE).is_success
        assert add(c, "two", "d.md").is_success


def test_bytes_per_ingestion_request(gw: Any) -> None:
    with httpx2.Client(base_url=gw.url, timeout=30) as c:
        assert c.post("/api/rag/collections", json={"name": "one"}, headers=ALICE).is_success
        euro = "€" * 334  # 334 characters, 1002 bytes of UTF-8
        r = c.post("/api/rag/collections/one/documents", headers=ALICE,
                   json={"documents": [{"id": "e.md", "text": euro}]})  # fmt: skip
        message = error(r, 413, "ingest_too_large")
        assert "1002 bytes" in message and "AILB_RAG_MAX_INGEST_BYTES" in message
        two = [{"id": f"{i}.md", "text": "x" * 600} for i in range(2)]  # over, together
        r = c.post("/api/rag/collections/one/documents", headers=ALICE, json={"documents": two})
        error(r, 413, "ingest_too_large")
        r = c.post("/api/rag/collections/one/documents", headers=ALICE,
                   json={"documents": [{"id": "fits.md", "text": "€" * 333}]})  # fmt: skip
        assert r.status_code == 200, r.text
        info = c.get("/api/rag/collections/one", headers=ALICE).json()
        assert info["documents"] == 1


def test_stored_bytes_per_key(openai_upstream: Any, gateway_factory: Any) -> None:
    env = {"ENABLE_RAG": "true", "AILB_RAG_MAX_BYTES": "2000"}
    gw = gateway_factory(gateway_config(openai_upstream.url), env)

    def put(name: str, doc_id: str, size: int) -> httpx2.Response:
        text = ("Harbour lamps. " * 200)[:size]
        return c.post(f"/api/rag/collections/{name}/documents", headers=ALICE,
                      json={"documents": [{"id": doc_id, "text": text}]})  # fmt: skip

    with httpx2.Client(base_url=gw.url, timeout=30) as c:
        for name in ("one", "two"):
            assert c.post("/api/rag/collections", json={"name": name}, headers=ALICE).is_success
        assert put("one", "a.md", 900).is_success
        assert put("two", "b.md", 900).is_success
        message = error(put("two", "c.md", 300), 403, "storage_quota_exceeded")
        assert "1800 bytes" in message and "AILB_RAG_MAX_BYTES" in message
        assert put("one", "a.md", 1100).is_success  # a replaced document counts once
        error(put("one", "a.md", 1101), 403, "storage_quota_exceeded")
        info = {x["name"]: x["bytes"] for x in
                c.get("/api/rag/collections", headers=ALICE).json()["data"]}  # fmt: skip
        assert info == {"one": 1100, "two": 900}
        assert c.delete("/api/rag/collections/one/documents/a.md", headers=ALICE).is_success
        assert put("two", "c.md", 1000).is_success
