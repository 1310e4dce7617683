"""Anthropic Messages API answers (a `message` object, or its SSE events) as OpenAI chat
completions, read as the request's `Reading` says.

Pure: `to_completion` for a whole message, `StreamTranslator` for the event sequence.

- thinking is `reasoning_content` (where DeepSeek- and vLLM-style readers such as litellm and
  langchain look), in the message and in stream deltas; the signed blocks themselves come back
  as `thinking_blocks` (litellm's name), which a client sends back on the assistant message to
  continue a tool call with thinking on;
- the json_schema tool's call is the answer text (`finish_reason: stop`), streamed as content;
- with the legacy `functions` API the (single) call is `function_call`, finish `function_call`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ailb.providers.anthropic_request import Reading
from ailb.providers.base import UpstreamError, error_message_from
from ailb.upstream.transport import decode_json

PLAIN = Reading()

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic's error types -> the HTTP status they travel with (used for mid-stream errors).
ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def to_usage(u: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage as OpenAI's: cache reads and writes are part of the prompt. Writes are
    told apart (`cache_write_tokens`, the name OpenAI's Responses usage gives them): Anthropic
    bills them above plain input."""
    cache_read = int(u.get("cache_read_input_tokens") or 0)
    cache_write = int(u.get("cache_creation_input_tokens") or 0)
    prompt = int(u.get("input_tokens") or 0) + cache_write + cache_read
    completion = int(u.get("output_tokens") or 0)
    details = {"cached_tokens": cache_read}
    if cache_write:
        details["cache_write_tokens"] = cache_write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }


def _finish(reason: Any, calls: int, reading: Reading) -> str:
    finish = FINISH_REASONS.get(reason or "end_turn", "stop")
    if finish == "tool_calls":
        if not calls:
            return "stop"  # the json_schema tool, answered as text
        return "function_call" if reading.legacy else "tool_calls"
    return finish


def _compact(value: Any) -> str:
    return json.dumps(value if value is not None else {}, separators=(",", ":"), ensure_ascii=False)


def to_completion(msg: Any, reading: Reading = PLAIN) -> dict[str, Any]:
    """An Anthropic `message` object as an OpenAI `chat.completion`."""
    if not isinstance(msg, dict) or msg.get("type") != "message":
        raise UpstreamError("protocol", "upstream answer is not a Messages API message")
    text: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in msg.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            thinking_blocks.append(_thinking_block(block.get("thinking"), block.get("signature")))
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking", "data": block.get("data")})
        elif (
            kind == "tool_use" and reading.schema_tool and block.get("name") == reading.schema_tool
        ):
            text.append(_compact(block.get("input")))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": _compact(block.get("input")),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    if calls and reading.legacy:
        message["function_call"] = calls[0]["function"]  # the legacy API makes one call
    elif calls:
        message["tool_calls"] = calls
    return {
        "id": msg.get("id") or "msg",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": msg.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish(msg.get("stop_reason"), len(calls), reading),
            }
        ],
        "usage": to_usage(msg.get("usage") or {}),
    }


def _thinking_block(thinking: Any, signature: Any) -> dict[str, Any]:
    return {"type": "thinking", "thinking": thinking or "", "signature": signature or ""}


