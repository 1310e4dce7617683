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
    assert sent[1]["tool_calls"] == [
        {"id": call_id, "function": {"name": "lookup", "arguments": {"q": "ailb"}}}
    ]
    assert sent[2] == {
        "role": "tool",
        "content": "AILB is a gateway",
        "tool_name": "lookup",
        "tool_call_id": call_id,
    }


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


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
USER = [{"role": "user", "content": "weather in Oslo?"}]


def answer_of(resp, stream):
    """(content, reasoning, tool calls as (id, name, arguments), finish, usage) of a completion
    or of a stream's chunks, as a client assembles them."""
    if not stream:
        m = resp.choices[0].message
        calls = [(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()]
        reasoning = getattr(m, "reasoning_content", None)
        return m.content, reasoning, calls, resp.choices[0].finish_reason, resp.usage
    content, reasoning, calls, finish, usage = [], [], {}, None, None
    for c in resp:
        usage = c.usage or usage
        if not c.choices:
            continue
        d = c.choices[0].delta
        content.append(d.content or "")
        reasoning.append(getattr(d, "reasoning_content", None) or "")
        for tc in d.tool_calls or ():
            cur = calls.setdefault(tc.index, [None, None, ""])
            cur[0] = tc.id or cur[0]
            cur[1] = tc.function.name or cur[1]
            cur[2] += tc.function.arguments or ""
        finish = c.choices[0].finish_reason or finish
    calls_list = [tuple(v) for _, v in sorted(calls.items())]
    return "".join(content) or None, "".join(reasoning) or None, calls_list, finish, usage


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_is_answered_through_format(upstream, client, stream):
    upstream.script(Reply(tool_calls=[ToolCall("weather", '{"city": "Oslo"}')], pieces=4))
    resp = client.chat.completions.create(
        model="llama3.2",
        messages=USER,
        tools=[*TOOLS, WEATHER],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    content, _, calls, finish, usage = answer_of(resp, stream)
    ((call_id, name, arguments),) = calls
    assert (name, json.loads(arguments), finish) == ("weather", {"city": "Oslo"}, "tool_calls")
    assert call_id.startswith("call_") and not content
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 7)
    sent = upstream.calls("/api/chat")[-1].body
    assert sent["format"] == WEATHER["function"]["parameters"]
    assert "tools" not in sent
    assert "`weather`" in sent["messages"][0]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_required_retries_once_constrained_to_a_call(upstream, client, stream):
    upstream.script(
        Reply(text="Let me think about which tool to use.", usage=(20, 9)),
        Reply(tool_calls=[ToolCall("weather", '{"city": "Oslo"}')], usage=(25, 6)),
    )
    resp = client.chat.completions.create(
        model="llama3.2",
        messages=USER,
        tools=[*TOOLS, WEATHER],
        tool_choice="required",
        max_tokens=100,
        stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    content, _, calls, finish, usage = answer_of(resp, stream)
    assert [(n, json.loads(a)) for _, n, a in calls] == [("weather", {"city": "Oslo"})]
    assert (content, finish) == (None, "tool_calls")
    assert (usage.prompt_tokens, usage.completion_tokens) == (45, 15)  # both attempts
    first, second = (c.body for c in upstream.calls("/api/chat"))
    assert first["tools"] == [*TOOLS, WEATHER] and "format" not in first
    assert "must call" in first["messages"][0]["content"]
    assert "tools" not in second
    names = [b["properties"]["name"]["enum"] for b in second["format"]["anyOf"]]
    assert names == [["lookup"], ["weather"]]
    assert second["options"]["num_predict"] == 100 - 9  # what the first attempt left


@pytest.mark.parametrize("stream", [False, True])
def test_required_without_a_call_twice_fails_clearly(upstream, client, stream):
    upstream.script(
        Reply(text="No."),
        Reply(tool_calls=[ToolCall("weather", '{"city": "Oslo"}')], finish_reason="length"),
    )
    with pytest.raises(openai.APIStatusError) as info:
        resp = client.chat.completions.create(
            model="llama3.2",
            messages=USER,
            tools=[*TOOLS, WEATHER],
            tool_choice="required",
            stream=stream,
        )
        list(resp) if stream else None
    assert info.value.status_code == 502
    assert info.value.body["code"] == "tool_call_missing"
    assert info.value.body["param"] == "tool_choice"
    assert len(upstream.calls("/api/chat")) == 2


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("upstream_ids", [False, True])
def test_tool_call_ids_are_unique_across_a_conversation(upstream, client, stream, upstream_ids):
    upstream.tool_call_ids = upstream_ids
    upstream.script(
        Reply(tool_calls=[ToolCall("lookup", '{"q": "a"}'), ToolCall("lookup", '{"q": "b"}')]),
        Reply(tool_calls=[ToolCall("lookup", '{"q": "c"}')]),
    )
    messages = list(USER)
    ids = []
    for _ in range(2):
        resp = client.chat.completions.create(
            model="llama3.2", messages=messages, tools=TOOLS, stream=stream
        )
        _, _, calls, _, _ = answer_of(resp, stream)
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                    for i, n, a in calls
                ],
            }
        )
        messages += [{"role": "tool", "tool_call_id": i, "content": "ok"} for i, _, _ in calls]
        ids += [i for i, _, _ in calls]
    assert len(ids) == len(set(ids)) == 3
    if upstream_ids:  # Ollama's own ids are kept
        rows = [c.body for c in upstream.calls("/api/chat")]
        assert rows[1]["messages"][1]["tool_calls"][0]["id"] == ids[0]
        assert all(i.startswith("call_") and len(i) == 13 for i in ids)


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_functions_are_tools_answered_as_function_call(upstream, client, stream):
    upstream.script(Reply(tool_calls=[ToolCall("weather", '{"city": "Oslo"}')]))
    resp = client.chat.completions.create(
        model="llama3.2",
        messages=USER,
        functions=[WEATHER["function"]],
        function_call="auto",
        stream=stream,
    )
    if stream:
        chunks = [c for c in resp if c.choices]
        fcs = [c.choices[0].delta.function_call for c in chunks if c.choices[0].delta.function_call]
        name = fcs[0].name
        arguments = "".join(f.arguments or "" for f in fcs)
        finish = chunks[-1].choices[0].finish_reason
    else:
        fc = resp.choices[0].message.function_call
        name, arguments, finish = fc.name, fc.arguments, resp.choices[0].finish_reason
    assert (name, json.loads(arguments), finish) == ("weather", {"city": "Oslo"}, "function_call")
    assert upstream.calls("/api/chat")[-1].body["tools"] == [WEATHER]


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_is_think_and_thinking_is_reasoning_content(upstream, client, stream):
    upstream.script(Reply(text="Oslo is cold.", reasoning="It is winter in Norway."))
    resp = client.chat.completions.create(
        model="llama3.2", messages=USER, reasoning_effort="high", stream=stream
    )
    content, reasoning, _, _, _ = answer_of(resp, stream)
    assert (content, reasoning) == ("Oslo is cold.", "It is winter in Norway.")
    # llama3.2 takes no think level (only gpt-oss does): asked again with think true
    assert [c.body["think"] for c in upstream.calls("/api/chat")] == ["high", True]


