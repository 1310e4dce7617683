"""Provider embedders (OpenAI /v1/embeddings, Ollama /api/embed): the pure translation
functions table by table, then the embedder against the fake servers over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from ailb.config import EMBEDDER_CREDENTIAL, Timeouts, load_settings
from ailb.embeddings import LocalEmbedder, build_embedder, provider
from ailb.embeddings.provider import (
    MAX_INPUT_CHARS,
    OLLAMA,
    OPENAI,
    EmbeddingError,
    ProviderEmbedder,
    Wire,
    batches,
    ollama_request,
    openai_request,
    parse_ollama,
    parse_openai,
    unit_rows,
)
from ailb.vectorstore.backend import VectorBackend
from tests.fakes.ollama import fake_ollama, ollama_error
from tests.fakes.openai import embeddings as openai_embeddings
from tests.fakes.openai import fake_openai, openai_error
from tests.fakes.server import FakeServer, Reply, fake_embedding

KEY = "test-embedding-key-0123456789"  # no sk- prefix: generic scrubbing would not catch it

# --- requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "texts", "dims", "expected"),
    [
        (openai_request, ["a", "b"], None,
         {"model": "m", "input": ["a", "b"], "encoding_format": "float"}),
        (openai_request, ["a"], 256,
         {"model": "m", "input": ["a"], "encoding_format": "float", "dimensions": 256}),
        (openai_request, ["", "x"], None,  # OpenAI refuses an empty string
         {"model": "m", "input": [" ", "x"], "encoding_format": "float"}),
        (ollama_request, ["a", "b"], None, {"model": "m", "input": ["a", "b"], "truncate": True}),
        (ollama_request, ["a"], 64, {"model": "m", "input": ["a"], "truncate": True,
                                     "dimensions": 64}),
        (ollama_request, [""], None, {"model": "m", "input": [" "], "truncate": True}),
    ],
)  # fmt: skip
def test_request_bodies(
    build: Callable[..., dict[str, Any]], texts: list[str], dims: int | None, expected: Any
) -> None:
    assert build("m", texts, dims) == expected


@pytest.mark.parametrize("build", [openai_request, ollama_request])
def test_long_inputs_are_cut(build: Callable[..., dict[str, Any]]) -> None:
    text = "word " * 10_000
    (sent,) = build("m", [text], None)["input"]
    assert sent == text[:MAX_INPUT_CHARS] and len(sent) == MAX_INPUT_CHARS


@pytest.mark.parametrize(
    ("sizes", "max_items", "max_chars", "expected"),
    [
        ([1] * 5, 2, 100, [(0, 2), (2, 4), (4, 5)]),
        ([1] * 4, 4, 100, [(0, 4)]),
        ([1], 256, 100, [(0, 1)]),
        ([40, 40, 40, 40], 10, 100, [(0, 2), (2, 4)]),  # characters bound a call too
        ([500, 1, 1], 10, 100, [(0, 1), (1, 3)]),  # one text over the bound is a call alone
        ([MAX_INPUT_CHARS * 3] * 2, 10, MAX_INPUT_CHARS * 2, [(0, 2)]),  # counted as cut
        ([], 10, 100, []),
    ],
)
def test_batches(
    sizes: list[int], max_items: int, max_chars: int, expected: list[tuple[int, int]]
) -> None:
    texts = ["x" * n for n in sizes]
    got = batches(texts, max_items, max_chars)
    assert [(r.start, r.stop) for r in got] == expected


# --- answers -----------------------------------------------------------------------------------


def _openai(*rows: tuple[int, Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in rows],
        "model": "m",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


@pytest.mark.parametrize(
    ("answer", "count", "expected"),
    [
        (_openai((0, [1.0, 0.0]), (1, [0.0, 2.0])), 2, [[1.0, 0.0], [0.0, 2.0]]),
        (_openai((1, [0.0, 2.0]), (0, [1.0, 0.0])), 2, [[1.0, 0.0], [0.0, 2.0]]),  # by index
        (_openai((0, [1, 2])), 1, [[1.0, 2.0]]),  # integers are numbers too
        ({"data": [{"index": 0, "embedding": [0.5]}]}, 1, [[0.5]]),  # extra fields optional
    ],
)
def test_parse_openai(answer: Any, count: int, expected: list[list[float]]) -> None:
    assert parse_openai(answer, count) == expected


@pytest.mark.parametrize(
    ("answer", "count", "problem"),
    [
        (_openai((0, [1.0])), 2, "1 vectors for 2 inputs"),
        (_openai((0, [1.0]), (1, [1.0])), 1, "2 vectors for 1 inputs"),
        (_openai((0, [1.0]), (2, [1.0])), 2, "indexes"),
        (_openai((0, [1.0]), (0, [2.0])), 2, "indexes"),
        (_openai((0, ["0.5"])), 1, "Expected `float`"),
        (_openai((0, [True])), 1, "Expected `float`"),
        (_openai((0, [None])), 1, "Expected `float`"),
        (_openai((0, "AAAAAA==")), 1, "Expected `array`"),  # base64, never asked for
        ({"object": "list"}, 1, "missing required field `data`"),
        ({"data": [{"embedding": [1.0]}]}, 1, "missing required field `index`"),
        ({"data": None}, 1, "Expected `array`"),
        ([1.0, 2.0], 1, "Expected `object`"),
        ({"error": {"message": "boom"}}, 1, "missing required field `data`"),
    ],
)
def test_parse_openai_refuses_bad_answers(answer: Any, count: int, problem: str) -> None:
    with pytest.raises(EmbeddingError, match="unexpected answer") as info:
        parse_openai(answer, count)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("answer", "count", "expected"),
    [
        ({"model": "m", "embeddings": [[1.0, 0.0], [0.0, 1.0]]}, 2, [[1.0, 0.0], [0.0, 1.0]]),
        ({"embeddings": [[3, 4]]}, 1, [[3.0, 4.0]]),
    ],
)
def test_parse_ollama(answer: Any, count: int, expected: list[list[float]]) -> None:
    assert parse_ollama(answer, count) == expected


@pytest.mark.parametrize(
    ("answer", "count", "problem"),
    [
        ({"embeddings": [[1.0]]}, 2, "1 vectors for 2 inputs"),
        ({"embeddings": []}, 1, "0 vectors for 1 inputs"),
        ({"embedding": [1.0]}, 1, "missing required field `embeddings`"),  # the old endpoint
        ({"embeddings": [["x"]]}, 1, "Expected `float`"),
        ({"embeddings": [1.0, 2.0]}, 2, "Expected `array`"),
        ({"embeddings": None}, 1, "Expected `array`"),
        ("not an object", 1, "Expected `object`"),
    ],
)
def test_parse_ollama_refuses_bad_answers(answer: Any, count: int, problem: str) -> None:
    with pytest.raises(EmbeddingError, match="unexpected answer") as info:
        parse_ollama(answer, count)
    assert problem in str(info.value)


def test_unit_rows_are_float32_of_unit_length() -> None:
    got = unit_rows([[3.0, 4.0], [0.0, -2.0]], None)
    assert got.dtype == np.float32 and got.shape == (2, 2)
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, -1.0]], rtol=1e-6)
    assert unit_rows([[1.0, 1.0]], 2).shape == (1, 2)


@pytest.mark.parametrize(
    ("rows", "dims", "problem"),
    [
        ([[1.0, 0.0], [1.0]], None, "mixed sizes [1, 2]"),
        ([[1.0, 0.0]], 3, "2-dimensional vectors, expected 3"),
        ([[1.0, float("nan")]], None, "non-finite"),
        ([[1.0, float("inf")]], None, "non-finite"),
        ([[1.0, 0.0], [0.0, 0.0]], None, "a zero vector"),
        ([[]], None, "empty vectors"),
    ],
)
def test_unit_rows_refuses_unusable_vectors(
    rows: list[list[float]], dims: int | None, problem: str
) -> None:
    with pytest.raises(EmbeddingError) as info:
        unit_rows(rows, dims)
    assert problem in str(info.value)


# --- against the fake servers ------------------------------------------------------------------


@pytest.fixture
def oai() -> Iterator[FakeServer]:
    server = fake_openai().start()
    yield server
    server.stop()


@pytest.fixture
def oll() -> Iterator[FakeServer]:
    server = fake_ollama().start()
    yield server
    server.stop()


# A whole answer (not streamed) is bounded by `total` alone: a hang ends after it.
FAST = Timeouts(connect=2, first_byte=0.5, idle=0.5, total=3)


def embedder_for(server: FakeServer, wire: Wire, **kw: Any) -> ProviderEmbedder:
    base = f"{server.url}/v1" if wire is OPENAI else server.url
    kw.setdefault("api_key", KEY if wire is OPENAI else None)
    kw.setdefault("timeouts", FAST)
    return ProviderEmbedder(wire, base, kw.pop("model", "emb-model"), **kw)


def using(embedder: ProviderEmbedder, work: Callable[[ProviderEmbedder], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await work(embedder)
        finally:
            await embedder.close()

    return asyncio.run(main())


def expected_rows(texts: list[str], dims: int = 64) -> np.ndarray[Any, Any]:
    raw = np.array([fake_embedding(t, dims) for t in texts], dtype=np.float64)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


TEXTS = [f"document {i} about topic {i % 7} and lamp number {i * 3}" for i in range(600)]


@pytest.mark.parametrize(
    ("wire", "path", "texts", "calls"),
    [
        (OPENAI, "/v1/embeddings", TEXTS, [256, 256, 88]),
        (OLLAMA, "/api/embed", TEXTS[:130], [64, 64, 2]),
    ],
)
def test_batches_across_several_calls_in_input_order(
    request: pytest.FixtureRequest, wire: Wire, path: str, texts: list[str], calls: list[int]
) -> None:
    server: FakeServer = request.getfixturevalue("oai" if wire is OPENAI else "oll")
    if wire is OPENAI:
        server.script(Reply(), Reply(reorder=True), Reply(reorder=True))  # ordered by index
    got = using(embedder_for(server, wire), lambda e: e.embed(texts))
    assert got.dtype == np.float32 and got.shape == (len(texts), 64)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(got, expected_rows(texts), atol=1e-6)
    sent = server.calls(path)
    assert sorted(len(c.body["input"]) for c in sent) == sorted(calls)
    assert sorted(t for c in sent for t in c.body["input"]) == sorted(texts)
    assert {c.body["model"] for c in sent} == {"emb-model"}


def test_calls_of_one_embed_run_concurrently_but_bounded() -> None:
    in_flight = [0]
    peak = [0]

    async def slow(server: FakeServer, req: web.Request, reply: Reply, body: Any) -> Any:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.15)
        in_flight[0] -= 1
        return await openai_embeddings(server, req, reply, body)

    server = FakeServer({("POST", "/v1/embeddings"): slow}).start()
    try:
        e = embedder_for(server, OPENAI, concurrency=2)
        got = using(e, lambda e: e.embed(TEXTS[:256] * 4))  # four calls
    finally:
        server.stop()
    assert got.shape == (1024, 64)
    assert len(server.calls("/v1/embeddings")) == 4
    assert peak[0] == 2


def test_ingestion_never_takes_the_last_connection() -> None:
    """A bulk embed (RAG ingestion) uses at most all but one of the calls at once, so a
    search's query is sent at once instead of waiting behind a whole document."""
    in_flight = [0]
    peak = [0]

    async def slow(server: FakeServer, req: web.Request, reply: Reply, body: Any) -> Any:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.6)
        in_flight[0] -= 1
        return await openai_embeddings(server, req, reply, body)

    async def work(e: ProviderEmbedder) -> float:
        assert e.bulk_slice == 2 * 256  # an ingestion turn fills the two connections it may use
        bulk = asyncio.create_task(e.embed(TEXTS[:256] * 6, bulk=True))  # six calls
        await asyncio.sleep(0.1)  # the bulk calls are out
        started = time.perf_counter()
        await e.embed(["How often does the lamp turn?"])
        waited = time.perf_counter() - started
        await bulk
        return waited

    server = FakeServer({("POST", "/v1/embeddings"): slow}).start()
    try:
        slow_ok = Timeouts(connect=2, first_byte=3, idle=3, total=10)
        waited = using(embedder_for(server, OPENAI, concurrency=3, timeouts=slow_ok), work)
    finally:
        server.stop()
    assert peak[0] == 3  # two bulk calls and the query
    assert waited < 0.9, waited  # its own call's time, not the ingestion's calls' first


