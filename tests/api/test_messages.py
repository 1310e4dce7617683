"""POST /v1/messages and /v1/messages/count_tokens end to end, the official anthropic SDK as
client: passed through to the Anthropic-format fake, translated for the OpenAI-format and
Ollama fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import pytest

from tests.fakes.anthropic import anthropic_error, counted_tokens, fake_anthropic
from tests.fakes.ollama import fake_ollama
from tests.fakes.openai import fake_openai, openai_error
from tests.fakes.server import FakeServer, Reply, ToolCall
from tests.gateway import RunningGateway

MODEL = "m-test"
KEY = "sk-ant-upstream-secret-123456"
MASTER = "sk-master-messages-test-0001"
KINDS = ["anthropic", "openai", "ollama"]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions", "ollama": "/api/chat"}


def deployment(kind: str, url: str, name: str = "dep") -> str:
    base = f"{url}/v1" if kind == "openai" else url
    key = "    api_key_env: ANTHROPIC_KEY_REF\n" if kind == "anthropic" else ""
    return (
        f"  - name: {name}\n    provider: {kind}\n    base_url: {base}\n{key}"
        f"    models: [{MODEL}]\n"
        "    timeouts: {connect: 2, first_byte: 5, idle: 5, total: 10}\n"
    )


def start_fake(kind: str) -> FakeServer:
    server = {"anthropic": fake_anthropic, "openai": fake_openai, "ollama": fake_ollama}[kind]()
    return server.start()


@dataclass
class Face:
    kind: str
    upstream: FakeServer
    gateway: RunningGateway
    client: anthropic.Anthropic

    def sent(self) -> dict[str, Any]:
        return dict(self.upstream.calls(PATHS[self.kind])[-1].body)

    def headers(self) -> dict[str, str]:
        return self.upstream.calls(PATHS[self.kind])[-1].headers


@pytest.fixture
def make_face(gateway_factory: Any) -> Iterator[Any]:
    servers: list[FakeServer] = []
    clients: list[anthropic.Anthropic] = []

    def make(kind: str, env: dict[str, str] | None = None, api_key: str = "sk-client") -> Face:
        server = start_fake(kind)
        servers.append(server)
        gw = gateway_factory(
            "deployments:\n" + deployment(kind, server.url),
            {"ANTHROPIC_KEY_REF": KEY, **(env or {})},
        )
        client = anthropic.Anthropic(base_url=gw.url, api_key=api_key, max_retries=0, timeout=20)
        clients.append(client)
        return Face(kind, server, gw, client)

    yield make
    for c in clients:
        c.close()
    for s in servers:
        s.stop()


@pytest.fixture(params=KINDS)
def face(request: pytest.FixtureRequest, make_face: Any) -> Face:
    return make_face(request.param)  # type: ignore[no-any-return]


# --- create ---------------------------------------------------------------------------------------


def test_create_plain(face: Face) -> None:
    face.upstream.script(Reply(text="Bonjour!", usage=(12, 4)))
    msg = face.client.messages.create(
        model=MODEL,
        max_tokens=100,
        system="Answer in French.",
        messages=[{"role": "user", "content": "Hello"}],
        stop_sequences=["END"],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Bonjour!"  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (12, 4)
    sent = face.sent()
    if face.kind == "anthropic":  # passed through as it was sent
        assert sent == {
            "model": MODEL,
            "max_tokens": 100,
            "system": "Answer in French.",
            "messages": [{"role": "user", "content": "Hello"}],
            "stop_sequences": ["END"],
        }
        assert face.headers()["x-api-key"] == KEY
        # The client's API version, forwarded (the SDK's own, not the provider's default).
        assert (
            face.headers()["anthropic-version"] == face.client.default_headers["anthropic-version"]
        )
    else:
        assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}
        assert sent["messages"][-1]["role"] == "user"
    if face.kind == "openai":
        assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 100
        assert sent["stop"] == ["END"]


def test_pass_through_keeps_everything_anthropic_has(make_face: Any) -> None:
    face = make_face("anthropic")
    face.upstream.script(Reply(text="Cached.", usage=(30, 2)))
    cache = {"type": "ephemeral"}
    system = [{"type": "text", "text": "A long, cacheable preamble.", "cache_control": cache}]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise.", "cache_control": {"type": "ephemeral"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    "title": "doc.pdf",
                },
            ],
        }
    ]
    msg = face.client.messages.create(
        model=MODEL,
        max_tokens=50,
        system=system,
        messages=messages,
        extra_body={"top_k": 5},
        metadata={"user_id": "u-1"},
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    assert msg.id == "msg_fake"  # the upstream's own message
    sent = face.sent()
    assert sent["system"] == system and sent["messages"] == messages
    assert sent["top_k"] == 5 and sent["metadata"] == {"user_id": "u-1"}
    headers = face.headers()
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert headers["x-api-key"] == KEY  # the deployment's key, never the client's


def test_signed_thinking_passes_through(make_face: Any) -> None:
    face = make_face("anthropic")
    face.upstream.script(Reply(text="42.", reasoning="Six times seven."))
    msg = face.client.messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "6*7?"}],
    )
    thinking = msg.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Six times seven."
    assert thinking.signature.startswith("sig-")
    face.upstream.script(Reply(text="Yes."))
    face.client.messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": "6*7?"},
            {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
            {"role": "user", "content": "Sure?"},
        ],
    )
    assert face.sent()["messages"][1]["content"][0]["signature"] == thinking.signature


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_thinking_is_reasoning_effort_when_translated(make_face: Any, kind: str) -> None:
    face = make_face(kind)
    face.upstream.script(Reply(text="42.", reasoning="Six times seven."))
    face.client.messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "6*7?"}],
    )
    sent = face.sent()
    if kind == "openai":
        assert sent["reasoning_effort"] == "low"
    else:
        assert sent["think"] is not None


def test_tools_round_trip(face: Face) -> None:
    call = ToolCall(name="get_weather", arguments='{"city": "Paris"}', id="toolu_01")
    face.upstream.script(
        Reply(text="", tool_calls=[call], finish_reason="tool_calls"), Reply(text="Sunny.")
    )
    question = {"role": "user", "content": "Weather in Paris?"}
    first = face.client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[question],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "any"},
    )
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    sent = face.sent()
    if face.kind == "openai":
        assert sent["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]
        assert sent["tool_choice"] == "required"
    second = face.client.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[
            question,  # type: ignore[list-item]
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny"}],
            },
        ],
    )
    assert second.content[0].text == "Sunny."  # type: ignore[union-attr]
    sent = face.sent()
    if face.kind == "openai":
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": use.id, "content": "Sunny"}
        assert sent["messages"][-2]["tool_calls"][0]["id"] == use.id
    if face.kind == "anthropic":
        assert sent["messages"][-1]["content"][0]["tool_use_id"] == "toolu_01"


# --- streams --------------------------------------------------------------------------------------


def test_stream_helpers(face: Face) -> None:
    face.upstream.script(Reply(text="One two three four", usage=(20, 6), pieces=4))
    with face.client.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Count"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "One two three four"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 6)
    assert face.sent()["stream"] is True


def test_stream_tool_call(face: Face) -> None:
    call = ToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="toolu_02")
    face.upstream.script(Reply(text="Let me check.", tool_calls=[call], finish_reason="tool_calls"))
    with face.client.messages.stream(
        model=MODEL,
        max_tokens=100,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"


def test_stream_event_sequence_translated(make_face: Any) -> None:
    face = make_face("openai")
    face.upstream.script(Reply(text="ab", pieces=2, usage=(5, 2)))
    with httpx2.stream(
        "POST",
        f"{face.gateway.url}/v1/messages",
        json={
            "model": MODEL,
            "max_tokens": 10,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    lines = body.split("\n")
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event:")]
    assert events == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_broken_stream_ends_with_an_error_event_not_message_stop(make_face: Any, kind: str) -> None:
    face = make_face(kind)
    if kind == "anthropic":  # paced: the error comes after the first byte
        error = anthropic_error("overloaded_error", "x")
        broken = Reply(text="partial answer", stream_error=error, chunk_delay=0.05)
    else:
        broken = Reply(text="partial answer here", pieces=3, cut_after=3)
    face.upstream.script(broken)
    with httpx2.stream(
        "POST",
        f"{face.gateway.url}/v1/messages",
        json={
            "model": MODEL,
            "max_tokens": 10,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    ) as r:
        body = r.read().decode()
    assert "event: message_stop" not in body
    assert "event: error" in body
    last = body.strip().split("\n")[-1]
    error = json.loads(last.removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    face.upstream.script(broken)
    with (
        pytest.raises(anthropic.APIStatusError),
        face.client.messages.stream(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        stream.get_final_message()


# --- count_tokens ---------------------------------------------------------------------------------


def test_count_tokens(face: Face) -> None:
    messages = [{"role": "user", "content": "How many tokens is this sentence, roughly?"}]
    counted = face.client.messages.count_tokens(
        model=MODEL,
        system="Be brief.",
        messages=messages,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
    )
    if face.kind == "anthropic":
        body = face.upstream.calls("/v1/messages/count_tokens")[-1].body
        assert body == {"model": MODEL, "system": "Be brief.", "messages": messages, "tools": TOOLS}
        assert counted.input_tokens == counted_tokens(body)
    else:
        assert 20 < counted.input_tokens < 200  # the gateway's estimate
        assert face.upstream.calls(PATHS[face.kind]) == []  # no model call


# --- keys and errors ------------------------------------------------------------------------------


def test_x_api_key_and_bearer_authenticate(make_face: Any) -> None:
    face = make_face("openai", {"AILB_MASTER_KEY": MASTER}, api_key=MASTER)
    face.upstream.script(Reply(text="ok"), Reply(text="ok"))
    msg = face.client.messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert msg.content[0].text == "ok"  # type: ignore[union-attr]
    with anthropic.Anthropic(base_url=face.gateway.url, auth_token=MASTER, max_retries=0) as bearer:
        msg = bearer.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert msg.content[0].text == "ok"  # type: ignore[union-attr]
    with anthropic.Anthropic(
        base_url=face.gateway.url, api_key="sk-wrong-key", max_retries=0
    ) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as e:
            wrong.messages.create(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert e.value.status_code == 401
        assert e.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "Incorrect API key provided."},
        }
        with pytest.raises(anthropic.AuthenticationError):
            wrong.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_key_model_permissions_apply(make_face: Any) -> None:
    from tests.gateway import create_key

    face = make_face("anthropic", {"AILB_MASTER_KEY": MASTER})
    key = create_key(face.gateway.url, MASTER, models=["another-model"])["key"]
    with anthropic.Anthropic(base_url=face.gateway.url, api_key=key, max_retries=0) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as e:
            client.messages.create(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert e.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        with pytest.raises(anthropic.PermissionDeniedError):
            client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert face.upstream.calls("/v1/messages") == []


def test_errors_are_typed_sdk_exceptions(face: Face) -> None:
    with pytest.raises(anthropic.NotFoundError) as e:
        face.client.messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert e.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    r = httpx2.post(
        f"{face.gateway.url}/v1/messages",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 400
    assert r.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "max_tokens: Field required (a positive integer)",
        },
    }
    r = httpx2.post(f"{face.gateway.url}/v1/messages", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_refusals_and_failures(make_face: Any, kind: str) -> None:
    face = make_face(kind)
    error = {
        "anthropic": anthropic_error("invalid_request_error", "messages: bad thing"),
        "openai": openai_error("bad thing"),
        "ollama": {"error": "bad thing"},
    }[kind]
    face.upstream.script(Reply(status=400, error=error))
    with pytest.raises(anthropic.BadRequestError) as e:
        face.client.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert "bad thing" in e.value.body["error"]["message"]  # type: ignore[index]
    face.upstream.script(Reply(status=500, error={}))
    with pytest.raises(anthropic.InternalServerError):
        face.client.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_what_only_anthropic_does_is_refused_by_name(make_face: Any, kind: str) -> None:
    face = make_face(kind)
    with pytest.raises(anthropic.BadRequestError) as e:
        face.client.messages.create(
            model=MODEL,
            max_tokens=5,
            extra_body={"top_k": 3},
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "top_k" in e.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as e:
        face.client.messages.create(
            model=MODEL,
            max_tokens=5,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "web_search_20250305" in e.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as e:  # streamed: refused before any byte
        face.client.messages.create(
            model=MODEL,
            max_tokens=5,
            stream=True,
            extra_body={"container": "c-1"},
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "container" in e.value.body["error"]["message"]  # type: ignore[index]
    assert face.upstream.calls(PATHS[kind]) == []


def test_mixed_deployments_pass_through_or_translate_per_attempt(gateway_factory: Any) -> None:
    """A model on an Anthropic and an OpenAI-format deployment: an attempt that fails over
    from one to the other uses the other's format."""
    ant, oai = start_fake("anthropic"), start_fake("openai")
    try:
        config = (
            f"models: {{{MODEL}: {{strategy: failover}}}}\ndeployments:\n"
            + deployment("anthropic", ant.url, "a").replace("models:", "priority: 1\n    models:")
            + deployment("openai", oai.url, "o").replace("models:", "priority: 2\n    models:")
        )
        gw = gateway_factory(config, {"ANTHROPIC_KEY_REF": KEY})
        ant.script(Reply(status=529, error=anthropic_error("overloaded_error", "Overloaded")))
        oai.script(Reply(text="From OpenAI."))
        with anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0) as client:
            msg = client.messages.create(
                model=MODEL,
                max_tokens=5,
                system=[{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
                messages=[{"role": "user", "content": "hi"}],
            )
        assert msg.content[0].text == "From OpenAI."  # type: ignore[union-attr]
        assert len(ant.calls("/v1/messages")) == 1
        assert oai.calls("/v1/chat/completions")[-1].body["messages"][0] == {
            "role": "system",
            "content": "S",
        }
    finally:
        ant.stop()
        oai.stop()


# --- memory, RAG, usage ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_memory_through_metadata_session_id(make_face: Any, kind: str) -> None:
    face = make_face(kind)
    face.upstream.script(Reply(text="Nice to meet you, Alice."), Reply(text="In Lisbon."))
    face.client.messages.create(
        model=MODEL,
        max_tokens=50,
        metadata={"session_id": "s-msg"},  # type: ignore[typeddict-unknown-key]
        messages=[{"role": "user", "content": "My name is Alice and I live in Lisbon."}],
    )
    raw = face.client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=50,
        system="Be brief.",
        extra_body={"session_id": "s-msg"},
        messages=[{"role": "user", "content": "Where do I live?"}],
    )
    assert raw.headers["x-ailb-memory"] == "hit"
    sent = face.sent()
    if kind == "anthropic":
        assert "metadata" not in sent and "session_id" not in sent  # never sent to Anthropic
        assert sent["system"].startswith("Be brief.\n\nEarlier turns of this conversation")
        assert "user: My name is Alice and I live in Lisbon." in sent["system"]
        assert sent["messages"] == [{"role": "user", "content": "Where do I live?"}]
    else:
        block = sent["messages"][1]["content"]
        assert "assistant: Nice to meet you, Alice." in block


def test_usage_record_says_messages(make_face: Any) -> None:
    face = make_face("anthropic", {"AILB_MASTER_KEY": MASTER}, api_key=MASTER)
    face.upstream.script(Reply(text="ok", usage=(9, 3)))
    face.client.messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    r = httpx2.get(f"{face.gateway.url}/metrics", headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 200, r.text
    assert 'api="messages"' in r.text


def test_unknown_method_and_request_id_in_anthropic_shape(make_face: Any) -> None:
    face = make_face("openai")
    r = httpx2.get(f"{face.gateway.url}/v1/messages")
    assert r.status_code == 405
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    face.upstream.script(Reply(text="ok"))
    raw = face.client.messages.with_raw_response.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.request_id == raw.headers["x-request-id"]
    r = httpx2.post(f"{face.gateway.url}/messages", json={"model": MODEL})  # without /v1
    assert r.status_code == 400 and r.json()["type"] == "error"


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_rag_passages_reach_both_paths(make_face: Any, kind: str) -> None:
    face = make_face(kind, {"ENABLE_RAG": "true"}, api_key="sk-alice")
    alice = {"x-api-key": "sk-alice"}
    with httpx2.Client(base_url=face.gateway.url, timeout=30) as c:
        assert c.post("/api/rag/collections", json={"name": "harbour"}, headers=alice).is_success
        docs = [{"id": "tides.txt", "text": "Tide tables come out every Monday.", "format": "text"}]
        r = c.post(
            "/api/rag/collections/harbour/documents", json={"documents": docs}, headers=alice
        )
        assert r.is_success, r.text
    face.upstream.script(Reply(text="Mondays.", pieces=2))
    with face.client.messages.with_streaming_response.create(
        model=MODEL,
        max_tokens=20,
        stream=True,
        system="You are the harbour assistant.",
        extra_body={"rag_collection": "harbour", "rag_top_k": 1},
        messages=[{"role": "user", "content": "When do tide tables come out?"}],
    ) as resp:
        assert resp.headers["x-ailb-rag"] == "hit"
        assert resp.headers["x-ailb-rag-sources"] == "tides.txt#0"
        body = resp.read().decode()
    assert body.count("text_delta") == 2 and body.endswith(
        "event: message_stop\n" + ('data: {"type":"message_stop"}\n\n')
    )
    sent = face.sent()
    assert "rag_collection" not in sent and "rag_top_k" not in sent
    if kind == "anthropic":
        assert sent["system"].startswith("You are the harbour assistant.\n\n")
        assert "every Monday" in sent["system"]
    else:
        assert "every Monday" in sent["messages"][1]["content"]
