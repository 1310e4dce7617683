"""The Messages API face's pure translations, table-driven: request -> chat body, chat
completion -> message, chat chunks -> the Messages SSE events, context -> system text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ailb.api.messages import forwarded_headers, with_context
from ailb.api.messages_reply import MessagesStream, PassThroughStream, to_message
from ailb.api.messages_request import effort_for, translate
from ailb.errors import (
    APIError,
    AuthenticationFailed,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    anthropic_payload,
)

USER = {"role": "user", "content": "hi"}


def req(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 64, "messages": [USER], **fields}


def chat(**fields: Any) -> dict[str, Any]:
    return translate(req(**fields)).chat


# --- request --------------------------------------------------------------------------------------

IMG = {"type": "base64", "media_type": "image/png", "data": "iVBO"}
PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("plain", "plain"),
        (
            [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
            [{"type": "text", "text": "a"}],
        ),
        (
            [{"type": "image", "source": IMG}],
            [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}],
        ),
        (
            [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
            [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        ),
        (
            [{"type": "document", "source": PDF, "title": "a.pdf"}],
            [
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                }
            ],
        ),
        (
            [
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "T"},
                }
            ],
            [{"type": "text", "text": "T"}],
        ),
    ],
    ids=["string", "text-cache-control", "image-base64", "image-url", "pdf", "text-document"],
)
def test_user_content(content: Any, expected: Any) -> None:
    assert chat(messages=[{"role": "user", "content": content}])["messages"] == [
        {"role": "user", "content": expected}
    ]


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Be brief.", [{"role": "system", "content": "Be brief."}]),
        (
            [
                {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "B"},
            ],
            [{"role": "system", "content": "A\n\nB"}],
        ),
        ("", []),
        (None, []),
    ],
    ids=["string", "blocks", "empty", "none"],
)
def test_system(system: Any, expected: list[Any]) -> None:
    assert chat(system=system)["messages"] == [*expected, USER]


def test_tool_use_and_results_are_tool_calls_and_tool_messages() -> None:
    messages = [
        USER,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "s"},
                {"type": "redacted_thinking", "data": "xx"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and then?"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "ok"}],
                },
                {"type": "tool_result", "tool_use_id": "t2", "content": "boom", "is_error": True},
            ],
        },
    ]
    out = translate(req(messages=messages))
    assert out.issues == []
    assert out.chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Hmm.",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "ok"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: boom"},
        {"role": "user", "content": [{"type": "text", "text": "and then?"}]},
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 99}, {"max_completion_tokens": 99}),
        ({"stop_sequences": ["a", "b"]}, {"stop": ["a", "b"]}),
        ({"temperature": 0.5, "top_p": 0.9}, {"temperature": 0.5, "top_p": 0.9}),
        ({"stream": True}, {"stream": True}),
        ({"metadata": {"user_id": "u1"}}, {"user": "u1"}),
        ({"metadata": {"session_id": "s1"}}, {"session_id": "s1"}),
        ({"session_id": "s2", "rag_collection": "docs", "rag_top_k": 2}, {"session_id": "s2"}),
        ({"tool_choice": {"type": "auto"}}, {"tool_choice": "auto"}),
        ({"tool_choice": {"type": "any"}}, {"tool_choice": "required"}),
        ({"tool_choice": {"type": "none"}}, {"tool_choice": "none"}),
        (
            {"tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True}},
            {
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "parallel_tool_calls": False,
            },
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, {"reasoning_effort": "low"}),
        (
            {"tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]},
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "description": "d",
                            "parameters": {"type": "object"},
                        },
                    }
                ]
            },
        ),
    ],
)
def test_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    out = translate(req(**fields))
    assert out.issues == []
    for name, value in expected.items():
        assert out.chat[name] == value


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (2048, "low"), (4096, "medium"), (8192, "medium"), (16384, "high")],
)
def test_thinking_budget_as_effort(budget: int, effort: str) -> None:
    assert effort_for({"type": "enabled", "budget_tokens": budget}) == effort


def test_thinking_other_types() -> None:
    assert effort_for({"type": "disabled"}) is None
    assert effort_for({"type": "adaptive"}) == "medium"
    assert effort_for(None) is None
    with pytest.raises(InvalidRequest):
        effort_for({"type": "enabled"})


def test_ailb_fields_and_metadata_session_never_reach_anthropic() -> None:
    out = translate(
        req(session_id="s", rag_collection="docs", metadata={"session_id": "s", "user_id": "u"})
    )
    assert out.upstream == {
        "model": "m",
        "max_tokens": 64,
        "messages": [USER],
        "metadata": {"user_id": "u"},
    }
    assert "metadata" not in translate(req(metadata={"session_id": "s"})).upstream


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_k": 5}, "top_k"),
        ({"container": "c"}, "container"),
        ({"mcp_servers": []}, "mcp_servers"),
        ({"brand_new_field": 1}, "brand_new_field"),
        ({"stop_sequences": ["1", "2", "3", "4", "5"]}, "stop_sequences"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result"}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "url", "url": "u"}}],
                    }
                ]
            },
            "messages[0].content[0].source",
        ),
    ],
)
def test_what_chat_cannot_carry_is_an_issue_not_an_error(
    fields: dict[str, Any], param: str
) -> None:
    out = translate(req(**fields))
    assert [p for _, p in out.issues] == [param]
    assert out.upstream == {k: v for k, v in req(**fields).items()}  # Anthropic gets it all


def test_service_tier_has_no_effect_when_translated() -> None:
    assert translate(req(service_tier="auto")).issues == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"max_tokens": 5, "messages": [USER]}, "model"),
        ({"model": "m", "messages": [USER]}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": [USER]}, "max_tokens"),
        ({"model": "m", "max_tokens": True, "messages": [USER]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_use"}]}],
            },
            "messages[0].content[0]",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [USER], "tool_choice": {"type": "x"}},
            "tool_choice.type",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [USER], "tools": [{"name": "f"}]},
            "tools[0].input_schema",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [USER], "system": [{"type": "image"}]},
            "system[0]",
        ),
    ],
)
def test_invalid_requests(body: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as e:
        translate(body)
    assert e.value.param == param


def test_count_tokens_needs_no_max_tokens() -> None:
    out = translate({"model": "m", "messages": [USER]}, count=True)
    assert "max_completion_tokens" not in out.chat


# --- reply ----------------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str = "stop", usage: Any = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 3},
    }


@pytest.mark.parametrize(
    ("message", "finish", "content", "stop"),
    [
        ({"content": "hi"}, "stop", [{"type": "text", "text": "hi"}], "end_turn"),
        ({"content": "hi"}, "length", [{"type": "text", "text": "hi"}], "max_tokens"),
        ({"content": "no"}, "content_filter", [{"type": "text", "text": "no"}], "refusal"),
        ({"content": None}, "stop", [], "end_turn"),
        (
            {"content": "4", "reasoning_content": "2+2"},
            "stop",
            [
                {"type": "thinking", "thinking": "2+2", "signature": ""},
                {"type": "text", "text": "4"},
            ],
            "end_turn",
        ),
        (
            {
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x":1}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "g", "arguments": "not json"},
                    },
                ],
            },
            "tool_calls",
            [
                {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}},
                {"type": "tool_use", "id": "c2", "name": "g", "input": {"arguments": "not json"}},
            ],
            "tool_use",
        ),
        (  # a server that says `stop` beside tool calls
            {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": ""}}]},
            "stop",
            [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}],
            "tool_use",
        ),
    ],
)
def test_to_message(message: dict[str, Any], finish: str, content: list[Any], stop: str) -> None:
    msg = to_message(completion(message, finish), "alias", "msg_1")
    assert msg["content"] == content
    assert msg["stop_reason"] == stop
    assert msg["id"] == "msg_1" and msg["model"] == "alias" and msg["type"] == "message"
    assert msg["stop_sequence"] is None


def test_usage_cached_tokens_are_cache_reads() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 60},
    }
    assert to_message(completion({"content": "x"}, usage=usage), "m", "i")["usage"] == {
        "input_tokens": 40,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 60,
    }
    usage["prompt_tokens_details"] = {"cached_tokens": 60, "cache_write_tokens": 30}
    assert to_message(completion({"content": "x"}, usage=usage), "m", "i")["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 60,
    }


# --- stream ---------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None) -> Any:
    out: dict[str, Any] = {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    if usage is not None:
        out = {"choices": [], "usage": usage}
    return out


def events(frames: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in frames.decode().split("\n\n"):
        if not frame:
            continue
        name, data = frame.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def run(chunks: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    enc = MessagesStream("alias", "msg_1")
    frames = b"".join(f for f in (enc.encode(c) for c in chunks) if f is not None)
    return events(frames + enc.done())


def test_stream_text_then_tool_call() -> None:
    out = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "Think."}),
            chunk({"content": "Let me "}),
            chunk({"content": "look."}),
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            chunk(finish="tool_calls"),
            chunk(usage={"prompt_tokens": 7, "completion_tokens": 4}),
        ]
    )
    names = [n for n, _ in out]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = out[0][1]["message"]
    assert start["content"] == [] and start["id"] == "msg_1" and start["model"] == "alias"
    assert out[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    assert out[2][1]["delta"] == {"type": "thinking_delta", "thinking": "Think."}
    assert out[5][1]["delta"] == {"type": "text_delta", "text": "Let me "}
    assert out[8][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert out[9][1] == {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
    }
    assert out[12][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 7,
            "output_tokens": 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_an_empty_stream_is_still_a_whole_message() -> None:
    assert [n for n, _ in run([])] == ["message_start", "message_delta", "message_stop"]


def test_without_upstream_usage_the_estimate_stands() -> None:
    enc = MessagesStream("m", "i", input_tokens=42)
    out = events((enc.encode(chunk({"content": "x"})) or b"") + enc.done())
    assert out[0][1]["message"]["usage"]["input_tokens"] == 42
    assert out[-2][1]["usage"] == {"output_tokens": 0}


def test_stream_sequence_assembles_with_the_sdk() -> None:
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent

    snapshot = None
    for _, data in run(
        [
            chunk({"content": "Hi "}),
            chunk({"content": "there"}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c1",
                            "function": {"name": "f", "arguments": '{"q": "x"}'},
                        }
                    ]
                }
            ),
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{}"}}
                    ]
                }
            ),
            chunk(finish="length"),
        ]
    ):
        event: RawMessageStreamEvent = data  # type: ignore[assignment]
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs={})
    assert snapshot is not None
    assert [b.type for b in snapshot.content] == ["text", "tool_use", "tool_use"]
    assert snapshot.content[0].text == "Hi there"  # type: ignore[union-attr]
    assert snapshot.content[1].input == {"q": "x"}  # type: ignore[union-attr]
    assert snapshot.stop_reason == "max_tokens"


def test_stream_errors() -> None:
    for enc in (MessagesStream("m", "i"), PassThroughStream()):
        assert events(enc.error("cut", "upstream_stream_error")) == [
            ("error", {"type": "error", "error": {"type": "api_error", "message": "cut"}})
        ]
        assert events(enc.error("bye", "gateway_shutting_down"))[0][1]["error"]["type"] == (
            "overloaded_error"
        )


def test_pass_through_relays_raw_frames_and_ends_with_message_stop() -> None:
    enc = PassThroughStream()
    assert (
        enc.encode({"raw": b"event: ping\ndata: {}\n\n", "choices": []})
        == b"event: ping\ndata: {}\n\n"
    )
    assert enc.encode({"usage": {}}) is None
    assert enc.done() == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


# --- context, headers, errors ---------------------------------------------------------------------

CTX = [{"role": "system", "content": "Remembered."}]


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        (None, "Remembered."),
        ("", "Remembered."),
        ("Be brief.", "Be brief.\n\nRemembered."),
        (
            [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
            [
                {"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Remembered."},
            ],
        ),
    ],
)
def test_context_is_system_text_on_the_pass_through(system: Any, expected: Any) -> None:
    body = {"model": "m"} if system is None else {"model": "m", "system": system}
    assert with_context(body, CTX)["system"] == expected
    assert with_context(body, []) is body


def test_forwarded_headers() -> None:
    scope = {
        "headers": [
            (b"anthropic-version", b"2023-06-01"),
            (b"anthropic-beta", b"a"),
            (b"anthropic-beta", b"b"),
            (b"x-api-key", b"client-secret"),
            (b"authorization", b"Bearer x"),
        ]
    }
    assert forwarded_headers(scope) == {"anthropic-version": "2023-06-01", "anthropic-beta": "a,b"}


@pytest.mark.parametrize(
    ("err", "status", "kind"),
    [
        (InvalidRequest("x"), 400, "invalid_request_error"),
        (AuthenticationFailed("x"), 401, "authentication_error"),
        (PermissionDenied("x"), 403, "permission_error"),
        (APIError("x", status=404), 404, "not_found_error"),
        (APIError("x", status=413), 413, "request_too_large"),
        (RateLimited("x"), 429, "rate_limit_error"),
        (APIError("x"), 500, "api_error"),
        (UpstreamUnavailable("x"), 502, "api_error"),
        (APIError("x", status=503), 503, "overloaded_error"),
        (UpstreamTimeout("x"), 504, "timeout_error"),
    ],
)
def test_errors_in_anthropic_shape(err: APIError, status: int, kind: str) -> None:
    assert err.status == status
    assert anthropic_payload(err) == {"type": "error", "error": {"type": kind, "message": "x"}}