def test_dimensions_are_sent_and_named(oai: FakeServer) -> None:
    e = embedder_for(oai, OPENAI, dimensions=16, model="text-embedding-3-small")
    assert e.name == "openai:text-embedding-3-small:16d"
    got = using(e, lambda e: e.embed(["lamp", "tide"]))
    assert got.shape == (2, 16)
    (call,) = oai.calls("/v1/embeddings")
    assert call.body == {
        "model": "text-embedding-3-small",
        "input": ["lamp", "tide"],
        "encoding_format": "float",
        "dimensions": 16,
    }


def test_without_dimensions_the_first_answer_teaches_the_size(oll: FakeServer) -> None:
    e = embedder_for(oll, OLLAMA, model="nomic-embed-text")
    assert (e.name, e.dimensions) == ("ollama:nomic-embed-text", 0)

    async def work(e: ProviderEmbedder) -> Any:
        empty = await e.embed([])  # no call, no size yet
        await e.warm_up()  # the probe
        return empty, await e.embed(["x"])

    empty, got = using(e, work)
    assert empty.shape == (0, 0) and got.shape == (1, 64) and e.dimensions == 64
    probe, call = oll.calls("/api/embed")
    assert probe.body["input"] == ["AILB embeddings probe"]
    assert "dimensions" not in call.body and call.body["truncate"] is True


