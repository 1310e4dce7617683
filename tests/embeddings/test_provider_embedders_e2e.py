"""Provider embedders through a running gateway: RAG and memory with AILB_EMBEDDER=openai or
ollama against the fake servers, the official openai SDK as the chat client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from ailb.memory.service import memory_collection
from tests.fakes.ollama import fake_ollama
from tests.fakes.openai import fake_openai, gateway_config, openai_error
from tests.fakes.server import FakeServer, Reply
from tests.rag.test_rag_e2e import ALICE, GUIDE, NOTES

KEY = "emb-key-0123456789abcdef"


@pytest.fixture
def embeddings_upstream(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    """The embeddings provider, apart from the chat upstream: its failures are its own."""
    server = (fake_openai if request.param == "openai" else fake_ollama)().start()
    yield server
    server.stop()


def embedder_env(kind: str, server_url: str) -> dict[str, str]:
    if kind == "openai":
        return {"AILB_EMBEDDER": "openai", "AILB_EMBEDDING_BASE_URL": f"{server_url}/v1",
                "AILB_EMBEDDING_API_KEY": KEY}  # fmt: skip
    return {"AILB_EMBEDDER": "ollama", "AILB_EMBEDDING_BASE_URL": server_url}


EMBED_PATH = {"openai": "/v1/embeddings", "ollama": "/api/embed"}
NAMES = {"openai": "openai:text-embedding-3-small", "ollama": "ollama:nomic-embed-text"}
BOTH = pytest.mark.parametrize(
    ("embeddings_upstream", "kind"), [("openai", "openai"), ("ollama", "ollama")],
    indirect=["embeddings_upstream"],
)  # fmt: skip


def start(gateway_factory: Any, chat: FakeServer, kind: str, emb_url: str, **env: str) -> Any:
    return gateway_factory(
        gateway_config(chat.url), {"ENABLE_RAG": "true", **embedder_env(kind, emb_url), **env}
    )


def add_docs(c: httpx2.Client, name: str = "harbour") -> httpx2.Response:
    return c.post(
        f"/api/rag/collections/{name}/documents",
        headers=ALICE,
        json={"documents": [{"id": "guide.md", "text": GUIDE},
                            {"id": "notes/tides.txt", "text": NOTES}]},
    )  # fmt: skip


def ask(client: openai.OpenAI, text: str, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": text}], extra_body=extra
    )


@BOTH
def test_rag_with_a_provider_embedder(
    openai_upstream: FakeServer, embeddings_upstream: FakeServer, kind: str,
    gateway_factory: Any, client_for: Any,
) -> None:  # fmt: skip
    gw = start(gateway_factory, openai_upstream, kind, embeddings_upstream.url)
    with httpx2.Client(base_url=gw.url, timeout=30) as c:
        created = c.post("/api/rag/collections", json={"name": "harbour"}, headers=ALICE)
        assert created.status_code == 200, created.text
        assert created.json()["embedder"] == NAMES[kind]  # recorded with the collection
        assert add_docs(c).status_code == 200
        q = c.post("/api/rag/collections/harbour/query", headers=ALICE,
                   json={"query": "When are tide tables published?", "top_k": 2})  # fmt: skip
        assert q.json()["data"][0]["id"] == "notes/tides.txt#0"
        assert c.get("/healthz").json()["rag"]["status"] == "ok"
    resp = ask(client_for(gw, api_key="sk-alice"), "How often does the lamp rotate?",
               rag_collection="harbour", rag_top_k=1)  # fmt: skip
    assert resp.headers["x-ailb-rag"] == "hit"
    assert resp.headers["x-ailb-rag-sources"] == "guide.md#0"
    assert "every 7.5 seconds" in openai_upstream.calls("/v1/chat/completions")[-1].body[
        "messages"][0]["content"]  # fmt: skip
    # The provider embedded the probe, the chunks and both questions; the chat upstream none.
    calls = embeddings_upstream.calls(EMBED_PATH[kind])
    inputs = [t for call in calls for t in call.body["input"]]
    assert inputs[0] == "AILB embeddings probe"
    assert NOTES in inputs and "How often does the lamp rotate?" in inputs
    assert {call.body["model"] for call in calls} == {NAMES[kind].split(":")[1]}
    auth = {call.headers.get("Authorization") for call in calls}
    assert auth == ({f"Bearer {KEY}"} if kind == "openai" else {None})
    assert openai_upstream.calls("/v1/embeddings") == []


@BOTH
def test_memory_with_a_provider_embedder_recalls_an_older_turn(
    openai_upstream: FakeServer, embeddings_upstream: FakeServer, kind: str,
    gateway_factory: Any, client_for: Any,
) -> None:  # fmt: skip
    gw = start(gateway_factory, openai_upstream, kind, embeddings_upstream.url,
               AILB_MEMORY_RECENT_TURNS="1")  # fmt: skip
    memory = gw.runtime.memory.memory
    # Its own collection: vectors of another embedder never share it.
    assert memory.settings.collection == memory_collection(NAMES[kind])
    assert memory.settings.collection.startswith(f"ailb_memory_turns-{kind}-")
    client = client_for(gw, api_key="sk-alice")
    openai_upstream.script(Reply(text="Good to know."), Reply(text="Noted."),
                           Reply(text="Fine."), Reply(text="In Porto."))  # fmt: skip
    ask(client, "My sister Maria lives in Porto.", session_id="s1")
    ask(client, "The garden needs watering this week.", session_id="s1")
    ask(client, "We had pasta for dinner.", session_id="s1")
    gw.call(memory.flush())
    memory._cache.clear()  # read back from the store
    resp = ask(client, "Which city does my sister Maria live in?", session_id="s1")
    assert resp.headers["x-ailb-memory"] == "hit"
    sent = openai_upstream.calls("/v1/chat/completions")[-1].body["messages"]
    block = next(m["content"] for m in sent if "```memory" in str(m["content"]))
    assert "user: My sister Maria lives in Porto." in block  # recalled by similarity
    assert "assistant: Fine." in block  # the one recent turn
    inputs = [t for c in embeddings_upstream.calls(EMBED_PATH[kind]) for t in c.body["input"]]
    assert "My sister Maria lives in Porto." in inputs  # stored with the provider's vectors
    assert "Which city does my sister Maria live in?" in inputs  # and recalled with them


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("down", ["unreachable", "bad key"])
def test_embedder_down_answers_chat_without_memory_and_rag(
    openai_upstream: FakeServer, gateway_factory: Any, client_for: Any, down: str
) -> None:
    rejecting = fake_openai().start()
    rejecting.default = Reply(status=401, error=openai_error(f"Incorrect API key: {KEY}"))
    try:
        url = f"http://127.0.0.1:{closed_port()}" if down == "unreachable" else rejecting.url
        gw = start(gateway_factory, openai_upstream, "openai", url)
        resp = ask(client_for(gw, api_key="sk-alice"), "hello", session_id="s1",
                   rag_collection="harbour")  # fmt: skip
        assert resp.parse().choices[0].message.content == "Hello from the fake upstream."
        assert resp.headers["x-ailb-memory"] == "degraded"
        assert resp.headers["x-ailb-rag"] == "degraded"
        with httpx2.Client(base_url=gw.url, timeout=30) as c:
            health = c.get("/healthz")
            r = c.get("/api/rag/collections", headers=ALICE)
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        for feature in ("memory", "rag"):
            part = health.json()[feature]
            assert part["status"] == "degraded"
            assert "openai embeddings (text-embedding-3-small)" in part["detail"]
            assert ("cannot connect" if down == "unreachable" else "HTTP 401") in part["detail"]
        assert KEY not in health.text
        assert r.status_code == 503
    finally:
        rejecting.stop()
    if down == "bad key":
        assert rejecting.calls("/v1/embeddings")[0].headers["Authorization"] == f"Bearer {KEY}"


def test_embedder_failing_after_start_is_a_503_and_degrades_chat_until_it_recovers(
    openai_upstream: FakeServer, gateway_factory: Any, client_for: Any
) -> None:
    emb = fake_openai().start()
    try:
        gw = start(gateway_factory, openai_upstream, "openai", emb.url)
        client = client_for(gw, api_key="sk-alice")
        with httpx2.Client(base_url=gw.url, timeout=30) as c:
            c.post("/api/rag/collections", json={"name": "harbour"}, headers=ALICE)
            assert add_docs(c).status_code == 200
            emb.default = Reply(status=500, error=openai_error("The server had an error"))
            for r in (
                add_docs(c),
                c.post("/api/rag/collections/harbour/query", json={"query": "lamp"},
                       headers=ALICE),
            ):  # fmt: skip
                assert r.status_code == 503, r.text
                assert r.json()["error"]["message"] == "The embedder is unavailable; try again."
            resp = ask(client, "lamp?", rag_collection="harbour")
            assert resp.headers["x-ailb-rag"] == "degraded"
            rag = c.get("/healthz").json()["rag"]
            assert rag["status"] == "degraded" and "HTTP 500" in rag["detail"]
            emb.default = Reply()
            assert ask(client, "lamp?", rag_collection="harbour").headers["x-ailb-rag"] == "hit"
            assert c.get("/healthz").json()["rag"]["status"] == "ok"
    finally:
        emb.stop()


def test_switching_embedder_refuses_old_collections_and_starts_memory_afresh(
    openai_upstream: FakeServer, gateway_factory: Any, client_for: Any
) -> None:
    emb_a, emb_b = fake_openai().start(), fake_ollama().start()
    try:
        first = start(gateway_factory, openai_upstream, "openai", emb_a.url)
        with httpx2.Client(base_url=first.url, timeout=30) as c:
            c.post("/api/rag/collections", json={"name": "harbour"}, headers=ALICE)
            assert add_docs(c).status_code == 200
        ask(client_for(first, api_key="sk-alice"), "My PIN is 4321.", session_id="s1")
        first.call(first.runtime.memory.memory.flush())
        first.stop()

        # Same data directory, another embedder (vectors of the same size: the name decides).
        second = start(gateway_factory, openai_upstream, "ollama", emb_b.url)
        with httpx2.Client(base_url=second.url, timeout=30) as c:
            info = c.get("/api/rag/collections/harbour", headers=ALICE).json()
            assert info["embedder"] == "openai:text-embedding-3-small"
            for r in (add_docs(c), c.post("/api/rag/collections/harbour/query",
                                          json={"query": "lamp"}, headers=ALICE)):  # fmt: skip
                assert r.status_code == 409, r.text
                assert r.json()["error"]["code"] == "embedder_mismatch"
            assert c.get("/api/sessions/s1", headers=ALICE).status_code == 404  # afresh
        with pytest.raises(openai.ConflictError):
            ask(client_for(second, api_key="sk-alice"), "lamp?", rag_collection="harbour")
        assert emb_b.calls("/api/embed")[0].body["input"] == ["AILB embeddings probe"]
    finally:
        emb_a.stop()
        emb_b.stop()
