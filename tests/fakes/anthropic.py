"""A fake Anthropic server: POST /v1/messages (JSON or named-event SSE), GET /v1/models."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, Reply, split_text, sse_frame

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    """An Anthropic error body, e.g. anthropic_error("overloaded_error", "Overloaded")."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def stop_of(reply: Reply, body: dict[str, Any]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for a reply; stop_sequence is only reported when the
    request actually asked for stop sequences, as the real API does."""
    stops = body.get("stop_sequences") or []
    if reply.finish_reason == "stop_sequence" and stops:
        return "stop_sequence", stops[0]
    return _STOP_REASONS.get(reply.finish_reason, "end_turn"), None


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def message(model: str, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    content += [
        {"type": "tool_use", "id": t.id, "name": t.name, "input": json.loads(t.arguments)}
        for t in reply.tool_calls
    ]
    stop_reason, stop_sequence = stop_of(reply, body)
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(*reply.usage),
    }


def _event(data: dict[str, Any]) -> bytes:
    return sse_frame(data, event=data["type"])


def events(model: str, reply: Reply, body: dict[str, Any]) -> list[bytes]:
    """The full SSE event sequence; a stream_error replaces message_delta + message_stop."""
    p, c = reply.usage
    start: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(p, 1),
    }
    out = [_event({"type": "message_start", "message": start}), _event({"type": "ping"})]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if reply.text:
        deltas = [{"type": "text_delta", "text": s} for s in split_text(reply.text, reply.pieces)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for t in reply.tool_calls:
        block = {"type": "tool_use", "id": t.id, "name": t.name, "input": {}}
        parts = split_text(t.arguments, 2)
        blocks.append((block, [{"type": "input_json_delta", "partial_json": s} for s in parts]))
    for i, (block, deltas) in enumerate(blocks):
        out.append(_event({"type": "content_block_start", "index": i, "content_block": block}))
        out += [_event({"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        out.append(_event({"type": "content_block_stop", "index": i}))
    if reply.stream_error is not None:
        out.append(sse_frame(reply.stream_error, event="error"))
        return out
    stop_reason, stop_sequence = stop_of(reply, body)
    delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
    out.append(_event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": c}}))
    out.append(_event({"type": "message_stop"}))
    return out


IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def invalid(body: dict[str, Any]) -> str | None:
    """The Messages API's 400 for a request breaking its rules on messages, if it does: the
    first message is the user's, text blocks are not empty, images are of four media types."""
    messages = body.get("messages") or []
    if messages and messages[0].get("role") != "user":
        return 'messages: first message must use the "user" role'
    for i, m in enumerate(messages):
        blocks = m.get("content")
        if blocks == "" or blocks == []:
            return f"messages.{i}: all messages must have non-empty content"
        for j, b in enumerate(blocks if isinstance(blocks, list) else ()):
            if b.get("type") == "text" and not b.get("text"):
                return f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
            source = b.get("source") or {}
            base64 = b.get("type") == "image" and source.get("type") == "base64"
            if base64 and source.get("media_type") not in IMAGE_TYPES:
                allowed = ", ".join(repr(t) for t in IMAGE_TYPES)
                return (
                    f"messages.{i}.content.{j}.image.source.base64.media_type: "
                    f"Input should be {allowed}"
                )
    return None


async def messages(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    body = body if isinstance(body, dict) else {}
    model = body.get("model", "?")
    problem = invalid(body)
    if problem is not None:
        error = anthropic_error("invalid_request_error", problem)
        return web.json_response(error, status=400, headers={"request-id": "req_fake"})
    if not body.get("stream"):
        return web.json_response(message(model, reply, body), headers=reply.headers)
    frames = events(model, reply, body)
    if reply.garbage:
        frames.insert(1, b"event: content_block_delta\ndata: {not json\n\n")
    return await server.stream(request, reply, frames)


async def models(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in server.models
    ]
    return web.json_response(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


def fake_anthropic() -> FakeServer:
    return FakeServer({("POST", "/v1/messages"): messages, ("GET", "/v1/models"): models})