def test_a_hanging_probe_fails_before_the_store_stops_waiting(
    oai: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider, "PROBE_TIMEOUT", 0.2)
    oai.script(Reply(hang=True))
    e = embedder_for(oai, OPENAI, timeouts=Timeouts(first_byte=30, total=60))
    with pytest.raises(EmbeddingError, match=r"no answer to the probe within 0\.2s"):
        using(e, lambda e: e.warm_up())
    assert VectorBackend(None, e).open_timeout > provider.PROBE_TIMEOUT  # type: ignore[arg-type]


def test_an_answer_of_another_size_than_learned_is_refused(oai: FakeServer) -> None:
    e = embedder_for(oai, OPENAI)
    e.dimensions = 384  # as if learned earlier from another model behind the same name
    with pytest.raises(EmbeddingError, match="64-dimensional vectors, expected 384"):
        using(e, lambda e: e.embed(["x"]))


def test_authorization_header_carries_the_key(oai: FakeServer, oll: FakeServer) -> None:
    using(embedder_for(oai, OPENAI), lambda e: e.embed(["x"]))
    (call,) = oai.calls("/v1/embeddings")
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.headers["Content-Type"] == "application/json"
    using(embedder_for(oll, OLLAMA), lambda e: e.embed(["x"]))  # Ollama without a key: none
    assert "Authorization" not in oll.calls("/api/embed")[0].headers
    using(embedder_for(oll, OLLAMA, api_key=KEY), lambda e: e.embed(["x"]))  # a proxy's key
    assert oll.calls("/api/embed")[1].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (Reply(status=401, error=openai_error(f"Incorrect API key provided: {KEY}.")),
         "HTTP 401: Incorrect API key provided: [redacted]"),
        (Reply(status=500, error=openai_error("The server had an error")),
         "HTTP 500: The server had an error"),
        (Reply(status=400, error=openai_error("This model's maximum context length is 8192")),
         "HTTP 400: This model's maximum context length"),
        (Reply(status=429, error=openai_error("Rate limit reached")), "HTTP 429: Rate limit"),
        (Reply(garbage=True), "the answer is not JSON"),
        (Reply(hang=True), "no response within 3s"),
        (Reply(drop=True), "connection closed by upstream"),
        (Reply(reorder=True, status=200, headers={"X-Test": "1"}), None),  # control: works
    ],
)  # fmt: skip
def test_openai_failures_raise_embedding_error_without_the_key(
    oai: FakeServer, reply: Reply, problem: str | None
) -> None:
    oai.script(reply)
    e = embedder_for(oai, OPENAI, model="text-embedding-3-small")
    if problem is None:
        assert using(e, lambda e: e.embed(["x", "y"])).shape == (2, 64)
        return
    with pytest.raises(EmbeddingError) as info:
        using(e, lambda e: e.embed(["x"]))
    text = str(info.value)
    assert text.startswith("openai embeddings (text-embedding-3-small): ")
    assert problem in text
    assert KEY not in text and KEY not in repr(info.value)


