"""End to end through an OpenAI-compatible upstream, with the official openai SDK as client."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from tests.fakes.server import Reply, ToolCall
from tests.processes import free_port

SECRET = "sk-upstream-secret-123456"


def config(*urls: str, model: str = "gpt-test", extra: str = "") -> str:
    deps = "".join(
        f"""
  - name: up{i}
    provider: openai
    base_url: {url}/v1
    api_key_env: UPSTREAM_KEY
    models: [{model}]
    timeouts: {{connect: 2, first_byte: 2, idle: 2, total: 10}}
{extra}"""
        for i, url in enumerate(urls)
    )
    return f"deployments:{deps}\n"


ENV = {"UPSTREAM_KEY": SECRET}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_non_streaming_answer_and_upstream_request(openai_upstream, gateway_factory, client_for):
    openai_upstream.script(Reply(text="Hi there!", usage=(9, 3)))
    gw = gateway_factory(config(openai_upstream.url), ENV)
    resp = client_for(gw).chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        temperature=0.2,
        max_tokens=20,
        seed=7,
        extra_body={"session_id": "s1", "rag_top_k": 2, "custom_field": "kept"},
    )
    assert resp.choices[0].message.content == "Hi there!"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 9
    sent = openai_upstream.calls("/v1/chat/completions")[-1]
    assert sent.headers["Authorization"] == f"Bearer {SECRET}"
    assert sent.body["messages"] == MESSAGES
    assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] == 20
    assert sent.body["seed"] == 7 and sent.body["custom_field"] == "kept"
    assert "session_id" not in sent.body and "rag_top_k" not in sent.body


def test_names_other_servers_do_not_read_are_renamed_on_the_way(
    openai_upstream, gateway_factory, client_for
):
    """A local OpenAI-compatible server (this fake is one: not api.openai.com) gets the
    answer limit as `max_tokens` and `developer` instructions as a system message, streamed
    or not; the client's other fields pass as they are."""
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    client.chat.completions.create(model="gpt-test", messages=messages, max_completion_tokens=30)
    with client.chat.completions.create(
        model="gpt-test", messages=messages, max_completion_tokens=30, stream=True
    ) as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    for sent in openai_upstream.calls("/v1/chat/completions")[-2:]:
        assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent.body["max_tokens"] == 30 and "max_completion_tokens" not in sent.body


def test_tools_of_any_type_pass_through_and_function_tools_are_checked(
    openai_upstream, gateway_factory, client_for
):
    """OpenAI's `custom` tools (and whatever type comes next) reach an OpenAI-format upstream
    untouched, with unknown fields; a malformed function tool is still a 400 naming it."""
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    tools = [
        {"type": "custom", "custom": {"name": "code_exec", "description": "Runs Python.",
                                      "format": {"type": "text"}}},
        {"type": "function", "function": {"name": "get_weather", "parameters": {}},
         "future_field": True},
        {"type": "web_search_preview", "search_context_size": "low"},
    ]  # fmt: skip
    resp = client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, tools=tools, tool_choice="auto"
    )
    assert resp.choices[0].message.content
    assert openai_upstream.calls("/v1/chat/completions")[-1].body["tools"] == tools
    for bad, param in (
        ({"type": "function", "function": {"name": "bad name"}}, "tools[1].function.name"),
        ({"type": "function"}, "tools[1]"),
        ({"function": {"name": "f"}}, "tools[1].type"),
    ):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model="gpt-test", messages=MESSAGES, tools=[tools[1], bad]
            )
        assert e.value.body["param"] == param, e.value.body


def test_streaming_assembles_and_honours_include_usage(
    openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    openai_upstream.script(Reply(text="streamed words here", usage=(5, 4)))
    chunks = list(client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed words here"
    assert all(c.usage is None for c in chunks)  # not asked: no usage chunk
    # The gateway always asks the upstream for usage (billing needs it).
    assert openai_upstream.calls("/v1/chat/completions")[-1].body["stream_options"] == {
        "include_usage": True
    }

    openai_upstream.script(Reply(text="abc", usage=(5, 4)))
    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


def test_raw_stream_ends_with_done(openai_upstream, gateway_factory):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    with httpx2.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json={"model": "gpt-test", "messages": MESSAGES, "stream": True},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_tool_calls_both_ways(openai_upstream, gateway_factory, client_for):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    call = ToolCall(name="get_weather", arguments='{"city":"Paris"}', id="call_9")
    openai_upstream.script(Reply(text="", tool_calls=[call], finish_reason="tool_calls"))
    resp = client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, tools=tools, tool_choice="auto"
    )
    tc = resp.choices[0].message.tool_calls[0]
    assert (tc.id, tc.function.name, json.loads(tc.function.arguments)) == (
        "call_9",
        "get_weather",
        {"city": "Paris"},
    )
    assert openai_upstream.calls("/v1/chat/completions")[-1].body["tools"] == tools

    openai_upstream.script(Reply(text="", tool_calls=[call], finish_reason="tool_calls"))
    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, tools=tools, stream=True
        )
    )
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # The tool result goes back upstream as the client sent it.
    follow = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "18C"},
    ]
    client.chat.completions.create(model="gpt-test", messages=follow)
    assert openai_upstream.calls("/v1/chat/completions")[-1].body["messages"][-1] == follow[-1]


