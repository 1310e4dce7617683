"""Chat answers → Responses objects and events: table-driven, checked against the openai SDK's
own types and its stream state machine (the contract a client holds the gateway to)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from ailb.api.responses.events import ResponsesStream
from ailb.api.responses.reply import (
    RESPONSE_DEFAULTS,
    as_chat_messages,
    completion_fields,
    from_completion,
    usage_of,
    whole,
    whole_json,
)

ECHO = {"model": "m"}
USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "total_tokens": 15,
    "prompt_tokens_details": {"cached_tokens": 3},
    "completion_tokens_details": {"reasoning_tokens": 2},
}


def completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m-upstream",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
    }


def strict(response: dict[str, Any]) -> Response:
    """Validated, not just constructed: a missing or mistyped field fails here."""
    return TypeAdapter(Response).validate_python(response)


@pytest.mark.parametrize(
    ("message", "finish", "kinds", "status", "text"),
    [
        ({"role": "assistant", "content": "hi"}, "stop", ["message"], "completed", "hi"),
        ({"role": "assistant", "content": "cut"}, "length", ["message"], "incomplete", "cut"),
        (
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "[]"}},
            ]},
            "tool_calls",
            ["function_call", "function_call"],
            "completed",
            "",
        ),
        (
            {"role": "assistant", "content": "ok", "reasoning_content": "thinking"},
            "stop",
            ["reasoning", "message"],
            "completed",
            "ok",
        ),
        ({"role": "assistant", "content": None, "refusal": "no"}, "stop", ["message"],
         "completed", ""),
    ],
)  # fmt: skip
def test_completion_as_response(message, finish, kinds, status, text):
    doc = from_completion(completion(message, finish), "resp_1", 100.0, ECHO, store=True)
    resp = strict(doc)
    assert [item.type for item in resp.output] == kinds
    assert resp.status == status
    assert resp.output_text == text
    assert resp.model == "m-upstream"
    if status == "incomplete":
        assert resp.incomplete_details is not None
        assert resp.incomplete_details.reason == "max_output_tokens"
    calls = [i for i in resp.output if i.type == "function_call"]
    assert [c.call_id for c in calls] == [c["id"] for c in message.get("tool_calls") or []]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"instructions": "Be brief.", "previous_response_id": "resp_0", "store": False},
    ],
)
def test_whole_json_is_the_whole_response(kw):
    """The answer's JSON is made from the fields' own (encoded once, for the stored document
    too): the same object as whole(), every field present once."""
    fields = completion_fields(completion({"role": "assistant", "content": "hi"}, "length"),
                               "resp_1", 100.0, ECHO, **kw)  # fmt: skip
    body = whole_json(fields, msgspec.json.encode(fields))
    assert json.loads(body) == whole(fields)
    assert body.count(b'"object":') == 1 and body.count(b'"store":') == 1
    strict(json.loads(body))
    every = {**RESPONSE_DEFAULTS, **fields}  # nothing left to add
    assert whole_json(every, msgspec.json.encode(every)) == msgspec.json.encode(every)


def test_usage():
    assert usage_of(USAGE) == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    assert usage_of(None) is None


def test_output_as_chat_messages():
    doc = from_completion(
        completion({"role": "assistant", "content": "a", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
        "resp_1", 1.0, ECHO,
    )  # fmt: skip
    assert as_chat_messages(doc["output"]) == [
        {
            "role": "assistant",
            "content": "a",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        }
    ]
    assert as_chat_messages([]) == []


# --- streams --------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **kw: Any) -> Any:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": choices, **kw}


def tool_delta(index: int, args: str, call_id: str | None = None, name: str | None = None) -> Any:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        call["id"] = call_id
        call["type"] = "function"
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def events_of(frames: bytes) -> list[dict[str, Any]]:
    out = []
    for block in frames.decode().split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        out.append(data)
    return out


def run(chunks: list[Any], broken: bool = False) -> tuple[list[dict[str, Any]], ResponsesStream]:
    enc = ResponsesStream("resp_1", 100.0, ECHO, store=True)
    frames = b"".join(enc.encode(c) or b"" for c in chunks)
    frames += enc.error("cut", "upstream_stream_error") if broken else enc.done()
    return events_of(frames), enc


def sdk_replay(events: list[dict[str, Any]]) -> list[Any]:
    """The events through the SDK's own stream state, which raises on any sequence error."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    seen = []
    for data in events:
        event = construct_type(type_=ResponseStreamEvent, value=data)
        seen += state.handle_event(event)  # type: ignore[arg-type]
    return seen


TEXT = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
        chunk({"content": "lo"}), chunk({}, "stop"), chunk(None, usage=USAGE)]  # fmt: skip