def test_a_key_across_the_cut_of_an_error_text_is_redacted_before_the_cut(
    oai: FakeServer,
) -> None:
    """Error texts are cut to 500 characters: redacting the key after the cut left its head."""
    oai.script(Reply(status=401, error=openai_error("x" * 490 + KEY)))
    with pytest.raises(EmbeddingError) as info:
        using(embedder_for(oai, OPENAI), lambda e: e.embed(["x"]))
    assert KEY[:10] not in str(info.value) and "[redacted]" in str(info.value)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (Reply(status=404, error=ollama_error('model "nomic-embed-text" not found')),
         'HTTP 404: model "nomic-embed-text" not found'),
        (Reply(status=500, error=ollama_error("llama runner process has terminated")),
         "HTTP 500: llama runner process has terminated"),
        (Reply(garbage=True), "the answer is not JSON"),
        (Reply(hang=True), "no response within 3s"),
        (Reply(drop=True), "connection closed by upstream"),
    ],
)  # fmt: skip
def test_ollama_failures_raise_embedding_error(oll: FakeServer, reply: Reply, problem: str) -> None:
    oll.script(reply)
    with pytest.raises(EmbeddingError) as info:
        using(embedder_for(oll, OLLAMA, model="nomic-embed-text"), lambda e: e.embed(["x"]))
    assert str(info.value).startswith("ollama embeddings (nomic-embed-text): ")
    assert problem in str(info.value)


