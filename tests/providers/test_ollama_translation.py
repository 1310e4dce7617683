"""Pure translation between OpenAI chat completions and Ollama's /api/chat."""

from __future__ import annotations

from typing import Any

import pytest

from ailb.errors import InvalidRequest
from ailb.providers.base import UnsupportedFeature, UpstreamError
from ailb.providers.ollama import StreamTranslator, to_chat_request, to_completion

USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}


def req(messages: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": messages, **kw}


REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "plain",
        req([USER]),
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    ),
    (
        "options mapping",
        req([USER], temperature=0.2, top_p=0.5, seed=7, max_tokens=64, stop="x"),
        {
            "options": {
                "temperature": 0.2,
                "top_p": 0.5,
                "seed": 7,
                "num_predict": 64,
                "stop": ["x"],
            }
        },
    ),
    (
        "developer role is a system message",
        req([{"role": "developer", "content": "rules"}, USER]),
        {"messages": [{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"}]},
    ),
    (
        "base64 images",
        req(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                    ],
                }
            ]
        ),
        {"messages": [{"role": "user", "content": "what is it", "images": ["QUJD"]}]},
    ),
    ("json mode", req([USER], response_format={"type": "json_object"}), {"format": "json"}),
    (
        "json schema",
        req(
            [USER],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "p", "schema": {"a": 1}},
            },
        ),
        {"format": {"a": 1}},
    ),
    ("tools passed through", req([USER], tools=[TOOL], tool_choice="auto"), {"tools": [TOOL]}),
    (
        "tool calls and results matched by id to the tool name",
        req(
            [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": "get", "arguments": '{"q":1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_0", "content": "42"},
            ]
        ),
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "get", "arguments": {"q": 1}}}],
                },
                {"role": "tool", "content": "42", "tool_name": "get"},
            ]
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "expected"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES]
)
def test_request_translation(name: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    out = to_chat_request(body, stream=False)
    for key, value in expected.items():
        assert out[key] == value, key


def test_tool_choice_none_sends_no_tools() -> None:
    assert "tools" not in to_chat_request(req([USER], tools=[TOOL], tool_choice="none"), True)


@pytest.mark.parametrize(
    ("body", "param", "error"),
    [
        (req([USER], tools=[TOOL], tool_choice="required"), "tool_choice", UnsupportedFeature),
        (
            req(
                [USER],
                tools=[TOOL],
                tool_choice={"type": "function", "function": {"name": "get"}},
            ),
            "tool_choice",
            UnsupportedFeature,
        ),
        (req([USER], n=3), "n", UnsupportedFeature),
        (req([USER], logprobs=True), "logprobs", UnsupportedFeature),
        (
            req(
                [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            ),
            "messages[0].content[0]",
            UnsupportedFeature,
        ),
        (
            req(
                [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].function.arguments",
            InvalidRequest,
        ),
        (req([{"role": "robot", "content": "x"}]), "messages[0].role", InvalidRequest),
    ],
)
def test_refused_requests_name_the_parameter(
    body: dict[str, Any], param: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        to_chat_request(body, stream=False)
    assert isinstance(info.value, InvalidRequest)
    assert info.value.param == param


def reply(**kw: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "Hi there"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 12,
        "eval_count": 4,
        **kw,
    }


@pytest.mark.parametrize(
    ("extra", "finish"),
    [
        ({}, "stop"),
        ({"done_reason": "length"}, "length"),
        (
            {
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "get", "arguments": {"q": 1}}}],
                }
            },
            "tool_calls",
        ),
    ],
)
def test_completion(extra: dict[str, Any], finish: str) -> None:
    out = to_completion(reply(**extra), "llama3.2")
    choice = out["choices"][0]
    assert choice["finish_reason"] == finish
    assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    if finish == "tool_calls":
        assert choice["message"]["content"] is None
        assert choice["message"]["tool_calls"] == [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get", "arguments": '{"q":1}'},
            }
        ]
    else:
        assert choice["message"]["content"] == "Hi there"


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        ({"error": "model 'x' not found"}, "status"),
        ({"done": False}, "protocol"),
        ([1], "protocol"),
    ],
)
def test_bad_replies_raise(obj: Any, kind: str) -> None:
    with pytest.raises(UpstreamError) as info:
        to_completion(obj, "m")
    assert info.value.kind == kind


def test_stream_lines_to_chunks() -> None:
    t = StreamTranslator("llama3.2")
    lines = [
        {"message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"message": {"role": "assistant", "content": "lo"}, "done": False},
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get", "arguments": {}}}],
            },
            "done": False,
        },
        reply(message={"role": "assistant", "content": ""}),
    ]
    chunks = [c for line in lines for c in t.feed(line)]
    assert t.done
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Hello"
    calls = [tc for d in deltas for tc in d.get("tool_calls", ())]
    assert calls == [
        {
            "index": 0,
            "id": "call_0",
            "type": "function",
            "function": {"name": "get", "arguments": "{}"},
        }
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1] == {
        **chunks[-1],
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }


def test_stream_error_line_raises() -> None:
    t = StreamTranslator("m")
    t.feed({"message": {"content": "a"}, "done": False})
    with pytest.raises(UpstreamError) as info:
        t.feed({"error": "out of memory"})
    assert info.value.status == 502
