"""Pure translation between OpenAI chat completions and Anthropic's Messages API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ailb.errors import InvalidRequest
from ailb.providers.anthropic import (
    JSON_OBJECT_INSTRUCTION,
    Reading,
    StreamTranslator,
    to_completion,
    to_messages_request,
    translate,
)
from ailb.providers.base import UnsupportedFeature, UpstreamError

PNG = "iVBORw0KGgo="


def req(messages: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"model": "claude-x", "messages": messages, **kw}


USER = {"role": "user", "content": "hi"}

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "plain user message, default max_tokens",
        req([USER]),
        {
            "model": "claude-x",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "max_tokens": 1024,
        },
    ),
    (
        "system and developer messages become the system prompt",
        req(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "No"},
                USER,
            ]
        ),
        {"system": "Be brief.\n\nNo"},
    ),
    (
        "client max_tokens wins; max_completion_tokens over max_tokens",
        req([USER], max_tokens=50, max_completion_tokens=70),
        {"max_tokens": 70},
    ),
    ("temperature above 1 is clamped", req([USER], temperature=1.7), {"temperature": 1.0}),
    (
        "temperature kept",
        req([USER], temperature=0.3, top_p=0.9),
        {"temperature": 0.3, "top_p": 0.9},
    ),
    ("stop string", req([USER], stop="END"), {"stop_sequences": ["END"]}),
    ("stop list", req([USER], stop=["a", "b"]), {"stop_sequences": ["a", "b"]}),
    ("user id", req([USER], user="u-1"), {"metadata": {"user_id": "u-1"}}),
    (
        "json_object adds a system instruction",
        req([USER], response_format={"type": "json_object"}),
        {"system": JSON_OBJECT_INSTRUCTION},
    ),
    (
        "json_schema forces a tool carrying the schema",
        req(
            [USER],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": {"type": "object"}},
            },
        ),
        {
            "tools": [
                {
                    "name": "person",
                    "input_schema": {"type": "object"},
                    "description": "Gives the final answer.",
                }
            ],
            "tool_choice": {"type": "tool", "name": "person"},
        },
    ),
    (
        "images: data URL and https URL",
        req(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                    ],
                }
            ]
        ),
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                    ],
                }
            ]
        },
    ),
    (
        "tools, tool calls and tool results (results merged into one user turn)",
        req(
            [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get", "arguments": '{"q": 1}'},
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "get", "arguments": "{}"},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "one"},
                {
                    "role": "tool",
                    "tool_call_id": "toolu_2",
                    "content": [{"type": "text", "text": "two"}],
                },
            ],
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "get",
                        "description": "Get it",
                        "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}},
                    },
                }
            ],
            tool_choice="required",
            parallel_tool_calls=False,
        ),
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 1}},
                        {"type": "tool_use", "id": "toolu_2", "name": "get", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "one"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "two"},
                    ],
                },
            ],
            "tools": [
                {
                    "name": "get",
                    "description": "Get it",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "integer"}}},
                }
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        },
    ),
    (
        "named tool choice",
        req(
            [USER],
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice={"type": "function", "function": {"name": "f"}},
        ),
        {
            "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}],
            "tool_choice": {"type": "tool", "name": "f"},
        },
    ),
    ("neutral penalties are accepted", req([USER], frequency_penalty=0, presence_penalty=0), {}),
]


@pytest.mark.parametrize(
    ("name", "body", "expected"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES]
)
def test_request_translation(name: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    out = to_messages_request(body, 1024)
    for key, value in expected.items():
        assert out[key] == value, key
    assert "n" not in out and "frequency_penalty" not in out


REFUSED: list[tuple[dict[str, Any], str, type[Exception]]] = [
    (req([USER], n=2), "n", UnsupportedFeature),
    (req([USER], logprobs=True), "logprobs", UnsupportedFeature),
    (req([USER], frequency_penalty=0.5), "frequency_penalty", UnsupportedFeature),
    (req([USER], logit_bias={"1": 5}), "logit_bias", UnsupportedFeature),
    (
        req([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
        "messages[0].content[0]",
        UnsupportedFeature,
    ),
    (
        req(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]
        ),
        "messages[0].content[0]",
        InvalidRequest,
    ),
    (
        req(
            [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "not json"}}],
                },
            ]
        ),
        "messages[1].tool_calls[0].function.arguments",
        InvalidRequest,
    ),
    (req([USER, {"role": "tool", "content": "x"}]), "messages[1].tool_call_id", InvalidRequest),
    (
        req(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
                    ],
                }
            ]
        ),
        "messages[0].content[0]",
        UnsupportedFeature,
    ),
    (req([{"role": "wizard", "content": "x"}]), "messages[0].role", InvalidRequest),
]


@pytest.mark.parametrize(("body", "param", "error"), REFUSED)
def test_refused_requests_name_the_parameter(
    body: dict[str, Any], param: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        to_messages_request(body, 1024)
    assert isinstance(info.value, InvalidRequest)
    assert info.value.param == param


def message(content: list[dict[str, Any]], stop: str, **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_maps_to_finish_reason(stop: str, finish: str) -> None:
    call = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    content = [{"type": "text", "text": "x"}, *([call] if stop == "tool_use" else [])]
    out = to_completion(message(content, stop))
    assert out["choices"][0]["finish_reason"] == finish


def test_completion_with_text_tool_calls_and_cache_usage() -> None:
    out = to_completion(
        message(
            [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_9", "name": "get", "input": {"q": 2}},
            ],
            "tool_use",
            cache_read_input_tokens=100,
            cache_creation_input_tokens=20,
        )
    )
    msg = out["choices"][0]["message"]
    assert msg["content"] == "Let me look."
    assert msg["tool_calls"] == [
        {"id": "toolu_9", "type": "function", "function": {"name": "get", "arguments": '{"q":2}'}}
    ]
    assert out["usage"] == {
        "prompt_tokens": 130,
        "completion_tokens": 5,
        "total_tokens": 135,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20},
    }


def test_json_schema_tool_answer_becomes_text() -> None:
    out = to_completion(
        message([{"type": "tool_use", "id": "t", "name": "person", "input": {"a": 1}}], "tool_use"),
        Reading(schema_tool="person"),
    )
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": '{"a":1}'}
    assert choice["finish_reason"] == "stop"


def test_not_a_message_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamError) as info:
        to_completion({"hello": 1})
    assert info.value.kind == "protocol"


def events(*pairs: tuple[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return [(name, json.dumps({"type": name, **data})) for name, data in pairs]


STREAM = events(
    (
        "message_start",
        {
            "message": {
                "id": "msg_s",
                "model": "claude-x",
                "usage": {"input_tokens": 9, "output_tokens": 1},
            }
        },
    ),
    ("ping", {}),
    ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
    ("content_block_stop", {"index": 0}),
    (
        "content_block_start",
        {
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"q":'}},
    ),
    (
        "content_block_delta",
        {"index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
    ),
    ("content_block_stop", {"index": 1}),
    (
        "message_delta",
        {
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 12},
        },
    ),
    ("message_stop", {}),
)


def test_stream_translation_whole_sequence() -> None:
    t = StreamTranslator("claude-x")
    chunks = [c for name, data in STREAM for c in t.feed(name, data)]
    assert t.done
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Hello"
    calls = [tc for d in deltas for tc in d.get("tool_calls", ())]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get", "arguments": ""},
    }
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"q":1}'
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f] == ["tool_calls"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 9
    assert chunks[-1]["usage"]["completion_tokens"] == 12
    assert {c["id"] for c in chunks} == {"msg_s"}


@pytest.mark.parametrize(
    ("kind", "status"),
    [("overloaded_error", 529), ("api_error", 500), ("rate_limit_error", 429), ("weird", 502)],
)
def test_stream_error_event_raises_with_the_matching_status(kind: str, status: int) -> None:
    t = StreamTranslator("claude-x")
    t.feed(*STREAM[0])
    with pytest.raises(UpstreamError) as info:
        t.feed("error", json.dumps({"type": "error", "error": {"type": kind, "message": "busy"}}))
    assert info.value.status == status
    assert info.value.client_message == "busy"


def test_stream_json_schema_tool_streams_as_content() -> None:
    t = StreamTranslator("claude-x", Reading(schema_tool="person"))
    seq = events(
        ("message_start", {"message": {"id": "m", "usage": {"input_tokens": 1}}}),
        (
            "content_block_start",
            {
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t", "name": "person", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        ),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        ),
        ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
        ("message_stop", {}),
    )
    chunks = [c for name, data in seq for c in t.feed(name, data)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == '{"a":1}'
    assert not any("tool_calls" in d for d in deltas)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


# --- conversations made valid (issue 19 point 8) -------------------------------------------------


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


CALL = {"id": "toolu_1", "type": "function", "function": {"name": "get", "arguments": "{}"}}
USE = {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
CONTINUE = user(text("(continue)"))

NORMALISED: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    (
        "a conversation starting with the assistant gets a user turn first",
        [{"role": "assistant", "content": "Hello, how can I help?"}, USER],
        [CONTINUE, assistant(text("Hello, how can I help?")), user(text("hi"))],
    ),
    (
        "empty system messages make no system prompt",
        [{"role": "system", "content": " "}, USER],
        [user(text("hi"))],
    ),
    (
        "only a system message: a user turn is made",
        [{"role": "system", "content": "Say hello."}],
        [CONTINUE],
    ),
    (
        "system messages in the middle do not split turns",
        [USER, {"role": "developer", "content": "x"}, {"role": "user", "content": "again"}],
        [user(text("hi"), text("again"))],
    ),
    (
        "empty and whitespace user texts are left out, and an empty turn with them",
        [
            USER,
            {"role": "assistant", "content": "A"},
            {"role": "user", "content": ""},
            {"role": "assistant", "content": "B"},
            {"role": "user", "content": [text(" "), text("q")]},
        ],
        [user(text("hi")), assistant(text("A"), text("B")), user(text("q"))],
    ),
    (
        "an empty assistant turn is left out, the user turns around it merged",
        [USER, {"role": "assistant", "content": ""}, {"role": "user", "content": "more"}],
        [user(text("hi"), text("more"))],
    ),
    (
        "a final assistant prefill loses its trailing whitespace",
        [USER, {"role": "assistant", "content": "The answer is "}],
        [user(text("hi")), assistant(text("The answer is"))],
    ),
    (
        "tool results go first in their turn, an empty result has no content",
        [
            USER,
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "user", "content": "and also"},
            {"role": "tool", "tool_call_id": "toolu_1", "content": ""},
        ],
        [
            user(text("hi")),
            assistant(USE),
            user({"type": "tool_result", "tool_use_id": "toolu_1"}, text("and also")),
        ],
    ),
    (
        "image/jpg is image/jpeg",
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}}
                ],
            }
        ],
        [
            user(
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG},
                }
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("name", "messages", "expected"), NORMALISED, ids=[c[0] for c in NORMALISED]
)
def test_conversations_are_made_valid(
    name: str, messages: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    out = to_messages_request(req(messages), 1024)
    assert out["messages"] == expected
    assert out.get("system", "x").strip()


# --- every OpenAI request field: translated, no effect, or refused (issue 19 point 11) --------

FIELDS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("max_completion_tokens", {"max_completion_tokens": 99}, {"max_tokens": 99}),
    ("max_tokens", {"max_tokens": 77}, {"max_tokens": 77}),
    ("stop", {"stop": "END"}, {"stop_sequences": ["END"]}),
    ("user", {"user": "u-1"}, {"metadata": {"user_id": "u-1"}}),
    (
        "safety_identifier over user",
        {"user": "u-1", "safety_identifier": "s-1"},
        {"metadata": {"user_id": "s-1"}},
    ),
    (
        "no effect: OpenAI's cache hints, stored completions, stream options",
        {
            "prompt_cache_key": "k",
            "prompt_cache_retention": "24h",
            "store": True,
            "metadata": {"tag": "x"},
            "stream_options": {"include_usage": True},
        },
        {},
    ),
    (
        "neutral values",
        {
            "n": 1,
            "logprobs": False,
            "top_logprobs": 0,
            "frequency_penalty": 0,
            "presence_penalty": 0.0,
            "logit_bias": {},
            "service_tier": "auto",
            "verbosity": "medium",
            "modalities": ["text"],
        },
        {},
    ),
    ("Anthropic's own top_k", {"top_k": 5}, {"top_k": 5}),
]


@pytest.mark.parametrize(("name", "fields", "expected"), FIELDS, ids=[c[0] for c in FIELDS])
def test_request_fields(name: str, fields: dict[str, Any], expected: dict[str, Any]) -> None:
    out = to_messages_request(req([USER], **fields), 1024)
    allowed = {"model", "messages", "max_tokens", *expected}
    assert set(out) <= allowed, set(out) - allowed
    for key, value in expected.items():
        assert out[key] == value, key


FIELDS_REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"n": 2}, "n"),
    ({"n": True}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"presence_penalty": 0.4}, "presence_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"verbosity": "low"}, "verbosity"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"seed": 7}, "seed"),
    ({"some_new_field": 1}, "some_new_field"),
    ({"response_format": {"type": "grammar"}}, "response_format.type"),
]


@pytest.mark.parametrize(("fields", "param"), FIELDS_REFUSED)
def test_fields_anthropic_cannot_serve_are_refused_by_name(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedFeature) as info:
        to_messages_request(req([USER], **fields), 1024)
    assert info.value.param == param
    assert info.value.code == "unsupported_feature"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_k": "5"}, "top_k"),
        ({"thinking": {"type": "enabled"}, "reasoning_effort": "low"}, "thinking"),
    ],
)
def test_invalid_anthropic_fields(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        to_messages_request(req([USER], **fields), 1024)
    assert info.value.param == param


# --- legacy functions (issue 19 point 6) -------------------------------------------------------

FN = {"name": "get", "description": "Get it", "parameters": {"type": "object"}}
GET_TOOL = {"name": "get", "description": "Get it", "input_schema": {"type": "object"}}
ONE_CALL = {"disable_parallel_tool_use": True}

LEGACY: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "functions alone: tools, one call at most",
        {"functions": [FN]},
        {"tools": [GET_TOOL], "tool_choice": {"type": "auto", **ONE_CALL}},
    ),
    (
        "function_call auto",
        {"functions": [FN], "function_call": "auto"},
        {"tools": [GET_TOOL], "tool_choice": {"type": "auto", **ONE_CALL}},
    ),
    (
        "function_call naming one",
        {"functions": [FN], "function_call": {"name": "get"}},
        {"tools": [GET_TOOL], "tool_choice": {"type": "tool", "name": "get", **ONE_CALL}},
    ),
    (
        "function_call none",
        {"functions": [FN], "function_call": "none"},
        {"tools": [GET_TOOL], "tool_choice": {"type": "none"}},
    ),
]


@pytest.mark.parametrize(("name", "fields", "expected"), LEGACY, ids=[c[0] for c in LEGACY])
def test_legacy_functions_are_tools(
    name: str, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    out, reading = translate(req([USER], **fields), 1024)
    assert reading.legacy
    for key, value in expected.items():
        assert out[key] == value, key


def test_legacy_calls_and_results_in_history_share_an_id() -> None:
    history = [
        USER,
        {"role": "assistant", "content": None, "function_call": {"name": "get", "arguments": "{}"}},
        {"role": "function", "name": "get", "content": "sunny"},
    ]
    out = to_messages_request(req(history, functions=[FN]), 1024)
    assert out["messages"][1:] == [
        assistant({"type": "tool_use", "id": "call_legacy_1", "name": "get", "input": {}}),
        user({"type": "tool_result", "tool_use_id": "call_legacy_1", "content": "sunny"}),
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (req([USER], functions=[FN], tools=[{"type": "function", "function": FN}]), "functions"),
        (req([USER], functions=[FN], function_call={"name": "other"}), "function_call.name"),
        (req([USER, {"role": "function", "name": "get", "content": "x"}]), "messages[1].name"),
    ],
)
def test_legacy_misuse_is_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        to_messages_request(body, 1024)
    assert info.value.param == param


def test_legacy_answer_is_a_function_call() -> None:
    use = {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 1}}
    out = to_completion(message([use, {**use, "id": "toolu_2"}], "tool_use"), Reading(legacy=True))
    choice = out["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "get", "arguments": '{"q":1}'},
    }
    assert choice["finish_reason"] == "function_call"


def test_legacy_stream_has_function_call_deltas() -> None:
    t = StreamTranslator("claude-x", Reading(legacy=True))
    chunks = [c for name, data in STREAM for c in t.feed(name, data)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert not any("tool_calls" in d for d in deltas)
    fc = [d["function_call"] for d in deltas if "function_call" in d]
    assert fc[0] == {"name": "get", "arguments": ""}
    assert "".join(f["arguments"] for f in fc) == '{"q":1}'
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f] == ["function_call"]


# --- response_format json_schema beside tools (issue 19 point 4) ---------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
ANSWER_TOOL = {"name": "answer", "input_schema": SCHEMA, "description": "Gives the final answer."}
USER_TOOLS = [{"type": "function", "function": FN}]

WITH_TOOLS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "beside tools: both offered, the model chooses, an instruction says how to answer",
        {"tools": USER_TOOLS},
        {"tools": [GET_TOOL, ANSWER_TOOL], "tool_choice": None, "instructed": True},
    ),
    (
        "tool_choice auto kept",
        {"tools": USER_TOOLS, "tool_choice": "auto"},
        {"tools": [GET_TOOL, ANSWER_TOOL], "tool_choice": {"type": "auto"}, "instructed": True},
    ),
    (
        "required: any tool, the answer tool included",
        {"tools": USER_TOOLS, "tool_choice": "required"},
        {"tools": [GET_TOOL, ANSWER_TOOL], "tool_choice": {"type": "any"}, "instructed": True},
    ),
    (
        "tool_choice none: the answer tool forced",
        {"tools": USER_TOOLS, "tool_choice": "none"},
        {
            "tools": [GET_TOOL, ANSWER_TOOL],
            "tool_choice": {"type": "tool", "name": "answer"},
            "instructed": False,
        },
    ),
    (
        "alone: forced",
        {},
        {
            "tools": [ANSWER_TOOL],
            "tool_choice": {"type": "tool", "name": "answer"},
            "instructed": False,
        },
    ),
]


@pytest.mark.parametrize(("name", "fields", "expected"), WITH_TOOLS, ids=[c[0] for c in WITH_TOOLS])
def test_json_schema_beside_tools(
    name: str, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    out, reading = translate(req([USER], response_format=JSON_SCHEMA, **fields), 1024)
    assert reading.schema_tool == "answer"
    assert out["tools"] == expected["tools"]
    assert out.get("tool_choice") == expected["tool_choice"]
    assert ("`answer`" in out.get("system", "")) == expected["instructed"]


def test_schema_tool_name_never_shadows_a_client_tool() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "get", "schema": SCHEMA}}
    out, reading = translate(req([USER], response_format=fmt, tools=USER_TOOLS), 1024)
    assert reading.schema_tool == "get_"
    assert [t["name"] for t in out["tools"]] == ["get", "get_"]


def test_answer_tool_is_the_text_and_client_tools_are_calls() -> None:
    reading = Reading(schema_tool="answer")
    use = {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 1}}
    out = to_completion(message([use], "tool_use"), reading)
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get"
    answer = {"type": "tool_use", "id": "toolu_2", "name": "answer", "input": {"city": "Oslo"}}
    out = to_completion(message([{"type": "text", "text": "Done: "}, answer], "tool_use"), reading)
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": 'Done: {"city":"Oslo"}',
    }
    assert out["choices"][0]["finish_reason"] == "stop"


def test_stream_with_tools_and_schema_calls_stay_calls() -> None:
    t = StreamTranslator("claude-x", Reading(schema_tool="answer"))
    chunks = [c for name, data in STREAM for c in t.feed(name, data)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert [
        tc["function"]["name"] for d in deltas for tc in d.get("tool_calls", ()) if "id" in tc
    ] == ["get"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


# --- reasoning_effort as extended thinking, PDF files (issue 19 point 5) -------------------------


def thinking(budget: int) -> dict[str, Any]:
    return {"type": "enabled", "budget_tokens": budget}


SIGNED = {"type": "thinking", "thinking": "I should look it up.", "signature": "sig-1"}
LOOP = [
    USER,
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
]
SIGNED_LOOP = [LOOP[0], {**LOOP[1], "thinking_blocks": [SIGNED]}, LOOP[2]]

THINKING: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("absent: no thinking", {}, {"thinking": None, "max_tokens": 1024}),
    ("none: no thinking", {"reasoning_effort": "none"}, {"thinking": None}),
    (
        "no limit given: max_tokens raised by the budget",
        {"reasoning_effort": "low"},
        {"thinking": thinking(1024), "max_tokens": 2048},
    ),
    (
        "minimal is the minimum budget",
        {"reasoning_effort": "minimal", "max_tokens": 4096},
        {"thinking": thinking(1024), "max_tokens": 4096},
    ),
    (
        "the client's limit covers thinking and answer",
        {"reasoning_effort": "medium", "max_completion_tokens": 10000},
        {"thinking": thinking(4096), "max_tokens": 10000},
    ),
    (
        "the budget is at most half the limit",
        {"reasoning_effort": "high", "max_tokens": 8000},
        {"thinking": thinking(4000), "max_tokens": 8000},
    ),
    (
        "a limit with no room for the minimum budget: no thinking",
        {"reasoning_effort": "low", "max_tokens": 1500},
        {"thinking": None, "max_tokens": 1500},
    ),
    (
        "temperature, top_p and top_k are left out with thinking",
        {"reasoning_effort": "low", "temperature": 0.2, "top_p": 0.5, "top_k": 3},
        {"thinking": thinking(1024), "temperature": None, "top_p": None, "top_k": None},
    ),
    (
        "and kept without",
        {"reasoning_effort": "none", "temperature": 0.2},
        {"thinking": None, "temperature": 0.2},
    ),
    (
        "a forced tool wins over thinking",
        {"reasoning_effort": "high", "tools": USER_TOOLS, "tool_choice": "required"},
        {"thinking": None, "tool_choice": {"type": "any"}},
    ),
    (
        "json_schema with thinking: the schema tool offered, not forced",
        {"reasoning_effort": "low", "response_format": JSON_SCHEMA},
        {"thinking": thinking(1024), "tool_choice": {"type": "auto"}},
    ),
    (
        "Anthropic's own thinking passes",
        {"thinking": thinking(2000), "max_tokens": 5000},
        {"thinking": thinking(2000), "max_tokens": 5000},
    ),
]


@pytest.mark.parametrize(("name", "fields", "expected"), THINKING, ids=[c[0] for c in THINKING])
def test_reasoning_effort_is_extended_thinking(
    name: str, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    out = to_messages_request(req([USER], **fields), 1024)
    for key, value in expected.items():
        assert out.get(key) == value, key


def test_signed_thinking_comes_back_before_the_tool_calls() -> None:
    out = to_messages_request(req(SIGNED_LOOP, reasoning_effort="low", tools=USER_TOOLS), 1024)
    assert out["thinking"] == thinking(1024)
    assert out["messages"][1] == assistant(SIGNED, USE)


def test_a_tool_loop_without_its_signed_thinking_continues_without_thinking() -> None:
    unsigned = [LOOP[0], {**LOOP[1], "reasoning_content": "I should look it up."}, LOOP[2]]
    out = to_messages_request(req(unsigned, reasoning_effort="low", tools=USER_TOOLS), 1024)
    assert "thinking" not in out
    assert out["messages"][1] == assistant(USE)  # unsigned reasoning cannot be sent back


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reasoning_effort": "ultra"}, "reasoning_effort"),
        ({"reasoning_effort": ["low"]}, "reasoning_effort"),
        (
            {"messages": [USER, {"role": "assistant", "content": "x", "thinking_blocks": [{}]}]},
            "messages[1].thinking_blocks[0]",
        ),
    ],
)
def test_invalid_reasoning(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        to_messages_request({**req([USER]), **fields}, 1024)
    assert info.value.param == param


def test_thinking_is_reasoning_content_and_signed_blocks() -> None:
    redacted = {"type": "redacted_thinking", "data": "abc"}
    out = to_completion(message([SIGNED, redacted, {"type": "text", "text": "Hi"}], "end_turn"))
    msg = out["choices"][0]["message"]
    assert msg["reasoning_content"] == "I should look it up."
    assert msg["thinking_blocks"] == [SIGNED, redacted]
    assert msg["content"] == "Hi"


def test_stream_thinking_deltas_and_the_signed_block() -> None:
    t = StreamTranslator("claude-x")
    seq = events(
        ("message_start", {"message": {"id": "m", "usage": {"input_tokens": 1}}}),
        (
            "content_block_start",
            {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        ),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "thinking_delta", "thinking": "I should "}},
        ),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "thinking_delta", "thinking": "look it up."}},
        ),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "signature_delta", "signature": "sig-1"}},
        ),
        ("content_block_stop", {"index": 0}),
        ("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"index": 1}),
        ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
        ("message_stop", {}),
    )
    chunks = [c for name, data in seq for c in t.feed(name, data)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "I should look it up."
    assert [b for d in deltas for b in d.get("thinking_blocks", ())] == [SIGNED]
    assert "".join(d.get("content") or "" for d in deltas) == "Hi"


PDF = "JVBERi0xLjQK"


def file_part(**file: Any) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "text", "text": "Sum up"}, {"type": "file", "file": file}],
    }


def test_pdf_files_are_document_blocks() -> None:
    out = to_messages_request(
        req([file_part(file_data=f"data:application/pdf;base64,{PDF}", filename="a.pdf")]), 1024
    )
    assert out["messages"][0]["content"][1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "title": "a.pdf",
    }


@pytest.mark.parametrize(
    ("file", "param"),
    [
        ({"file_id": "file-abc"}, "messages[0].content[1].file.file_id"),
        ({"file_data": "data:text/csv;base64,YSxi"}, "messages[0].content[1]"),
    ],
)
def test_files_anthropic_cannot_read_are_refused(file: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedFeature) as info:
        to_messages_request(req([file_part(**file)]), 1024)
    assert info.value.param == param