def test_nothing_listening_is_an_embedding_error() -> None:
    server = fake_openai().start()
    url = server.url
    server.stop()
    e = ProviderEmbedder(OPENAI, f"{url}/v1", "m", None, timeouts=FAST)
    with pytest.raises(EmbeddingError, match="cannot connect"):
        using(e, lambda e: e.embed(["x"]))


def test_one_failed_call_fails_the_whole_embed(oai: FakeServer) -> None:
    oai.script(Reply(), Reply(status=500, error=openai_error("boom")), Reply())
    with pytest.raises(EmbeddingError, match="HTTP 500: boom"):
        using(embedder_for(oai, OPENAI, concurrency=1), lambda e: e.embed(TEXTS))


def test_counting_is_minilm_wordpiece_for_every_embedder(oai: FakeServer) -> None:
    local, remote = LocalEmbedder(), embedder_for(oai, OPENAI)
    texts = ["Chunking counts tokens the same way, whichever embedder embeds.", ""]
    assert remote.count_tokens(texts) == local.count_tokens(texts) == [17, 0]
    assert remote.token_ends(texts[0]) == local.token_ends(texts[0])
    assert remote.max_tokens == local.max_tokens == 254
    asyncio.run(remote.close())
    assert oai.requests == []  # counting never calls the provider


# --- build_embedder ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kind", "name", "url", "key"),
    [
        ({}, LocalEmbedder, "all-MiniLM-L6-v2", None, None),
        ({"AILB_EMBEDDER": "openai", "OPENAI_API_KEY": "sk-chat-key-000000"}, ProviderEmbedder,
         "openai:text-embedding-3-small", "https://api.openai.com/v1", "sk-chat-key-000000"),
        ({"AILB_EMBEDDER": "openai", "OPENAI_API_KEY": "sk-chat-key-000000",
          "AILB_EMBEDDING_API_KEY": KEY, "AILB_EMBEDDING_MODEL": "text-embedding-3-large",
          "AILB_EMBEDDING_DIMENSIONS": "256", "AILB_EMBEDDING_BASE_URL": "http://emb:9/v1/"},
         ProviderEmbedder, "openai:text-embedding-3-large:256d", "http://emb:9/v1", KEY),
        ({"AILB_EMBEDDER": "ollama", "OLLAMA_BASE_URL": "http://gpu:11434"}, ProviderEmbedder,
         "ollama:nomic-embed-text", "http://gpu:11434", None),
        ({"AILB_EMBEDDER": "ollama"}, ProviderEmbedder, "ollama:nomic-embed-text",
         "http://localhost:11434", None),
    ],
)  # fmt: skip
def test_build_embedder_from_the_environment(
    env: dict[str, str], kind: type, name: str, url: str | None, key: str | None
) -> None:
    settings = load_settings(env)
    e = build_embedder(settings.env, settings.credentials)
    assert isinstance(e, kind) and e.name == name
    assert settings.credentials.get(EMBEDDER_CREDENTIAL) == key
    if isinstance(e, ProviderEmbedder):
        assert settings.env.embedding_base_url == url
        head = e._head.decode()
        assert (f"Authorization: Bearer {key}" in head) is (key is not None)
        assert KEY not in repr(e) and KEY not in repr(settings)
    asyncio.run(e.close())


def test_build_embedder_fills_defaults_for_settings_made_in_code() -> None:
    env = load_settings({}).env
    e = build_embedder(env.__class__(embedder="ollama"), {})
    assert isinstance(e, ProviderEmbedder) and e.name == "ollama:nomic-embed-text"
    assert e._head.startswith(b"POST /api/embed HTTP/1.1\r\nHost: localhost:11434\r\n")
    asyncio.run(e.close())
