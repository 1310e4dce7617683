"""The built-in mock provider: directly, then through a running gateway with the openai SDK."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ailb.config import DeploymentConfig, MockOptions
from ailb.providers.base import ChunkBatch
from ailb.providers.mock import MockProvider

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]


def provider(**mock: Any) -> MockProvider:
    return MockProvider(
        DeploymentConfig(name="m", provider="mock", models=("mock",), mock=MockOptions(**mock))
    )


def body(*messages: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"model": "mock", "messages": list(messages), **kw}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def complete(p: MockProvider, b: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(p.complete(b))


def stream(p: MockProvider, b: dict[str, Any]) -> list[ChunkBatch]:
    async def collect() -> list[ChunkBatch]:
        return [batch async for batch in p.stream(b)]

    return asyncio.run(collect())


def content_of(batches: list[ChunkBatch]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for batch in batches
        for c in batch
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]


# --- replies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "reply"),
    [
        ([user("Hello, AILB!")], "Hello, AILB!"),
        ([user("first"), {"role": "assistant", "content": "ok"}, user("second")], "second"),
        ([user("asked"), {"role": "assistant", "content": "answered"}], "asked"),
        (
            [
                user(
                    [
                        {"type": "text", "text": "look "},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                        {"type": "text", "text": "here"},
                    ]
                )
            ],
            "look here",
        ),
        # Nothing to echo: the configured reply.
        ([{"role": "system", "content": "Be brief."}], "Hello from the AILB mock provider."),
        ([user("")], "Hello from the AILB mock provider."),
    ],
)
def test_echo_mode_answers_with_the_last_user_message(
    messages: list[dict[str, Any]], reply: str
) -> None:
    out = complete(provider(), body(*messages))
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert out["object"] == "chat.completion" and out["model"] == "mock"


def test_fixed_mode_answers_with_the_configured_reply() -> None:
    p = provider(mode="fixed", reply="Always this.")
    for text in ("Hello", "Something else entirely"):
        out = complete(p, body(user(text)))
        assert out["choices"][0]["message"] == {"role": "assistant", "content": "Always this."}


def test_answers_have_distinct_ids_and_the_requested_model() -> None:
    p = provider()
    first = complete(p, body(user("a"), model="whatever-name"))
    second = complete(p, body(user("b")))
    assert first["model"] == "whatever-name"
    assert first["id"].startswith("chatcmpl-mock") and second["id"].startswith("chatcmpl-mock")
    assert first["id"] != second["id"]
    assert abs(first["created"] - time.time()) < 5


def test_usage_is_the_four_characters_a_token_estimate() -> None:
    # Prompt text is the messages joined by newlines: "Be brief.\nHello, AILB!" is 22
    # characters -> 6 tokens; the 12-character reply -> 3.
    out = complete(
        provider(), body({"role": "system", "content": "Be brief."}, user("Hello, AILB!"))
    )
    assert out["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}


@pytest.mark.parametrize("latency_ms", [120.0, 250.0])
def test_latency_is_honoured(latency_ms: float) -> None:
    p = provider(latency_ms=latency_ms)
    t0 = time.perf_counter()
    complete(p, body(user("hi")))
    took = time.perf_counter() - t0
    assert latency_ms / 1000 * 0.9 <= took < latency_ms / 1000 + 0.5

    async def first_batch() -> float:
        t = time.perf_counter()
        gen = p.stream(body(user("hi")))
        await anext(gen)
        await gen.aclose()
        return time.perf_counter() - t

    took = asyncio.run(first_batch())
    assert latency_ms / 1000 * 0.9 <= took < latency_ms / 1000 + 0.5


def test_no_latency_answers_at_once() -> None:
    t0 = time.perf_counter()
    complete(provider(), body(user("hi")))
    assert time.perf_counter() - t0 < 0.1


# --- streaming ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "chunks", "pieces"),
    [
        ("one two three four five six seven", 3, ["one two three ", "four five six ", "seven"]),
        ("one two", 8, ["one ", "two"]),
        ("single", 4, ["single"]),
        ("a b c d", 1, ["a b c d"]),
    ],
)
def test_stream_chunks_reassemble_to_the_reply(text: str, chunks: int, pieces: list[str]) -> None:
    p = provider(chunks=chunks)
    b = body(user(text))
    batches = stream(p, b)
    assert content_of(batches) == pieces
    assert "".join(content_of(batches)) == text
    flat = [c for batch in batches for c in batch]
    assert flat[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({c["id"] for c in flat}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "mock" for c in flat)
    finish = [c["choices"][0]["finish_reason"] for c in flat if c["choices"]]
    assert finish == [None] * (len(finish) - 1) + ["stop"]
    # The last batch is the usage chunk, with the same estimate as a complete answer.
    assert batches[-1] == [{**flat[0], "choices": [], "usage": complete(p, b)["usage"]}]


def test_stream_in_fixed_mode() -> None:
    batches = stream(provider(mode="fixed", reply="Canned words only", chunks=8), body(user("x")))
    assert "".join(content_of(batches)) == "Canned words only"
    assert batches[-1][0]["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 5,
        "total_tokens": 6,
    }


# --- forced tool calls -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_choice", "tool"),
    [
        ("required", "get_weather"),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ],
)
def test_forced_tool_is_called_with_empty_arguments(tool_choice: Any, tool: str) -> None:
    p = provider()
    b = body(user("What's up?"), tools=TOOLS, tool_choice=tool_choice)
    out = complete(p, b)
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_mock0", "type": "function", "function": {"name": tool, "arguments": "{}"}}
        ],
    }
    assert out["usage"]["completion_tokens"] == 0

    flat = [c for batch in stream(p, b) for c in batch]
    calls = [
        t for c in flat if c["choices"] for t in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert [t["function"].get("name") for t in calls] == [tool, None]
    assert "".join(t["function"]["arguments"] for t in calls) == "{}"
    assert {t["index"] for t in calls} == {0}
    assert [c["choices"][0]["finish_reason"] for c in flat if c["choices"]][-1] == "tool_calls"
    assert content_of([flat]) == []


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": TOOLS},
        {"tools": TOOLS, "tool_choice": "auto"},
        {"tools": TOOLS, "tool_choice": "none"},
        {"tool_choice": "required"},  # nothing to call
    ],
)
def test_tools_not_forced_get_a_text_answer(extra: dict[str, Any]) -> None:
    out = complete(provider(), body(user("just talk"), **extra))
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "just talk"}
    assert out["choices"][0]["finish_reason"] == "stop"


def test_model_list_is_the_configured_models() -> None:
    p = MockProvider(DeploymentConfig(name="m", provider="mock", models=("a", "b")))
    assert asyncio.run(p.list_models()) == ["a", "b"]
    assert asyncio.run(p.close()) is None


# --- through the gateway --------------------------------------------------------------------

GATEWAY_YAML = """
deployments:
  - name: canned
    provider: mock
    models: [canned]
    mock: {mode: fixed, reply: "The fixed answer from the mock.", chunks: 4}
  - name: parrot
    provider: mock
    models: [parrot]
  - name: slow
    provider: mock
    models: [slow]
    mock: {latency_ms: 150}