def test_reasoning_effort_none_turns_thinking_off(upstream, client):
    upstream.script(Reply(text="Cold.", reasoning="hidden"))
    resp = client.chat.completions.create(model="llama3.2", messages=USER, reasoning_effort="none")
    assert getattr(resp.choices[0].message, "reasoning_content", None) is None
    assert upstream.calls("/api/chat")[-1].body["think"] is False


def test_ollama_fields_pass_through_extra_body(upstream, client):
    client.chat.completions.create(
        model="llama3.2",
        messages=USER,
        max_tokens=64,
        extra_body={"keep_alive": "30m", "options": {"num_ctx": 8192, "num_predict": -1}},
    )
    sent = upstream.calls("/api/chat")[-1].body
    assert sent["keep_alive"] == "30m"
    assert sent["options"] == {"num_ctx": 8192, "num_predict": 64}  # max_tokens wins


def test_unknown_fields_are_refused_not_dropped(upstream, client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="llama3.2", messages=USER, extra_body={"top_k": 20})
    assert info.value.body["param"] == "top_k"
    assert "options" in info.value.body["message"]
    assert upstream.calls("/api/chat") == []


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs(upstream, client, stream):
    upstream.script(Reply(text="Cold in Oslo", pieces=2))
    resp = client.chat.completions.create(
        model="llama3.2", messages=USER, logprobs=True, top_logprobs=2, stream=stream
    )
    if stream:
        entries = [
            e
            for c in resp
            if c.choices and c.choices[0].logprobs
            for e in c.choices[0].logprobs.content
        ]
    else:
        entries = resp.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == "Cold in Oslo"
    assert all(len(e.top_logprobs) == 2 and e.logprob < 0 for e in entries)
    sent = upstream.calls("/api/chat")[-1].body
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)


@pytest.mark.parametrize("stream", [False, True])
def test_structured_output_beside_tools(upstream, client, stream):
    upstream.script(Reply(tool_calls=[ToolCall("final_answer", '{"city": "Oslo"}')]))
    resp = client.chat.completions.create(
        model="llama3.2",
        messages=USER,
        tools=TOOLS,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": WEATHER["function"]["parameters"]},
        },
        stream=stream,
    )
    content, _, calls, finish, _ = answer_of(resp, stream)
    assert (json.loads(content), calls, finish) == ({"city": "Oslo"}, [], "stop")
    sent = upstream.calls("/api/chat")[-1].body
    assert "format" not in sent
    assert [t["function"]["name"] for t in sent["tools"]] == ["lookup", "final_answer"]


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_false_gives_one_call(upstream, client, stream):
    upstream.script(
        Reply(tool_calls=[ToolCall("lookup", '{"q": "a"}'), ToolCall("lookup", '{"q": "b"}')])
    )
    resp = client.chat.completions.create(
        model="llama3.2", messages=USER, tools=TOOLS, parallel_tool_calls=False, stream=stream
    )
    _, _, calls, _, _ = answer_of(resp, stream)
    assert [json.loads(a) for _, _, a in calls] == [{"q": "a"}]


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