def stream_error(payload: Any, secrets: Sequence[str] = ()) -> UpstreamError:
    """An `error` event in a stream as the UpstreamError its HTTP status would have made
    (its text scrubbed of `secrets`, the upstream's credentials)."""
    err = payload.get("error") if isinstance(payload, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    msg, code, _ = error_message_from(payload, secrets)
    status = ERROR_STATUSES.get(kind or "", 502)
    return UpstreamError(
        "status",
        f"upstream error mid-stream: {msg or kind or 'unknown'}",
        status=status,
        client_message=msg,
        code=code,
    )


class StreamTranslator:
    """Anthropic SSE events in, OpenAI chunks out. `done` turns true at `message_stop`."""

    def __init__(self, model: str, reading: Reading = PLAIN, secrets: Sequence[str] = ()) -> None:
        self.reading = reading
        self.secrets = secrets  # scrubbed from an error event
        self.base: dict[str, Any] = {
            "id": "msg",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self.usage: dict[str, Any] = {}
        self.done = False
        self._tool_index: dict[int, int] = {}  # content block index -> OpenAI tool call index
        self._as_text: set[int] = set()  # tool_use blocks carrying the json_schema answer
        self._ignored: set[int] = set()  # legacy API: calls after the first
        self._thinking: dict[int, list[str]] = {}  # thinking block index -> text, signature
        self._finish: str | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **self.base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        obj = decode_json(data.encode(), "stream event")
        if not isinstance(obj, dict):
            raise UpstreamError("protocol", "stream event is not a JSON object")
        kind = obj.get("type") or event
        if kind == "message_start":
            msg = obj.get("message") or {}
            self.base["id"] = msg.get("id") or "msg"
            self.base["model"] = msg.get("model") or self.base["model"]
            self.usage = dict(msg.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(int(obj.get("index", 0)), obj.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(int(obj.get("index", 0)), obj.get("delta") or {})
        if kind == "content_block_stop":
            return self._block_stop(int(obj.get("index", 0)))
        if kind == "message_delta":
            for key, value in (obj.get("usage") or {}).items():
                if value is not None:
                    self.usage[key] = value
            reason = (obj.get("delta") or {}).get("stop_reason")
            self._finish = _finish(reason, len(self._tool_index), self.reading)
            return [self._chunk({}, self._finish)]
        if kind == "message_stop":
            self.done = True
            out = [] if self._finish else [self._chunk({}, "stop")]
            return [*out, {**self.base, "choices": [], "usage": to_usage(self.usage)}]
        if kind == "error":
            raise stream_error(obj, self.secrets)
        return []  # ping and event types added later

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text":
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if kind == "thinking":
            self._thinking[index] = [block.get("thinking") or "", block.get("signature") or ""]
            text = block.get("thinking")
            return [self._chunk({"reasoning_content": text})] if text else []
        if kind == "redacted_thinking":
            redacted = {"type": "redacted_thinking", "data": block.get("data")}
            return [self._chunk({"thinking_blocks": [redacted]})]
        if kind != "tool_use":
            return []
        if self.reading.schema_tool and block.get("name") == self.reading.schema_tool:
            self._as_text.add(index)
            return []
        if self.reading.legacy:
            if self._tool_index:
                self._ignored.add(index)
                return []
            self._tool_index[index] = 0
            fc = {"name": block.get("name"), "arguments": ""}
            return [self._chunk({"function_call": fc})]
        n = self._tool_index.setdefault(index, len(self._tool_index))
        call = {
            "index": n,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if kind == "thinking_delta":
            piece = delta.get("thinking") or ""
            self._thinking.setdefault(index, ["", ""])[0] += piece
            return [self._chunk({"reasoning_content": piece})] if piece else []
        if kind == "signature_delta":
            self._thinking.setdefault(index, ["", ""])[1] += delta.get("signature") or ""
            return []
        if kind == "input_json_delta":
            piece = delta.get("partial_json", "")
            if index in self._as_text:
                return [self._chunk({"content": piece})] if piece else []
            if index in self._ignored:
                return []
            n = self._tool_index.get(index)
            if n is None:
                raise UpstreamError("protocol", "input_json_delta for an unknown content block")
            if self.reading.legacy:
                return [self._chunk({"function_call": {"arguments": piece}})]
            return [self._chunk({"tool_calls": [{"index": n, "function": {"arguments": piece}}]})]
        return []  # citations and delta types added later

    def _block_stop(self, index: int) -> list[dict[str, Any]]:
        """A finished thinking block goes out whole with its signature, to be sent back."""
        thinking = self._thinking.pop(index, None)
        if thinking is None:
            return []
        return [self._chunk({"thinking_blocks": [_thinking_block(*thinking)]})]
