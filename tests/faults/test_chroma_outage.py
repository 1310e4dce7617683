"""The Chroma server (memory and RAG) down and back, under a running gateway: requests are
answered without memory/RAG and say so, /healthz and gRPC GetStatus say DEGRADED, and once the
server is back memory and RAG work again -- no restart, turns remembered meanwhile not lost."""

from __future__ import annotations

import time

import httpx2
import openai
import pytest

from ailb.cluster.process import ManagedProcess
from ailb.control.proto import module_service_pb2 as pb
from tests.control.client import ControlClient
from tests.fakes.openai import gateway_config
from tests.faults.services import chroma_server

ALICE = {"Authorization": "Bearer sk-alice"}
GUIDE = "# Lighthouse\n\nThe lamp rotates every 7.5 seconds. Replace the bulb after 9000 hours."


@pytest.fixture
def chroma(tmp_path):
    server = chroma_server(tmp_path / "chroma").start()
    yield server
    server.kill()


def gateway(openai_upstream, gateway_factory, chroma: ManagedProcess):
    # Embeddings from the fake upstream (cheap, deterministic); the store is the Chroma server.
    return gateway_factory(
        gateway_config(openai_upstream.url),
        {
            "CHROMA_URL": chroma.url,
            "ENABLE_RAG": "true",
            "AILB_EMBEDDER": "openai",
            "AILB_EMBEDDING_BASE_URL": openai_upstream.url + "/v1",
            "AILB_EMBEDDING_API_KEY": "sk-embeddings",
        },
    )


@pytest.fixture
def gw(openai_upstream, gateway_factory, chroma):
    return gateway(openai_upstream, gateway_factory, chroma)


def ask(client: openai.OpenAI, text: str, stream: bool = False, **extra):
    """(headers, answer text) of one chat completion with AILB's extra fields."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=[{"role": "user", "content": text}],
        extra_body=extra,
        stream=stream,
    )
    assert raw.status_code == 200
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text == "Hello from the fake upstream."
    return raw.headers


def sent(upstream) -> str:
    """Everything the last chat request sent upstream, as one string."""
    return str(upstream.calls("/v1/chat/completions")[-1].body["messages"])


def status(gw, control: ControlClient) -> tuple[str, str, str, int, dict]:
    health = httpx2.get(gw.url + "/healthz", timeout=10).json()
    grpc = control.status()
    meta = dict(grpc.metadata)
    assert (meta["memory"], meta["rag"]) == (health["memory"]["status"], health["rag"]["status"])
    return health["status"], health["memory"]["status"], health["rag"]["status"], grpc.health, meta


def stored_turns(gw, chroma: ManagedProcess, session: str) -> list[str]:
    """The session's turns as the Chroma server holds them (asked directly, not the gateway)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma.port, settings=Settings(anonymized_telemetry=False)
    )
    name = gw.runtime.memory.memory.settings.collection
    got = client.get_collection(name).get(where={"session": session})
    return [d for d, m in zip(got["documents"], got["metadatas"], strict=True) if "part" not in m]


def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_chroma_down_degrades_then_recovers_without_restart(
    openai_upstream, gw, chroma, client_for
):
    client = client_for(gw, api_key="sk-alice")
    control = ControlClient(f"127.0.0.1:{gw.runtime.grpc_port}")
    try:
        with httpx2.Client(base_url=gw.url, timeout=30) as http:
            assert http.post("/api/rag/collections", json={"name": "harbour"},
                             headers=ALICE).status_code == 200  # fmt: skip
            r = http.post(
                "/api/rag/collections/harbour/documents",
                headers=ALICE,
                json={"documents": [{"id": "guide.md", "text": GUIDE}]},
            )
            assert r.status_code == 200, r.text
        assert (
            ask(client, "How often does the lamp rotate?", rag_collection="harbour")["x-ailb-rag"]
            == "hit"
        )
        assert ask(client, "My name is Alice.", session_id="s1")["x-ailb-memory"] == "miss"
        gw.call(gw.runtime.memory.memory.flush())
        assert ask(client, "What is my name?", session_id="s1")["x-ailb-memory"] == "hit"
        assert status(gw, control)[:4] == ("ok", "ok", "ok", pb.HEALTHY)

        chroma.kill()
        started = time.monotonic()
        headers = ask(client, "How often does the lamp rotate?", rag_collection="harbour")
        assert headers["x-ailb-rag"] == "degraded"
        assert "x-ailb-rag-sources" not in headers and "7.5 seconds" not in sent(openai_upstream)
        for session, stream in (("s2", False), ("s3", True)):
            text = f"My boat is called Seagull ({session})."
            assert ask(client, text, stream, session_id=session)["x-ailb-memory"] == "degraded"
        took = time.monotonic() - started
        assert took < 10, took  # a dead server is a refused connection, not a wait
        overall, memory, rag, grpc_health, meta = status(gw, control)
        assert (overall, memory, rag, grpc_health) == ("degraded", "degraded", "degraded",
                                                       pb.DEGRADED)  # fmt: skip
        assert meta["status"] == "degraded"

        chroma.start()  # same port, same data: nothing restarted on the gateway's side

        def rag_again() -> bool:
            h = ask(client, "How often does the lamp rotate?", rag_collection="harbour")
            return h["x-ailb-rag"] == "hit"

        assert eventually(rag_again)
        assert "7.5 seconds" in sent(openai_upstream)
        # The turns of s2 and s3 were answered while the store was down: stored now.
        assert eventually(lambda: stored_turns(gw, chroma, "s2") and stored_turns(gw, chroma, "s3"))
        for session in ("s2", "s3"):
            assert eventually(
                lambda s=session: (
                    ask(client, "What is my boat called?", session_id=s)["x-ailb-memory"] == "hit"
                )
            )
            assert f"Seagull ({session})" in sent(openai_upstream)
        assert eventually(lambda: status(gw, control)[:4] == ("ok", "ok", "ok", pb.HEALTHY))
    finally:
        control.close()


def test_a_gateway_started_before_chroma_connects_once_it_is_up(
    openai_upstream, gateway_factory, client_for, tmp_path
):
    chroma = chroma_server(tmp_path / "chroma")  # not started yet
    gw = gateway(openai_upstream, gateway_factory, chroma)
    client = client_for(gw, api_key="sk-alice")
    try:
        assert ask(client, "My boat is called Seagull.", session_id="s1")["x-ailb-memory"] == (
            "degraded"
        )
        chroma.start()
        # The store is opened again on use, at most every retry interval (5 s).
        assert eventually(
            lambda: (
                ask(client, "What is my boat called?", session_id="s1")["x-ailb-memory"] == "hit"
            ),
            timeout=15,
        )
        assert "Seagull" in sent(openai_upstream)
        assert eventually(lambda: "Seagull" in str(stored_turns(gw, chroma, "s1")))
        health = httpx2.get(gw.url + "/healthz", timeout=10).json()
        assert (health["status"], health["memory"]["status"]) == ("ok", "ok")
    finally:
        chroma.kill()
