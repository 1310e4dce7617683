"""Answers in the Messages API's wire format: a chat completion as a `message` object, chat
chunks as the Messages SSE event sequence (`MessagesStream`), and an Anthropic upstream's own
events relayed as they are (`PassThroughStream`).

The event sequence is the one the anthropic SDK's stream helpers assemble: `message_start`
(the message with empty content), per content block `content_block_start`, its deltas
(`thinking_delta`, `text_delta`, `input_json_delta`) and `content_block_stop`, then
`message_delta` (stop reason, usage) and `message_stop`. `message_delta` and `message_stop`
leave only when the upstream stream completed; a broken one ends with an `error` event.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ailb.api.chat import SSE_HEADERS
from ailb.providers.anthropic import MESSAGE_STOP

_encode = msgspec.json.Encoder().encode

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
PASSED = "anthropic_message"  # the key of an Anthropic upstream's own message in a result


def stop_reason(finish: Any, calls: bool = False) -> str:
    """A chat finish_reason as a stop_reason (an answer with tool calls is `tool_use`, as some
    servers say `stop` there). Chat says `stop` for a stop sequence too, so `stop_sequence` is
    never reported on a translated answer."""
    reason = STOP_REASONS.get(finish or "stop", "end_turn")
    return "tool_use" if calls and reason == "end_turn" else reason


def usage_of(u: Any) -> dict[str, int]:
    """Chat usage as Anthropic's: cached prompt tokens are cache reads, outside input_tokens."""
    u = u if isinstance(u, dict) else {}
    prompt = int(u.get("prompt_tokens") or 0)
    details = u.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    return {
        "input_tokens": max(prompt - cached - written, 0),
        "output_tokens": int(u.get("completion_tokens") or 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the tool_use block's `input` object. Arguments that are not
    a JSON object (a model's malformed call) are kept whole under `arguments`, not lost."""
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        value = None
    return value if isinstance(value, dict) else {"arguments": arguments}


def to_message(completion: dict[str, Any], model: str, message_id: str) -> dict[str, Any]:
    """A chat completion (its first choice) as a Messages API `message`."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    m = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = m.get("reasoning_content") or m.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = m.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in m.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{len(content)}",
                "name": fn.get("name") or "",
                "input": tool_input(fn.get("arguments")),
            }
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), bool(m.get("tool_calls"))),
        "stop_sequence": None,
        "usage": usage_of(completion.get("usage")),
    }


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encode({"type": kind, **data}) + b"\n\n"


def error_event(message: str, kind: str = "api_error") -> bytes:
    return event("error", {"error": {"type": kind, "message": message}})


def error_type(code: str) -> str:
    return "overloaded_error" if code == "gateway_shutting_down" else "api_error"


class MessagesStream:
    """Chat chunks in, Messages API events out. One content block is open at a time, as on
    Anthropic: thinking, text, or a tool call (each chat tool-call index its own block)."""

    __slots__ = ("_block", "_kind", "_next", "_started", "_stop", "_tools", "_usage", "start")
    headers = SSE_HEADERS

    def __init__(self, model: str, message_id: str, input_tokens: int = 0) -> None:
        """`input_tokens`: the gateway's estimate for `message_start` (the upstream's count
        comes at the end, in `message_delta`, which the SDK's helpers take over it)."""
        self.start: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage_of(None), "input_tokens": input_tokens},
        }
        self._started = False
        self._block: int | None = None  # the open block's index
        self._kind: Any = None  # what it is: "thinking", "text", or a chat tool-call index
        self._next = 0
        self._tools: dict[int, int] = {}  # chat tool-call index -> block index
        self._stop: str | None = None
        self._usage: Any = None

    def _open(self, kind: Any, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = self._block = self._next
        self._next += 1
        self._kind = kind
        out.append(event("content_block_start", {"index": index, "content_block": block}))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            out.append(event("content_block_stop", {"index": self._block}))
            self._block = self._kind = None

    def encode(self, chunk: dict[str, Any]) -> bytes | None:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(event("message_start", {"message": self.start}))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta") or {}
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                self._text("thinking", thought, out)
            text = delta.get("content")
            if isinstance(text, str) and text:
                self._text("text", text, out)
            for call in delta.get("tool_calls") or ():
                self._tool(call, out)
            if choice.get("finish_reason"):
                self._stop = choice["finish_reason"]
        return b"".join(out) if out else None

    def _text(self, kind: str, piece: str, out: list[bytes]) -> None:
        if self._kind != kind:
            empty = {"type": kind, kind: ""}
            if kind == "thinking":
                empty["signature"] = ""
            self._open(kind, empty, out)
        name = "thinking_delta" if kind == "thinking" else "text_delta"
        delta = {"type": name, kind: piece}
        out.append(event("content_block_delta", {"index": self._block, "delta": delta}))

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        n = call.get("index", 0)
        fn = call.get("function") or {}
        index = self._tools.get(n)
        if index is None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{self._next}",
                "name": fn.get("name") or "",
                "input": {},
            }
            index = self._tools[n] = self._open(("tool", n), block, out)
        piece = fn.get("arguments")
        if piece:
            delta = {"type": "input_json_delta", "partial_json": piece}
            out.append(event("content_block_delta", {"index": index, "delta": delta}))

    def done(self) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(event("message_start", {"message": self.start}))
        self._close(out)
        # Without the upstream's usage, only output_tokens (required): the estimate stands.
        usage = usage_of(self._usage) if self._usage else {"output_tokens": 0}
        stop = stop_reason(self._stop, bool(self._tools))
        out.append(
            event(
                "message_delta",
                {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
            )
        )
        out.append(MESSAGE_STOP)
        return b"".join(out)

    def error(self, message: str, code: str) -> bytes:
        return error_event(message, error_type(code))


class PassThroughStream:
    """An Anthropic upstream's events, relayed as they came; `message_stop` (held back by the
    provider) only when the stream completed."""

    __slots__ = ()
    headers = SSE_HEADERS

    def encode(self, chunk: dict[str, Any]) -> bytes | None:
        raw = chunk.get("raw")
        return raw if isinstance(raw, bytes) else None

    def done(self) -> bytes:
        return MESSAGE_STOP

    def error(self, message: str, code: str) -> bytes:
        return error_event(message, error_type(code))
