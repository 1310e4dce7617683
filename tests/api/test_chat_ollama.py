"""End to end through the Ollama provider (fake /api/chat, NDJSON), openai SDK as client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.ollama import fake_ollama, ollama_error
from tests.fakes.server import FakeServer, Reply, ToolCall

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def upstream() -> Iterator[FakeServer]:
    server = fake_ollama().start()
    yield server
    server.stop()


@pytest.fixture
def client(upstream, gateway_factory, client_for):
    # Configured by environment variables only, models discovered from /api/tags.
    gw = gateway_factory(None, {"OLLAMA_BASE_URL": upstream.url})
    return client_for(gw)


def test_models_come_from_tags_with_and_without_latest(client):
    ids = {m.id for m in client.models.list()}
    assert {"llama3.2:latest", "llama3.2", "qwen2.5:7b"} <= ids


def test_complete_with_options_and_usage(upstream, client):
    upstream.script(Reply(text="Hi from llama", usage=(14, 5)))
    resp = client.chat.completions.create(
        model="llama3.2",
        messages=[{"role": "user", "content": "hello"}],
        temperature=0.1,
        max_tokens=42,
        seed=3,
        stop="\n\n",
    )
    assert resp.choices[0].message.content == "Hi from llama"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (14, 5)
    sent = upstream.calls("/api/chat")[-1].body
    assert sent["model"] == "llama3.2"
    assert sent["stream"] is False
    assert sent["options"] == {"temperature": 0.1, "seed": 3, "num_predict": 42, "stop": ["\n\n"]}


def test_stream_ndjson_to_sse(upstream, client):
    upstream.script(Reply(text="alpha beta gamma", usage=(8, 3), pieces=3, finish_reason="length"))
    chunks = list(
        client.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "user", "content": "go"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "alpha beta gamma"
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (8, 3)
    assert upstream.calls("/api/chat")[-1].body["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_round_trip(upstream, client, stream):
    upstream.script(
        Reply(
            text="", tool_calls=[ToolCall("lookup", '{"q": "ailb"}')], finish_reason="tool_calls"
        ),
        Reply(text="Found it."),
    )
    msgs = [{"role": "user", "content": "find ailb"}]
    first = client.chat.completions.create(
        model="llama3.2", messages=msgs, tools=TOOLS, stream=stream
    )
    if stream:
        chunks = list(first)
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
        call_id, name = calls[0].id, calls[0].function.name
        arguments = "".join(tc.function.arguments or "" for tc in calls)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        tc = first.choices[0].message.tool_calls[0]
        call_id, name, arguments = tc.id, tc.function.name, tc.function.arguments
        finish = first.choices[0].finish_reason
    assert name == "lookup" and json.loads(arguments) == {"q": "ailb"}
    assert finish == "tool_calls"
    assert upstream.calls("/api/chat")[-1].body["tools"] == TOOLS

    follow = client.chat.completions.create(
        model="llama3.2",
        messages=[
            *msgs,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "lookup", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "AILB is a gateway"},
        ],
    )
    assert follow.choices[0].message.content == "Found it."
    sent = upstream.calls("/api/chat")[-1].body["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "lookup", "arguments": {"q": "ailb"}}}]
    assert sent[2] == {"role": "tool", "content": "AILB is a gateway", "tool_name": "lookup"}


def test_images_go_as_base64(upstream, client):
    upstream.script(Reply(text="a cat"))
    client.chat.completions.create(
        model="llama3.2",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                ],
            }
        ],
    )
    sent = upstream.calls("/api/chat")[-1].body["messages"][0]
    assert sent == {"role": "user", "content": "what is this?", "images": ["iVBORw0K"]}


def test_forced_tool_choice_is_refused_clearly(upstream, client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "user", "content": "x"}],
            tools=TOOLS,
            tool_choice="required",
        )
    assert info.value.body["param"] == "tool_choice"
    assert upstream.calls("/api/chat") == []


def test_unknown_model_upstream_404_is_the_clients_error(upstream, client):
    upstream.script(Reply(status=404, error=ollama_error("model 'llama3.2' not found")))
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "x"}]
        )
    assert "not found" in info.value.body["message"]


def test_error_line_mid_stream_ends_with_error(upstream, client):
    upstream.script(Reply(text="some words here", chunk_delay=0.05, stream_error="out of memory"))
    got = []
    with pytest.raises(openai.APIError):
        for c in client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            got.append(c.choices[0].delta.content or "" if c.choices else "")
    assert "".join(got) == "some words here"