"""


def test_sdk_complete_through_the_gateway(gateway_factory: Any, client_for: Any) -> None:
    client = client_for(gateway_factory(GATEWAY_YAML))
    fixed = client.chat.completions.create(
        model="canned", messages=[{"role": "user", "content": "Hi"}]
    )
    assert fixed.choices[0].message.content == "The fixed answer from the mock."
    assert fixed.choices[0].finish_reason == "stop"
    assert fixed.model == "canned"
    # "Hi" -> 1 token; the 31-character reply -> 8.
    assert fixed.usage is not None
    assert (fixed.usage.prompt_tokens, fixed.usage.completion_tokens) == (1, 8)
    echoed = client.chat.completions.create(
        model="parrot",
        messages=[
            {"role": "system", "content": "Repeat after me."},
            {"role": "user", "content": "Echo this back"},
        ],
    )
    assert echoed.choices[0].message.content == "Echo this back"


def test_sdk_stream_through_the_gateway(gateway_factory: Any, client_for: Any) -> None:
    client = client_for(gateway_factory(GATEWAY_YAML))
    chunks = list(
        client.chat.completions.create(
            model="canned",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    # Six words in at most four chunks: two words each.
    assert pieces == ["The fixed ", "answer from ", "the mock."]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1, 8)

    plain = list(
        client.chat.completions.create(
            model="parrot", messages=[{"role": "user", "content": "stream me back"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == (
        "stream me back"
    )
    assert all(c.usage is None for c in plain)  # not asked for


def test_sdk_forced_tool_call_through_the_gateway(gateway_factory: Any, client_for: Any) -> None:
    client = client_for(gateway_factory(GATEWAY_YAML))
    resp = client.chat.completions.create(
        model="parrot",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=TOOLS,
        tool_choice="required",
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    (call,) = resp.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_weather", "{}")

    chunks = list(
        client.chat.completions.create(
            model="parrot",
            messages=[{"role": "user", "content": "Time?"}],
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            stream=True,
        )
    )
    deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in deltas if d.function and d.function.name] == ["get_time"]
    assert "".join(d.function.arguments or "" for d in deltas if d.function) == "{}"


def test_latency_through_the_gateway(gateway_factory: Any, client_for: Any) -> None:
    client = client_for(gateway_factory(GATEWAY_YAML))
    client.chat.completions.create(model="parrot", messages=[{"role": "user", "content": "x"}])
    t0 = time.perf_counter()
    client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "x"}])
    assert 0.145 <= time.perf_counter() - t0 < 1.0
