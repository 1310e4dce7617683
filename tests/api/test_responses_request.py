"""Responses request → chat body: table-driven, pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ailb.api.responses.request import decode
from ailb.api.schemas import chat_request
from ailb.errors import InvalidRequest

M = "gpt-test"
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}
CALL = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x":1}'}
CHAT_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}


def chat(raw: dict[str, Any], earlier: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return decode({"model": M, **raw}).chat_body(earlier or [])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # input as a string, and instructions first
        ({"input": "hi"}, {"model": M, "messages": [{"role": "user", "content": "hi"}]}),
        (
            {"input": "hi", "instructions": "be brief"},
            {
                "model": M,
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                ],
            },
        ),
        # message items: parts, roles, output_text of earlier answers
        (
            {
                "input": [
                    {"role": "developer", "content": [{"type": "input_text", "text": "rule"}]},
                    {
                        "type": "message",
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "look"},
                            {"type": "input_image", "image_url": "data:image/png;base64,AA",
                             "detail": "low"},
                            {"type": "input_file", "file_data": "data:application/pdf;base64,AA",
                             "filename": "a.pdf"},
                        ],
                    },
                    {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                     "content": [{"type": "output_text", "text": "seen", "annotations": []}]},
                ]
            },
            {
                "model": M,
                "messages": [
                    {"role": "developer", "content": "rule"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {"type": "image_url",
                             "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
                            {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA",
                                                      "filename": "a.pdf"}},
                        ],
                    },
                    {"role": "assistant", "content": "seen"},
                ],
            },
        ),
        # function calls join the assistant turn before them; outputs become tool messages;
        # reasoning items are dropped
        (
            {
                "input": [
                    {"role": "user", "content": "go"},
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {"type": "message", "role": "assistant", "content": "calling"},
                    CALL,
                    {**CALL, "call_id": "c2"},
                    {"type": "function_call_output", "call_id": "c1", "output": "one"},
                    {"type": "function_call_output", "call_id": "c2",
                     "output": [{"type": "input_text", "text": "two"}]},
                ]
            },
            {
                "model": M,
                "messages": [
                    {"role": "user", "content": "go"},
                    {"role": "assistant", "content": "calling",
                     "tool_calls": [CHAT_CALL, {**CHAT_CALL, "id": "c2"}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "one"},
                    {"role": "tool", "tool_call_id": "c2", "content": "two"},
                ],
            },
        ),
        (
            {"input": [CALL]},
            {"model": M, "messages": [{"role": "assistant", "content": None,
                                       "tool_calls": [CHAT_CALL]}]},
        ),
        # tools, tool_choice, formats, limits, reasoning, sampling
        (
            {
                "input": "x",
                "tools": [{"type": "function", "name": "f", "description": "d",
                           "parameters": SCHEMA, "strict": True}],
                "tool_choice": {"type": "function", "name": "f"},
                "text": {"format": {"type": "json_schema", "name": "s", "schema": SCHEMA,
                                    "strict": True}, "verbosity": "low"},
                "max_output_tokens": 99,
                "reasoning": {"effort": "low", "summary": "auto"},
                "temperature": 0.5,
                "top_p": 0.9,
                "user": "u1",
                "parallel_tool_calls": False,
                "stream": True,
                "store": False,
                "metadata": {"k": "v"},
                "include": ["reasoning.encrypted_content"],
                "truncation": "disabled",
            },
            {
                "model": M,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {
                    "name": "f", "description": "d", "parameters": SCHEMA, "strict": True}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "s", "schema": SCHEMA, "strict": True}},
                "verbosity": "low",
                "max_completion_tokens": 99,
                "reasoning_effort": "low",
                "temperature": 0.5,
                "top_p": 0.9,
                "user": "u1",
                "parallel_tool_calls": False,
                "stream": True,
            },
        ),
        (
            {"input": "x", "text": {"format": {"type": "json_object"}}, "tool_choice": "required"},
            {"model": M, "messages": [{"role": "user", "content": "x"}],
             "response_format": {"type": "json_object"}, "tool_choice": "required"},
        ),
        (
            {"input": "x", "text": {"format": {"type": "text"}},
             "tool_choice": {"type": "allowed_tools", "mode": "required",
                             "tools": [{"type": "function", "name": "f"}]}},
            {"model": M, "messages": [{"role": "user", "content": "x"}],
             "tool_choice": {"type": "allowed_tools", "allowed_tools": {
                 "mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}}},
        ),
        # memory and RAG: extra fields, or metadata.session_id
        (
            {"input": "x", "session_id": "s1", "rag_collection": "docs", "rag_top_k": 2},
            {"model": M, "messages": [{"role": "user", "content": "x"}], "session_id": "s1",
             "rag_collection": "docs", "rag_top_k": 2},
        ),
        (
            {"input": "x", "metadata": {"session_id": "s2"}},
            {"model": M, "messages": [{"role": "user", "content": "x"}], "session_id": "s2"},
        ),
        # null means absent (SDKs send some fields as null)
        (
            {"input": "x", "temperature": None, "tools": None, "previous_response_id": None},
            {"model": M, "messages": [{"role": "user", "content": "x"}]},
        ),
    ],
)  # fmt: skip
def test_translation(raw, expected):
    assert chat(raw) == expected


def test_earlier_conversation_goes_after_the_instructions():
    earlier = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    body = chat({"input": "c", "instructions": "sys"}, earlier)
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        *earlier,
        {"role": "user", "content": "c"},
    ]


def test_flags():
    d = decode({"model": M, "input": "x", "previous_response_id": "resp_1", "store": False})
    assert (d.previous_response_id, d.store, d.stream) == ("resp_1", False, False)
    d = decode({"model": M, "input": "x", "stream": True})
    assert (d.store, d.stream) == (True, True)


@pytest.mark.parametrize(
    ("raw", "param", "code"),
    [
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_value"),
        ({"input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]},
         "tools[0].type", "unsupported_value"),
        ({"input": "x", "tools": [{"type": "computer_use_preview"}]}, "tools[0].type",
         "unsupported_value"),
        ({"input": "x", "tool_choice": {"type": "web_search_preview"}}, "tool_choice",
         "unsupported_value"),
        ({"input": "x", "background": True}, "background", "unsupported_parameter"),
        ({"input": "x", "conversation": "conv_1"}, "conversation", "unsupported_parameter"),
        ({"input": "x", "prompt": {"id": "p"}}, "prompt", "unsupported_parameter"),
        ({"input": "x", "frobnicate": 1}, "frobnicate", "unsupported_parameter"),
        ({}, "input", "missing_required_parameter"),
        ({"input": 5}, "input", "invalid_value"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type",
         "unsupported_value"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "invalid_value"),
        ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
         "input[0].content[0].type", "unsupported_value"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
         "input[0].content[0].image_url", "unsupported_value"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id",
         "missing_required_parameter"),
        ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output",
         "missing_required_parameter"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format",
         "missing_required_parameter"),
        ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type",
         "invalid_value"),
        ({"input": "x", "store": "yes"}, "store", "invalid_value"),
        ({"input": "x", "instructions": ["a"]}, "instructions", "invalid_value"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(raw, param, code):
    with pytest.raises(InvalidRequest) as e:
        decode({"model": M, **raw})
    assert e.value.param == param
    if code != "invalid_value":
        assert e.value.code == code
    assert e.value.status == 400


def test_missing_model():
    with pytest.raises(InvalidRequest) as e:
        decode({"input": "x"})
    assert e.value.param == "model"


def test_hosted_tool_error_names_it():
    with pytest.raises(InvalidRequest) as e:
        decode({"model": M, "input": "x", "tools": [{"type": "web_search"}]})
    assert "web_search" in e.value.message


# Any JSON a client may send: the translation answers it or refuses it with a 400, never crashes.
_words = st.sampled_from(
    ["", "x", "user", "assistant", "function", "message", "function_call", "input_text",
     "input_image", "json_schema", "web_search", "auto", "required"]
)  # fmt: skip
_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | _words
_keys = st.sampled_from(
    ["type", "role", "content", "text", "name", "call_id", "arguments", "output", "image_url",
     "file_data", "format", "schema", "tools", "mode", "effort", "session_id", "strict"]
)  # fmt: skip
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)
_fields = st.sampled_from(
    ["input", "instructions", "tools", "tool_choice", "text", "reasoning", "metadata", "store",
     "stream", "max_output_tokens", "temperature", "previous_response_id", "top_logprobs"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_fields, _json, max_size=6))
def test_any_body_is_translated_or_refused(body):
    try:
        chat_request(decode({"model": M, "input": "x", **body}).chat_body([]))
    except InvalidRequest as e:
        assert e.status == 400 and e.message