CALLS = [
    chunk({"role": "assistant", "content": "Let me see."}),
    chunk(tool_delta(0, "", "c1", "f")),
    chunk(tool_delta(0, '{"a":')),
    chunk(tool_delta(0, "1}")),
    chunk(tool_delta(1, "{}", "c2", "g")),
    chunk({}, "tool_calls"),
    chunk(None, usage=USAGE),
]
REFUSE = [chunk({"role": "assistant", "refusal": ""}), chunk({"refusal": "I can"}),
          chunk({"refusal": "not."}), chunk({}, "stop")]  # fmt: skip
THINK = [chunk({"reasoning_content": "hmm"}), chunk({"content": "yes"}), chunk({}, "stop")]


@pytest.mark.parametrize(
    ("chunks", "sequence"),
    [
        (
            TEXT,
            ["response.created", "response.in_progress", "response.output_item.added",
             "response.content_part.added", "response.output_text.delta",
             "response.output_text.delta", "response.output_text.done",
             "response.content_part.done", "response.output_item.done", "response.completed"],
        ),
        (
            CALLS,
            ["response.created", "response.in_progress", "response.output_item.added",
             "response.content_part.added", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done",
             "response.output_item.done", "response.output_item.added",
             "response.function_call_arguments.delta", "response.function_call_arguments.delta",
             "response.output_item.added", "response.function_call_arguments.delta",
             "response.function_call_arguments.done", "response.output_item.done",
             "response.function_call_arguments.done", "response.output_item.done",
             "response.completed"],
        ),
        (
            THINK,
            ["response.created", "response.in_progress", "response.output_item.added",
             "response.reasoning_text.delta", "response.reasoning_text.done",
             "response.output_item.done", "response.output_item.added",
             "response.content_part.added", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done",
             "response.output_item.done", "response.completed"],
        ),
        ([], ["response.created", "response.in_progress", "response.completed"]),
        (
            REFUSE,
            ["response.created", "response.in_progress", "response.output_item.added",
             "response.content_part.added", "response.refusal.delta", "response.refusal.delta",
             "response.refusal.done", "response.content_part.done",
             "response.output_item.done", "response.completed"],
        ),
        (
            [chunk({"content": "cut"}), chunk({}, "length")],
            ["response.created", "response.in_progress", "response.output_item.added",
             "response.content_part.added", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done",
             "response.output_item.done", "response.incomplete"],
        ),
    ],
)  # fmt: skip
def test_stream_sequences(chunks, sequence):
    events, enc = run(chunks)
    assert [e["type"] for e in events] == sequence
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    sdk_replay(events)
    final = strict(events[-1]["response"])
    assert enc.response == events[-1]["response"]
    # What the stream delivered is what the final response says.
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert final.output_text == deltas
    if chunks is REFUSE:
        assert final.output[0].content[0].type == "refusal"
        assert final.output[0].content[0].refusal == "I cannot."
    if chunks is CALLS:
        calls = [i for i in final.output if i.type == "function_call"]
        assert [(c.call_id, c.name, c.arguments) for c in calls] == [
            ("c1", "f", '{"a":1}'),
            ("c2", "g", "{}"),
        ]
        assert final.usage is not None and final.usage.total_tokens == 15


def test_broken_stream_fails_and_never_completes():
    events, enc = run([chunk({"content": "partial"})], broken=True)
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    failed = strict(events[-1]["response"])
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.code == "server_error"
    assert failed.output[0].type == "message" and failed.output[0].status == "incomplete"
    assert enc.response is None  # nothing to store
    seen = sdk_replay(events)
    assert seen[-1].type == "response.failed"


def test_broken_before_any_chunk_still_starts_the_response():
    events, _ = run([], broken=True)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    sdk_replay(events)


LOGPROBS = [
    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
     "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]},
]  # fmt: skip


def test_token_logprobs_carry_over():
    result = completion({"role": "assistant", "content": "Hi"})
    result["choices"][0]["logprobs"] = {"content": LOGPROBS}
    resp = strict(from_completion(result, "resp_1", 1.0, ECHO))
    part = resp.output[0].content[0]
    assert part.logprobs is not None and part.logprobs[0].token == "Hi"

    stream = [
        {**chunk({"content": "Hi"}), "choices": [
            {"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": LOGPROBS}}]},
        chunk({}, "stop"),
    ]  # fmt: skip
    events, _ = run(stream)
    sdk_replay(events)
    delta = next(e for e in events if e["type"] == "response.output_text.delta")
    assert delta["logprobs"] == LOGPROBS
    final = strict(events[-1]["response"])
    assert final.output[0].content[0].logprobs[0].logprob == -0.1
