"""The Anthropic and Ollama fakes, and the embeddings endpoints of the OpenAI and Ollama fakes,
speak their providers' wire formats over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.anthropic import anthropic_error, fake_anthropic
from tests.fakes.ollama import fake_ollama, ollama_error
from tests.fakes.openai import fake_openai, openai_error
from tests.fakes.server import FakeServer, Reply, ToolCall, fake_embedding

Response = tuple[int, str, bytes]


def fetch(
    url: str, body: Any = None, method: str = "POST", cut: bool = False, timeout: float = 30
) -> Response:
    """(status, content type, body); with cut=True the body must end in a dropped connection
    and is what arrived before it."""

    async def go() -> Response:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.request(method, url, json=body) as r,
        ):
            ctype = r.headers.get("Content-Type", "")
            if not cut:
                return r.status, ctype, await r.read()
            got = bytearray()
            with pytest.raises(aiohttp.ClientPayloadError):
                async for piece in r.content.iter_any():
                    got += piece
            return r.status, ctype, bytes(got)

    return asyncio.run(go())


def sse_events(raw: bytes) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def _running(factory: Callable[[], FakeServer]) -> Iterator[FakeServer]:
    server = factory().start()
    yield server
    server.stop()


@pytest.fixture
def anth() -> Iterator[FakeServer]:
    yield from _running(fake_anthropic)


@pytest.fixture
def oll() -> Iterator[FakeServer]:
    yield from _running(fake_ollama)


@pytest.fixture
def oai() -> Iterator[FakeServer]:
    yield from _running(fake_openai)


TOOL = ToolCall(name="get_weather", arguments='{"city": "Paris"}', id="toolu_1")
WEATHER = {"name": "get_weather", "input_schema": {"type": "object"}}
HI = [{"role": "user", "content": "hi"}]


def anth_req(**kw: Any) -> dict[str, Any]:
    """A request the Messages API takes, offering the get_weather tool."""
    return {"model": "m", "max_tokens": 5, "messages": HI, "tools": [WEATHER], **kw}


USAGE_A = {
    "input_tokens": 11,
    "output_tokens": 7,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}


@pytest.mark.parametrize(
    ("finish", "stops", "reason", "seq"),
    [
        ("stop", None, "end_turn", None),
        ("length", None, "max_tokens", None),
        ("tool_calls", None, "tool_use", None),
        ("stop_sequence", ["END", "X"], "stop_sequence", "END"),
    ],
)
def test_anthropic_message(
    anth: FakeServer, finish: str, stops: list[str] | None, reason: str, seq: str | None
) -> None:
    anth.script(Reply(text="Hi", tool_calls=[TOOL], finish_reason=finish))
    req: dict[str, Any] = anth_req(model="claude-x")
    if stops:
        req["stop_sequences"] = stops
    status, _, raw = fetch(f"{anth.url}/v1/messages", req)
    assert status == 200
    assert json.loads(raw) == {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "text", "text": "Hi"},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": USAGE_A,
    }
    assert anth.calls("/v1/messages")[0].body == req


def test_anthropic_message_without_text_has_only_tool_block(anth: FakeServer) -> None:
    anth.script(Reply(text="", tool_calls=[TOOL], finish_reason="tool_calls"))
    _, _, raw = fetch(f"{anth.url}/v1/messages", anth_req())
    assert [b["type"] for b in json.loads(raw)["content"]] == ["tool_use"]


def test_anthropic_stream(anth: FakeServer) -> None:
    anth.script(Reply(text="Hello world", tool_calls=[TOOL], finish_reason="tool_calls"))
    status, ctype, raw = fetch(f"{anth.url}/v1/messages", anth_req(stream=True))
    assert status == 200
    assert ctype == "text/event-stream"
    evs = sse_events(raw)
    assert all(name == data["type"] for name, data in evs)
    assert [n for n, _ in evs] == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * 2,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = evs[0][1]["message"]
    assert start["content"] == []
    assert start["usage"]["input_tokens"] == 11
    assert start["usage"]["output_tokens"] == 1
    assert evs[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert "".join(d["delta"]["text"] for _, d in evs[3:6]) == "Hello world"
    assert evs[7][1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {},
    }
    parts = [d["delta"] for _, d in evs[8:10]]
    assert {p["type"] for p in parts} == {"input_json_delta"}
    assert json.loads("".join(p["partial_json"] for p in parts)) == {"city": "Paris"}
    assert {d["index"] for _, d in evs[7:11]} == {1}
    assert evs[11][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 7},
    }


def test_anthropic_stream_error_replaces_ending(anth: FakeServer) -> None:
    err = anthropic_error("overloaded_error", "Overloaded")
    anth.script(Reply(text="Hi", pieces=1, stream_error=err))
    _, _, raw = fetch(f"{anth.url}/v1/messages", anth_req(stream=True))
    evs = sse_events(raw)
    assert [n for n, _ in evs][-2:] == ["content_block_stop", "error"]
    assert evs[-1][1] == err


def test_anthropic_stream_garbage_and_cut(anth: FakeServer) -> None:
    anth.script(Reply(garbage=True), Reply(cut_after=2))
    _, _, raw = fetch(f"{anth.url}/v1/messages", anth_req(stream=True))
    assert b"data: {not json\n\n" in raw
    _, _, raw = fetch(f"{anth.url}/v1/messages", anth_req(stream=True), cut=True)
    assert [n for n, _ in sse_events(raw)] == ["message_start", "ping"]


def test_anthropic_error_status(anth: FakeServer) -> None:
    anth.script(Reply(status=529, error=anthropic_error("overloaded_error", "Overloaded")))
    status, _, raw = fetch(f"{anth.url}/v1/messages", anth_req())
    assert status == 529
    assert json.loads(raw)["error"]["type"] == "overloaded_error"


def test_anthropic_models(anth: FakeServer) -> None:
    anth.models = ["claude-a", "claude-b"]
    status, _, raw = fetch(f"{anth.url}/v1/models", method="GET")
    assert status == 200
    body = json.loads(raw)
    assert body["data"][1] == {
        "type": "model",
        "id": "claude-b",
        "display_name": "claude-b",
        "created_at": "2025-01-01T00:00:00Z",
    }
    assert (body["has_more"], body["first_id"], body["last_id"]) == (False, "claude-a", "claude-b")


OLLAMA_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def _think(budget: int = 1024) -> dict[str, Any]:
    return {"type": "enabled", "budget_tokens": budget}


def _user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


_TEXT = {"type": "text", "text": "hi"}
_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
_RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
_CALLED = {"role": "assistant", "content": [_USE]}

# (request overrides, a phrase of the 400 the real Messages API gives)
ANTHROPIC_REFUSES: list[tuple[dict[str, Any], str]] = [
    ({"n": 1}, "n: Extra inputs are not permitted"),
    ({"max_tokens": None}, "max_tokens: Field required"),
    ({"messages": []}, "at least one message"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "first message must use"),
    ({"messages": [*HI, *HI]}, "roles must alternate"),
    ({"messages": [*HI, {"role": "system", "content": "x"}]}, "Input should be 'user' or"),
    ({"messages": [_user({"type": "text", "text": " "})]}, "non-whitespace text"),
    ({"messages": [{"role": "user", "content": ""}]}, "non-whitespace text"),
    ({"messages": [*HI, {"role": "assistant", "content": "ok "}]}, "trailing whitespace"),
    (
        {
            "messages": [
                _user(
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpg", "data": "x"},
                    }
                )
            ]
        },
        "media_type",
    ),
    ({"messages": [*HI, _CALLED, _user(_TEXT)]}, "without `tool_result` blocks"),
    ({"messages": [*HI, _CALLED, _user(_TEXT, _RESULT)]}, "must come first"),
    ({"messages": [_user(_RESULT)]}, "unexpected `tool_use_id`"),
    ({"temperature": 1.5}, "less than or equal to 1"),
    ({"tools": [{"name": "a b", "input_schema": {"type": "object"}}]}, "should match pattern"),
    ({"tool_choice": {"type": "tool", "name": "nope"}}, "not found in provided tools"),
    ({"thinking": _think(512), "max_tokens": 4096}, "greater than or equal to 1024"),
    ({"thinking": _think(1024), "max_tokens": 1024}, "must be greater than"),
    ({"thinking": _think(), "max_tokens": 4096, "temperature": 0.5}, "`temperature` may only"),
    ({"thinking": _think(), "max_tokens": 4096, "top_k": 5}, "`top_k` must be unset"),
    (
        {"thinking": _think(), "max_tokens": 4096, "tool_choice": {"type": "any"}},
        "forces tool use",
    ),
    (
        {"thinking": _think(), "max_tokens": 4096, "messages": [*HI, _CALLED, _user(_RESULT)]},
        "must start with a thinking block",
    ),
    (
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "t", "signature": "forged"}, _USE],
                },
                _user(_RESULT),
            ]
        },
        "Invalid `signature`",
    ),
]


@pytest.mark.parametrize(("overrides", "phrase"), ANTHROPIC_REFUSES)
def test_anthropic_refuses_what_the_messages_api_refuses(
    anth: FakeServer, overrides: dict[str, Any], phrase: str
) -> None:
    req = {k: v for k, v in anth_req(**overrides).items() if v is not None}
    status, _, raw = fetch(f"{anth.url}/v1/messages", req)
    assert status == 400
    err = json.loads(raw)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert phrase in err["error"]["message"]


def test_anthropic_takes_a_thinking_tool_loop_and_answers_with_signed_thinking(
    anth: FakeServer,
) -> None:
    anth.script(Reply(text="Hi", reasoning="let me think"), Reply(text="Done.", reasoning="t"))
    status, _, raw = fetch(f"{anth.url}/v1/messages", anth_req(thinking=_think(), max_tokens=2048))
    assert status == 200
    thought = json.loads(raw)["content"][0]
    assert thought["type"] == "thinking" and thought["thinking"] == "let me think"
    signed = {**thought, "thinking": thought["thinking"]}
    loop = [*HI, {"role": "assistant", "content": [signed, _USE]}, _user(_RESULT)]
    req = anth_req(thinking=_think(), max_tokens=2048, messages=loop, stream=True)
    status, _, raw = fetch(f"{anth.url}/v1/messages", req)
    assert status == 200
    deltas = [d["delta"] for n, d in sse_events(raw) if n == "content_block_delta"]
    assert [d["type"] for d in deltas[:2]] == ["thinking_delta", "signature_delta"]
    # without thinking asked for, none is given
    anth.script(Reply(text="Hi", reasoning="hidden"))
    _, _, raw = fetch(f"{anth.url}/v1/messages", anth_req())
    assert [b["type"] for b in json.loads(raw)["content"]] == ["text"]


def test_anthropic_calls_only_offered_tools(anth: FakeServer) -> None:
    anth.script(Reply(text="Hi", tool_calls=[TOOL]), Reply(text="Hi", tool_calls=[TOOL]))
    _, _, raw = fetch(f"{anth.url}/v1/messages", anth_req(tools=None))
    assert [b["type"] for b in json.loads(raw)["content"]] == ["text"]
    _, _, raw = fetch(f"{anth.url}/v1/messages", anth_req(tool_choice={"type": "none"}))
    assert [b["type"] for b in json.loads(raw)["content"]] == ["text"]


@pytest.mark.parametrize(("finish", "reason"), [("stop", "stop"), ("length", "length")])
def test_ollama_chat(oll: FakeServer, finish: str, reason: str) -> None:
    oll.script(Reply(text="Hi", tool_calls=[TOOL], finish_reason=finish, reasoning="hmm"))
    req = {"model": "llama3.2", "stream": False, "tools": OLLAMA_TOOLS}
    status, _, raw = fetch(f"{oll.url}/api/chat", req)
    assert status == 200
    body = json.loads(raw)
    (call,) = body["message"]["tool_calls"]
    assert body["message"] == {"role": "assistant", "content": "Hi", "tool_calls": [call]}
    assert call == {
        "id": call["id"],
        "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
    }
    assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"])
    assert (body["model"], body["done"], body["done_reason"]) == ("llama3.2", True, reason)
    assert (body["prompt_eval_count"], body["eval_count"]) == (11, 7)
    assert body["created_at"].endswith("Z")
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(body[key], int)


def test_ollama_tool_calls_only_with_tools_and_ids_only_when_new(oll: Any) -> None:
    oll.script(Reply(text="Hi", tool_calls=[TOOL]), Reply(tool_calls=[TOOL]))
    _, _, raw = fetch(f"{oll.url}/api/chat", {"model": "m", "stream": False})
    assert "tool_calls" not in json.loads(raw)["message"]
    oll.tool_call_ids = False  # Ollama before 0.12.10
    req = {"model": "m", "stream": False, "tools": OLLAMA_TOOLS}
    _, _, raw = fetch(f"{oll.url}/api/chat", req)
    assert "id" not in json.loads(raw)["message"]["tool_calls"][0]


@pytest.mark.parametrize("stream", [True, None])
def test_ollama_stream(oll: FakeServer, stream: bool | None) -> None:
    oll.script(Reply(text="Hello world", tool_calls=[TOOL]))
    req: dict[str, Any] = {"model": "m", "tools": OLLAMA_TOOLS}
    if stream is not None:
        req["stream"] = stream
    status, ctype, raw = fetch(f"{oll.url}/api/chat", req)
    assert (status, ctype) == (200, "application/x-ndjson")
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    assert [r["done"] for r in rows] == [False] * 4 + [True]
    assert "".join(r["message"]["content"] for r in rows[:3]) == "Hello world"
    assert rows[3]["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert rows[4]["message"] == {"role": "assistant", "content": ""}
    assert (rows[4]["done_reason"], rows[4]["prompt_eval_count"], rows[4]["eval_count"]) == (
        "stop",
        11,
        7,
    )


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"$ref": "#/$defs/Days"}},
    "$defs": {"Days": {"type": "array", "items": {"type": "integer"}}},
}


@pytest.mark.parametrize(
    ("reply", "fmt", "content"),
    [
        (Reply(text="not json", tool_calls=[TOOL]), SCHEMA, '{"city": "Paris"}'),
        (Reply(text='{"a": 1}'), SCHEMA, '{"a": 1}'),
        (Reply(text="not json"), SCHEMA, '{"city": "text", "days": [1]}'),
        (Reply(text="not json"), "json", '{"text": "not json"}'),
        (
            Reply(tool_calls=[TOOL]),
            {"anyOf": [{"properties": {"name": {"enum": ["get_weather"]}, "arguments": {}}}]},
            '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        ),
        (Reply(text='{"city": "Paris"}', finish_reason="length"), SCHEMA, '{"city":'),
    ],
)
def test_ollama_format_holds_the_answer_to_json(
    oll: FakeServer, reply: Reply, fmt: Any, content: str
) -> None:
    oll.script(reply)
    req = {"model": "m", "stream": False, "format": fmt, "tools": OLLAMA_TOOLS}
    _, _, raw = fetch(f"{oll.url}/api/chat", req)
    assert json.loads(raw)["message"] == {"role": "assistant", "content": content}


def test_ollama_think_and_logprobs(oll: FakeServer) -> None:
    oll.script(Reply(text="4", reasoning="2+2"), Reply(text="4", reasoning="2+2"))
    _, _, raw = fetch(f"{oll.url}/api/chat", {"model": "m", "stream": False})
    assert "thinking" not in json.loads(raw)["message"]
    req = {"model": "m", "think": True, "logprobs": True, "top_logprobs": 2}
    _, _, raw = fetch(f"{oll.url}/api/chat", req)
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    assert [r["message"].get("thinking") for r in rows[:3]] == ["2", "+", "2"]
    assert rows[3]["message"]["content"] == "4"
    (entry,) = rows[3]["logprobs"]
    assert (entry["token"], len(entry["top_logprobs"])) == ("4", 2)
    status, _, raw = fetch(f"{oll.url}/api/chat", {"model": "qwen3", "think": "high"})
    assert (status, json.loads(raw)) == (
        400,
        {"error": 'think value "high" is not supported for this model'},
    )
    oll.script(Reply(text="4", reasoning="2+2"))
    status, _, _ = fetch(f"{oll.url}/api/chat", {"model": "gpt-oss:20b", "think": "high"})
    assert status == 200


def test_ollama_stream_error_and_garbage(oll: FakeServer) -> None:
    oll.script(Reply(text="Hi", pieces=1, stream_error=ollama_error("boom"), garbage=True))
    _, _, raw = fetch(f"{oll.url}/api/chat", anth_req(stream=True))
    lines = raw.decode().splitlines()
    assert lines[1] == "{not json"
    assert json.loads(lines[-1]) == {"error": "boom"}
    assert len(lines) == 3


def test_ollama_error_and_tags(oll: FakeServer) -> None:
    oll.script(Reply(status=404, error=ollama_error('model "x" not found')))
    status, _, raw = fetch(f"{oll.url}/api/chat", {"model": "x", "stream": False})
    assert (status, json.loads(raw)) == (404, {"error": 'model "x" not found'})
    _, _, raw = fetch(f"{oll.url}/api/tags", method="GET")
    models = json.loads(raw)["models"]
    assert [m["name"] for m in models] == ["llama3.2:latest", "qwen2.5:7b"]
    assert models[0] == {
        "name": "llama3.2:latest",
        "model": "llama3.2:latest",
        "modified_at": models[0]["modified_at"],
        "size": 1,
        "digest": "sha256:0",
        "details": {},
    }


# --- embeddings --------------------------------------------------------------------------------


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_fake_embeddings_make_similarity_meaningful() -> None:
    a = fake_embedding("The lamp rotates every 7.5 seconds.")
    b = fake_embedding("How often does the lamp rotate? Every few seconds?")
    c = fake_embedding("Tide tables are published on Monday by the harbour master.")
    assert len(a) == 64 and a == fake_embedding("the LAMP rotates every 7.5 seconds")
    assert _cosine(a, b) > 0.2 and abs(_cosine(a, c)) < 0.1
    assert fake_embedding("", 8) == [1.0] + [0.0] * 7  # no words: still a direction
    assert sum(x * x for x in a) > 1.5  # raw counts: the client must normalise


def test_openai_embeddings(oai: FakeServer) -> None:
    req = {"model": "text-embedding-3-small", "input": ["lamp", "tide tables"],
           "encoding_format": "float", "dimensions": 16}  # fmt: skip
    status, ctype, raw = fetch(f"{oai.url}/v1/embeddings", req)
    assert (status, ctype) == (200, "application/json; charset=utf-8")
    assert json.loads(raw) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": fake_embedding("lamp", 16)},
            {"object": "embedding", "index": 1, "embedding": fake_embedding("tide tables", 16)},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    assert oai.calls("/v1/embeddings")[0].body == req
    oai.script(Reply(reorder=True))
    _, _, raw = fetch(f"{oai.url}/v1/embeddings", {"model": "m", "input": ["a", "b", "c"]})
    rows = json.loads(raw)["data"]
    assert [r["index"] for r in rows] == [2, 1, 0]
    assert rows[0]["embedding"] == fake_embedding("c") and len(rows[0]["embedding"]) == 64
    _, _, raw = fetch(f"{oai.url}/v1/embeddings", {"model": "m", "input": "one text"})
    assert [r["index"] for r in json.loads(raw)["data"]] == [0]


@pytest.mark.parametrize(
    ("req", "param"),
    [({"input": ["x"]}, None), ({"model": "m", "input": ["x", ""]}, "input"),
     ({"model": "m", "input": [[1], []]}, "input"), ({"model": "m", "input": [1, "x"]}, "input")],
)  # fmt: skip
def test_openai_embeddings_refuses_what_openai_refuses(
    oai: FakeServer, req: dict[str, Any], param: str | None
) -> None:
    status, _, raw = fetch(f"{oai.url}/v1/embeddings", req)
    err = json.loads(raw)["error"]
    assert (status, err["type"], err["param"]) == (400, "invalid_request_error", param)


def test_openai_embeddings_take_token_ids_and_answer_base64_when_asked(oai: FakeServer) -> None:
    _, _, raw = fetch(f"{oai.url}/v1/embeddings", {"model": "m", "input": [[5, 6], [7]]})
    rows = json.loads(raw)["data"]
    assert [r["embedding"] for r in rows] == [fake_embedding("t5 t6"), fake_embedding("t7")]
    _, _, raw = fetch(f"{oai.url}/v1/embeddings", {"model": "m", "input": [5, 6]})
    assert json.loads(raw)["data"][0]["embedding"] == fake_embedding("t5 t6")
    req = {"model": "m", "input": "lamp", "encoding_format": "base64"}
    _, _, raw = fetch(f"{oai.url}/v1/embeddings", req)
    packed = base64.b64decode(json.loads(raw)["data"][0]["embedding"])
    assert list(struct.unpack("<64f", packed)) == fake_embedding("lamp")


def test_ollama_embed(oll: FakeServer) -> None:
    req = {"model": "nomic-embed-text", "input": ["lamp", "tide"], "truncate": True}
    status, ctype, raw = fetch(f"{oll.url}/api/embed", req)
    assert (status, ctype) == (200, "application/json; charset=utf-8")
    body = json.loads(raw)
    assert body["model"] == "nomic-embed-text"
    assert body["embeddings"] == [fake_embedding("lamp"), fake_embedding("tide")]
    assert body["prompt_eval_count"] == 2
    assert isinstance(body["total_duration"], int) and isinstance(body["load_duration"], int)
    _, _, raw = fetch(f"{oll.url}/api/embed", {"model": "m", "input": "x", "dimensions": 8})
    assert json.loads(raw)["embeddings"] == [fake_embedding("x", 8)]
    status, _, raw = fetch(f"{oll.url}/api/embed", {"input": ["x"]})
    assert (status, json.loads(raw)) == (400, {"error": "model is required"})


EMBEDDINGS = [
    (fake_openai, "/v1/embeddings", openai_error("Incorrect API key provided")),
    (fake_ollama, "/api/embed", ollama_error('model "m" not found, try pulling it first')),
]


@pytest.mark.parametrize(("factory", "path", "error"), EMBEDDINGS)
def test_embeddings_failure_modes(factory: Callable[[], FakeServer], path: str, error: Any) -> None:
    server = factory().start()
    try:
        url, req = f"{server.url}{path}", {"model": "m", "input": ["x"]}
        server.script(Reply(status=401, error=error), Reply(garbage=True), Reply(drop=True),
                      Reply(hang=True))  # fmt: skip
        assert fetch(url, req)[::2] == (401, json.dumps(error).encode())
        assert fetch(url, req)[2] == b"<html>oops</html>"
        with pytest.raises(aiohttp.ServerDisconnectedError):
            fetch(url, req)
        with pytest.raises(TimeoutError):
            fetch(url, req, timeout=0.3)
        assert len(server.calls(path)) == 4
    finally:
        server.stop()
