"""The fake model's decisions (tests/fakes/model.py), table-driven on OpenAI-form requests and
on each provider's own request form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.model import decide, example, schema_in, to_neutral


def fn(name: str, arg: str = "city") -> dict[str, Any]:
    params = {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}
    return {"type": "function", "function": {"name": name, "parameters": params}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def called(name: str, args: dict[str, Any], cid: str = "c1") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": cid,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ],
    }


def result(text: str, cid: str = "c1") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": cid, "content": text}


CHAIN = "Use a, then b for Ada"
CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("echo", {"messages": [user("Say hi")]}, "Echo: Say hi"),
    (
        "one call",
        {"messages": [user("Use w for Paris")], "tools": [fn("w")]},
        [("w", {"city": "Paris"})],
    ),
    (
        "parallel",
        {"messages": [user("Use w and t for Rome")], "tools": [fn("t"), fn("w")]},
        [("w", {"city": "Rome"}), ("t", {"city": "Rome"})],
    ),
    ("unnamed tools are not called", {"messages": [user("Hi")], "tools": [fn("w")]}, "Echo: Hi"),
    (
        "chain step 2 takes the result",
        {
            "messages": [user(CHAIN), called("a", {"city": "Ada"}), result("Oslo")],
            "tools": [fn("a"), fn("b")],
        },
        [("b", {"city": "Oslo"})],
    ),
    (
        "answer after results",
        {
            "messages": [user("Use w for X"), called("w", {"city": "X"}), result("sun")],
            "tools": [fn("w")],
        },
        "Tool results: sun",
    ),
    (
        "forced function",
        {
            "messages": [user("Hi")],
            "tools": [fn("w"), fn("f")],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
        [("f", {"city": "Hi"})],
    ),
    (
        "required answers with the tool the task did not name",
        {
            "messages": [user("Use w for X"), called("w", {"city": "X"}), result("sun")],
            "tools": [fn("w"), fn("final_result")],
            "tool_choice": "required",
        },
        [("final_result", {"city": "X"})],
    ),
    (
        "an answer function named by the system prompt",
        {
            "messages": [
                {"role": "system", "content": "Answer by calling the function `done`."},
                user("Hi"),
            ],
            "tools": [fn("w"), fn("done")],
        },
        [("done", {"city": "Hi"})],
    ),
    (
        "none",
        {"messages": [user("Use w for X")], "tools": [fn("w")], "tool_choice": "none"},
        "Echo: Use w for X",
    ),
    (
        "json_schema",
        {
            "messages": [user("Hi")],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
                },
            },
        },
        '{"n": 1}',
    ),
    (
        "json_object",
        {"messages": [user("Hi")], "response_format": {"type": "json_object"}},
        '{"answer": "Echo: Hi"}',
    ),
    (
        "a schema in a JSON prompt",
        {"messages": [user('Reply in JSON per {"properties": {"ok": {"type": "boolean"}}}')]},
        '{"ok": true}',
    ),
    (
        "images counted",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What?"},
                        {"type": "image_url", "image_url": {"url": "x"}},
                    ],
                }
            ]
        },
        "I see 1 image(s).",
    ),
]


@pytest.mark.parametrize(
    ("request_", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(request_, expected):
    reply = decide(request_)
    if isinstance(expected, str):
        assert (reply.text, reply.tool_calls) == (expected, [])
    else:
        got = [(c.name, json.loads(c.arguments)) for c in reply.tool_calls]
        assert got == expected
        assert reply.finish_reason == "tool_calls"
        assert len({c.id for c in reply.tool_calls}) == len(got)  # ids unique


SCHEMAS = [
    ({"type": "string", "enum": ["b", "a"]}, "b"),
    ({"type": "integer", "minimum": 5, "maximum": 9}, 5),
    ({"type": ["null", "number"]}, 1.5),
    ({"anyOf": [{"type": "null"}, {"type": "boolean"}]}, True),
    ({"type": "array", "items": {"type": "string"}, "minItems": 2}, ["Paris", "Paris"]),
    ({"type": "string", "format": "date"}, "2025-01-01"),
    ({"type": "string", "maxLength": 3}, "Par"),
    (
        {"$defs": {"C": {"type": "object", "properties": {"x": {"const": 3}}}},
         "type": "object", "properties": {"c": {"$ref": "#/$defs/C"}}},
        {"c": {"x": 3}},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "value"), SCHEMAS)
def test_example(schema, value):
    assert example(schema, "Paris") == value


def test_schema_in_finds_the_first_schema():
    assert schema_in('x {"a": 1} then {"properties": {}} ') == {"properties": {}}
    assert schema_in("no json") is None


def test_anthropic_request_in_openai_terms():
    body = {
        "system": [{"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Use w for X"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "X"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"}]},
        ],
        "tools": [{"name": "w", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
    }  # fmt: skip
    req = to_neutral("anthropic", body)
    assert [m["role"] for m in req["messages"]] == ["system", "user", "assistant", "tool"]
    assert req["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"city": "X"}'
    assert req["tool_choice"] == "auto"
    assert decide(req).text == "Tool results: sun"


def test_ollama_request_in_openai_terms():
    body = {
        "messages": [{"role": "user", "content": "What?", "images": ["aGk="]}],
        "format": {"type": "object", "properties": {"k": {"type": "string"}}},
    }
    req = to_neutral("ollama", body)
    assert req["response_format"]["type"] == "json_schema"
    assert decide(req).text == '{"k": "What"}'