def test_image_parts_pass_through(openai_upstream, gateway_factory, client_for):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    client_for(gw).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": content}],
        response_format={"type": "json_object"},
    )
    sent = openai_upstream.calls("/v1/chat/completions")[-1].body
    assert sent["messages"][0]["content"] == content
    assert sent["response_format"] == {"type": "json_object"}


def test_client_errors(openai_upstream, gateway_factory, client_for):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-test", messages=MESSAGES, temperature=5)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="gpt-test", messages=[{"role": "robot", "content": "x"}]
        )
    assert bad.value.param == "messages[0].role"
    r = httpx2.post(
        f"{gw.url}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx2.post(f"{gw.url}/v1/chat/completions", json={"messages": MESSAGES})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert openai_upstream.calls("/v1/chat/completions") == []  # none of them went upstream


def test_body_over_limit_is_413(openai_upstream, gateway_factory, client_for):
    gw = gateway_factory(config(openai_upstream.url), {**ENV, "AILB_MAX_BODY_BYTES": "2000"})
    big = [{"role": "user", "content": "x" * 5000}]
    with pytest.raises(openai.APIStatusError) as e:
        client_for(gw).chat.completions.create(model="gpt-test", messages=big)
    assert e.value.status_code == 413


def test_upstream_client_error_is_passed_back_without_secrets(
    openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    openai_upstream.script(
        Reply(
            status=400,
            error={
                "error": {
                    "message": f"This model's maximum context length is 8 tokens (key {SECRET})",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        )
    )
    with pytest.raises(openai.BadRequestError) as e:
        client_for(gw).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert e.value.code == "context_length_exceeded"
    assert "maximum context length" in e.value.message
    assert SECRET not in e.value.message and SECRET not in e.value.response.text


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply(status=500, error={"error": {"message": "boom"}}), 502),
        (Reply(garbage=True), 502),
        (Reply(drop=True), 502),
        (Reply(hang=True), 504),
        (Reply(status=401, error={"error": {"message": "bad key"}}), 502),
    ],
    ids=["500", "garbage", "dropped", "hang", "401"],
)
def test_upstream_failures_map_to_gateway_errors(
    openai_upstream, gateway_factory, client_for, reply, status
):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    openai_upstream.replies.extend([reply] * 4)
    with pytest.raises(openai.APIStatusError) as e:
        client_for(gw).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert e.value.status_code == status
    body = e.value.response.text
    assert "127.0.0.1" not in body and SECRET not in body and "up0" not in body


def test_refused_connection_fails_over_to_the_next_deployment(
    openai_upstream, gateway_factory, client_for
):
    dead = f"http://127.0.0.1:{free_port()}"
    gw = gateway_factory(
        config(dead, openai_upstream.url).replace("name: up1", "name: up1\n    priority: 1"), ENV
    )
    client = client_for(gw)
    for _ in range(5):
        resp = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        assert resp.choices[0].message.content
    stats = httpx2.get(f"{gw.url}/api/routing/stats").json()
    assert stats["deployments"]["up1"]["successes"] == 5


def test_stream_cut_mid_way_ends_with_error_event_not_done(
    openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    openai_upstream.script(Reply(text="one two three four", pieces=4, cut_after=3))
    with httpx2.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json={"model": "gpt-test", "messages": MESSAGES, "stream": True},
    ) as r:
        body = r.read().decode()
    assert r.status_code == 200
    assert "[DONE]" not in body
    last = [e for e in body.split("\n\n") if e][-1]
    assert json.loads(last.removeprefix("data: "))["error"]["code"] == "upstream_stream_error"

    openai_upstream.script(Reply(text="one two three four", pieces=4, cut_after=3))
    with pytest.raises(openai.APIError):
        list(
            client_for(gw).chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
        )


def test_stream_fails_over_before_first_byte(openai_upstream, gateway_factory, client_for):
    gw = gateway_factory(config(openai_upstream.url, openai_upstream.url), ENV)
    openai_upstream.script(Reply(status=503, error={"error": {"message": "overloaded"}}))
    chunks = list(
        client_for(gw).chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_models_health_and_stats(openai_upstream, gateway_factory, client_for):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    models = client_for(gw).models.list()
    assert [m.id for m in models.data] == ["gpt-test"]
    health = httpx2.get(f"{gw.url}/healthz").json()
    assert health["providers"]["up0"]["provider"] == "openai"
    assert health["status"] in ("ok", "degraded")
    client_for(gw).chat.completions.create(model="gpt-test", messages=MESSAGES)
    stats = httpx2.get(f"{gw.url}/api/routing/stats").json()
    assert stats["deployments"]["up0"]["requests"] == 1
    assert stats["deployments"]["up0"]["tokens"] == {"prompt": 11, "completion": 7}
    for text in (json.dumps(health), json.dumps(stats)):
        assert SECRET not in text
