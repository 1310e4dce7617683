"""End to end through the Anthropic provider (fake Messages API), official openai SDK as client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.anthropic import anthropic_error, fake_anthropic
from tests.fakes.server import FakeServer, Reply, ToolCall

KEY = "sk-ant-secret-abcdef123456"
ENV = {"ANTHROPIC_KEY_REF": KEY}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def upstream() -> Iterator[FakeServer]:
    server = fake_anthropic().start()
    yield server
    server.stop()


def config(url: str) -> str:
    return f"""
deployments:
  - name: claude
    provider: anthropic
    base_url: {url}
    api_key_env: ANTHROPIC_KEY_REF
    models: [claude-test]
    max_output_tokens: 321
    timeouts: {{connect: 2, first_byte: 2, idle: 2, total: 10}}
"""


def test_complete_translates_both_ways(upstream, gateway_factory, client_for):
    upstream.script(Reply(text="Bonjour!", usage=(12, 4)))
    client = client_for(gateway_factory(config(upstream.url), ENV))
    resp = client.chat.completions.create(
        model="claude-test",
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        temperature=1.5,
        stop=["END"],
    )
    assert resp.choices[0].message.content == "Bonjour!"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (12, 4)
    sent = upstream.calls("/v1/messages")[-1]
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers
    assert sent.body["system"] == "Answer in French."
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}
    ]
    assert sent.body["max_tokens"] == 321  # the deployment's default: the client gave none
    assert sent.body["temperature"] == 1.0
    assert sent.body["stop_sequences"] == ["END"]
    assert "stream" not in sent.body


def test_stream_with_usage(upstream, gateway_factory, client_for):
    upstream.script(
        Reply(text="One two three four", usage=(20, 6), pieces=4, finish_reason="length")
    )
    client = client_for(gateway_factory(config(upstream.url), ENV))
    chunks = list(
        client.chat.completions.create(
            model="claude-test",
            messages=[{"role": "user", "content": "Count"}],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=5,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three four"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 20
    assert chunks[-1].usage.completion_tokens == 6
    assert upstream.calls("/v1/messages")[-1].body["stream"] is True
    assert upstream.calls("/v1/messages")[-1].body["max_tokens"] == 5


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_round_trip(upstream, gateway_factory, client_for, stream):
    call = ToolCall(name="get_weather", arguments='{"city": "Paris"}', id="toolu_01")
    upstream.script(
        Reply(text="", tool_calls=[call], finish_reason="tool_calls"), Reply(text="Sunny.")
    )
    client = client_for(gateway_factory(config(upstream.url), ENV))
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(
        model="claude-test", messages=messages, tools=TOOLS, tool_choice="required", stream=stream
    )
    if stream:
        chunks = list(first)
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
        assert deltas[0].id == "toolu_01" and deltas[0].function.name == "get_weather"
        arguments = "".join(d.function.arguments or "" for d in deltas)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        tc = first.choices[0].message.tool_calls[0]
        assert (tc.id, tc.function.name) == ("toolu_01", "get_weather")
        arguments = tc.function.arguments
        finish = first.choices[0].finish_reason
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"
    sent = upstream.calls("/v1/messages")[-1].body
    assert sent["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
    assert sent["tool_choice"] == {"type": "any"}

    follow = client.chat.completions.create(
        model="claude-test",
        messages=[
            *messages,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny, 24C"},
        ],
        tools=TOOLS,
    )
    assert follow.choices[0].message.content == "Sunny."
    sent = upstream.calls("/v1/messages")[-1].body
    assert sent["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert sent["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny, 24C"}],
    }


def test_image_and_json_schema(upstream, gateway_factory, client_for):
    call = ToolCall(name="answer", arguments='{"animal": "cat"}', id="toolu_9")
    upstream.script(Reply(text="", tool_calls=[call], finish_reason="tool_calls"))
    client = client_for(gateway_factory(config(upstream.url), ENV))
    resp = client.chat.completions.create(
        model="claude-test",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What animal?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AA=="}},
                ],
            }
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}},
        },
    )
    assert json.loads(resp.choices[0].message.content) == {"animal": "cat"}
    assert resp.choices[0].finish_reason == "stop"
    sent = upstream.calls("/v1/messages")[-1].body
    assert sent["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AA=="},
    }
    assert sent["tool_choice"] == {"type": "tool", "name": "answer"}


def test_unsupported_parameter_is_a_clear_400(upstream, gateway_factory, client_for):
    client = client_for(gateway_factory(config(upstream.url), ENV))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="claude-test", messages=[{"role": "user", "content": "x"}], n=2
        )
    assert info.value.body["param"] == "n"
    assert info.value.body["code"] == "unsupported_feature"
    assert upstream.calls("/v1/messages") == []


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        (400, "invalid_request_error", openai.BadRequestError),
        (529, "overloaded_error", openai.APIStatusError),
        (500, "api_error", openai.APIStatusError),
    ],
)
def test_upstream_errors(upstream, gateway_factory, client_for, status, kind, expected):
    upstream.default = Reply(
        status=status, error=anthropic_error(kind, "nope: sk-ant-leaked-999999")
    )
    client = client_for(gateway_factory(config(upstream.url), ENV))
    with pytest.raises(expected) as info:
        client.chat.completions.create(
            model="claude-test", messages=[{"role": "user", "content": "x"}]
        )
    err = info.value
    assert err.status_code == (400 if status == 400 else 502)
    assert "sk-ant-leaked" not in json.dumps(err.body)
    assert KEY not in json.dumps(err.body)


def test_error_event_mid_stream_ends_with_error_not_done(upstream, gateway_factory, client_for):
    upstream.script(
        Reply(
            text="partial answer",
            chunk_delay=0.05,
            stream_error=anthropic_error("overloaded_error", "Overloaded"),
        )
    )
    client = client_for(gateway_factory(config(upstream.url), ENV))
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="claude-test", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(received) == "partial answer"
    assert "sk-ant" not in str(info.value)


def test_models_are_discovered_from_the_models_list(upstream, gateway_factory, client_for):
    upstream.models = ["claude-a", "claude-b"]
    gw = gateway_factory(
        f"""
deployments:
  - name: claude
    provider: anthropic
    base_url: {upstream.url}
    api_key_env: ANTHROPIC_KEY_REF
""",
        ENV,
    )
    ids = {m.id for m in client_for(gw).models.list()}
    assert {"claude-a", "claude-b"} <= ids
    probe = upstream.calls("/v1/models")[0]
    assert probe.headers["x-api-key"] == KEY


def test_conversations_the_messages_api_would_refuse_are_made_valid(
    upstream, gateway_factory, client_for
):
    """Issue 19 point 8: the fake refuses what Anthropic refuses; the gateway sends it none."""
    upstream.script(Reply(text="Fine."))
    client = client_for(gateway_factory(config(upstream.url), ENV))
    resp = client.chat.completions.create(
        model="claude-test",
        messages=[
            {"role": "assistant", "content": "Hi! What can I do for you?"},
            {"role": "user", "content": ""},
            {"role": "developer", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "  "},
                    {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/AA=="}},
                ],
            },
            {"role": "user", "content": "What is this?"},
        ],
    )
    assert resp.choices[0].message.content == "Fine."
    sent = upstream.calls("/v1/messages")[-1].body
    assert sent["system"] == "Be terse."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][2]["content"][0]["source"]["media_type"] == "image/jpeg"


@pytest.mark.parametrize("include_usage", [None, False, True])
def test_usage_chunk_only_when_asked(upstream, gateway_factory, client_for, include_usage):
    """Issue 19 point 11: as OpenAI, the usage chunk ends the stream only with include_usage."""
    upstream.script(Reply(text="Hi there", usage=(5, 2)))
    client = client_for(gateway_factory(config(upstream.url), ENV))
    extra = {} if include_usage is None else {"stream_options": {"include_usage": include_usage}}
    chunks = list(
        client.chat.completions.create(
            model="claude-test",
            messages=[
                {"role": "developer", "content": "Be kind."},
                {"role": "user", "content": "x"},
            ],
            stream=True,
            max_completion_tokens=40,
            user="u-7",
            **extra,
        )
    )
    usage = [c.usage for c in chunks if not c.choices]
    assert len(usage) == (1 if include_usage else 0)
    if include_usage:
        assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (5, 2)
    sent = upstream.calls("/v1/messages")[-1].body
    assert (sent["max_tokens"], sent["system"]) == (40, "Be kind.")
    assert sent["metadata"] == {"user_id": "u-7"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"seed": 1}, "seed"), ({"logprobs": True}, "logprobs"), ({"extra_body": {"foo": 1}}, "foo")],
)
def test_fields_anthropic_cannot_serve_are_refused(
    upstream, gateway_factory, client_for, fields, param
):
    client = client_for(gateway_factory(config(upstream.url), ENV))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="claude-test", messages=[{"role": "user", "content": "x"}], **fields
        )
    assert info.value.body["param"] == param
    assert upstream.calls("/v1/messages") == []


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_functions_round_trip(upstream, gateway_factory, client_for, stream):
    """Issue 19 point 6: functions/function_call are tools, answered as function_call."""
    call = ToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="toolu_5")
    upstream.script(
        Reply(text="", tool_calls=[call], finish_reason="tool_calls"), Reply(text="Cold.")
    )
    client = client_for(gateway_factory(config(upstream.url), ENV))
    functions = [TOOLS[0]["function"]]
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(
        model="claude-test",
        messages=messages,
        functions=functions,
        function_call={"name": "get_weather"},
        stream=stream,
    )
    if stream:
        chunks = list(first)
        pieces = [c.choices[0].delta.function_call for c in chunks if c.choices]
        pieces = [p for p in pieces if p is not None]
        name = pieces[0].name
        arguments = "".join(p.arguments or "" for p in pieces)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        fc = first.choices[0].message.function_call
        assert first.choices[0].message.tool_calls is None
        name, arguments, finish = fc.name, fc.arguments, first.choices[0].finish_reason
    assert (name, json.loads(arguments), finish) == (
        "get_weather",
        {"city": "Oslo"},
        "function_call",
    )
    sent = upstream.calls("/v1/messages")[-1].body
    assert sent["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }
    follow = client.chat.completions.create(
        model="claude-test",
        messages=[
            *messages,
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": name, "arguments": arguments},
            },
            {"role": "function", "name": "get_weather", "content": "-5C"},
        ],
        functions=functions,
    )
    assert follow.choices[0].message.content == "Cold."
    sent = upstream.calls("/v1/messages")[-1].body
    use, result = sent["messages"][1]["content"][0], sent["messages"][2]["content"][0]
    assert result["tool_use_id"] == use["id"]


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_beside_tools(upstream, gateway_factory, client_for, stream):
    """Issue 19 point 4: tools plus typed output, the agent shape: a tool call first, then the
    answer through the schema tool, as text."""
    weather = ToolCall(name="get_weather", arguments='{"city": "Rome"}', id="toolu_w")
    answer = ToolCall(name="report", arguments='{"city": "Rome", "sunny": true}', id="toolu_r")
    upstream.script(
        Reply(text="", tool_calls=[weather], finish_reason="tool_calls"),
        Reply(text="", tool_calls=[answer], finish_reason="tool_calls"),
    )
    client = client_for(gateway_factory(config(upstream.url), ENV))
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "report",
            "schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
            },
        },
    }
    messages = [{"role": "user", "content": "Is it sunny in Rome?"}]

    def ask(msgs):
        resp = client.chat.completions.create(
            model="claude-test", messages=msgs, tools=TOOLS, response_format=fmt, stream=stream
        )
        if not stream:
            m = resp.choices[0].message
            calls = [(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()]
            return m.content, calls, resp.choices[0].finish_reason
        chunks = [c for c in resp if c.choices]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        deltas = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or ()]
        calls = [(d.id, d.function.name, "") for d in deltas if d.id]
        if calls:
            calls = [(*calls[0][:2], "".join(d.function.arguments or "" for d in deltas))]
        return text or None, calls, chunks[-1].choices[0].finish_reason

    content, calls, finish = ask(messages)
    assert (content, finish) == (None, "tool_calls")
    assert [(i, n, json.loads(a)) for i, n, a in calls] == [
        ("toolu_w", "get_weather", {"city": "Rome"})
    ]
    sent = upstream.calls("/v1/messages")[-1].body
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "report"]
    assert "tool_choice" not in sent
    assert "`report`" in sent["system"]

    content, calls, finish = ask(
        [
            *messages,
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "toolu_w",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_w", "content": "sunny"},
        ]
    )
    assert (json.loads(content), calls, finish) == ({"city": "Rome", "sunny": True}, [], "stop")


def test_reasoning_effort_thinks_and_the_signed_thinking_goes_back(
    upstream, gateway_factory, client_for
):
    """Issue 19 point 5: reasoning_effort is extended thinking; the thinking comes back as
    reasoning_content, its signed blocks as thinking_blocks, which continue a tool call."""
    call = ToolCall(name="get_weather", arguments='{"city": "Lima"}', id="toolu_l")
    upstream.script(
        Reply(text="", tool_calls=[call], finish_reason="tool_calls", reasoning="Need weather."),
        Reply(text="Warm.", reasoning="It is warm."),
        Reply(text="Warm again."),
    )
    client = client_for(gateway_factory(config(upstream.url), ENV))
    messages = [{"role": "user", "content": "Weather in Lima?"}]
    first = client.chat.completions.create(
        model="claude-test",
        messages=messages,
        tools=TOOLS,
        reasoning_effort="low",
        temperature=0.2,
    )
    msg = first.choices[0].message
    assert msg.reasoning_content == "Need weather."
    sent = upstream.calls("/v1/messages")[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["max_tokens"] == 321 + 1024  # the deployment's default, raised by the budget
    assert "temperature" not in sent

    turn = msg.model_dump(exclude_none=True)
    result = {"role": "tool", "tool_call_id": "toolu_l", "content": "25C"}
    second = client.chat.completions.create(
        model="claude-test",
        messages=[*messages, turn, result],
        tools=TOOLS,
        reasoning_effort="low",
        stream=True,
    )
    chunks = [c for c in second if c.choices]
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks
    )
    assert reasoning == "It is warm."
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Warm."
    sent = upstream.calls("/v1/messages")[-1].body
    assert sent["thinking"]["type"] == "enabled"
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "tool_use"]

    # A client that keeps only the OpenAI fields continues the tool call without thinking.
    plain = {k: v for k, v in turn.items() if k in ("role", "content", "tool_calls")}
    third = client.chat.completions.create(
        model="claude-test",
        messages=[*messages, plain, result],
        tools=TOOLS,
        reasoning_effort="low",
    )
    assert third.choices[0].message.content == "Warm again."
    assert "thinking" not in upstream.calls("/v1/messages")[-1].body


def test_pdf_file_is_a_document(upstream, gateway_factory, client_for):
    upstream.script(Reply(text="A memo."))
    client = client_for(gateway_factory(config(upstream.url), ENV))
    resp = client.chat.completions.create(
        model="claude-test",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "file",
                        "file": {
                            "file_data": "data:application/pdf;base64,JVBERi0xLjQK",
                            "filename": "memo.pdf",
                        },
                    },
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "A memo."
    block = upstream.calls("/v1/messages")[-1].body["messages"][0]["content"][1]
    assert block["type"] == "document" and block["title"] == "memo.pdf"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="claude-test",
            messages=[
                {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
            ],
        )
    assert info.value.body["param"] == "messages[0].content[0].file.file_id"
