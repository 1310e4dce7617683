"""A fake Anthropic server: POST /v1/messages (JSON or named-event SSE), GET /v1/models.

A `Reply` is scripted in OpenAI's terms; the fake answers what the Messages API does with the
request it gets. It refuses (400 invalid_request_error, the API's wording) what the real API
refuses, so that a translation that sends it fails its tests (`check_request`); tool calls come
only for tools the request offers and its tool_choice allows; the scripted reasoning comes as a
signed `thinking` block (streamed as thinking_delta + signature_delta) only when the request
enables thinking, and a thinking block sent back must carry the signature the fake gave it.
"""

from __future__ import annotations

import hashlib
import json
import re
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


# --- what the Messages API refuses ---------------------------------------------------------------

TOP_LEVEL = frozenset(
    {
        "model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k",
        "stop_sequences", "stream", "metadata", "tools", "tool_choice", "thinking",
        "service_tier", "container", "mcp_servers",
    }
)  # fmt: skip
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}\Z")


def signature(thought: str) -> str:
    """The fake's signature of a thinking text (the real one is opaque too)."""
    return "sig-" + hashlib.sha256(thought.encode()).hexdigest()[:16]


def _thinking(reply: Reply, body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return bool(reply.reasoning) and isinstance(thinking, dict) and thinking["type"] == "enabled"


def _calls(reply: Reply, body: dict[str, Any]) -> list[Any]:
    """The scripted calls the request makes possible: of offered tools, unless choice none."""
    offered = {t.get("name") for t in body.get("tools") or ()}
    if (body.get("tool_choice") or {}).get("type") == "none":
        return []
    return [t for t in reply.tool_calls if t.name in offered]


def check_request(body: dict[str, Any]) -> str | None:
    """The real API's 400 message for this body, or None when it would take it."""
    for name in body:
        if name not in TOP_LEVEL:
            return f"{name}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Field required"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    problem = _check_tools(body) or _check_thinking(body, max_tokens)
    if problem:
        return problem
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    return _check_messages(messages, isinstance(body.get("thinking"), dict))


def _check_tools(body: dict[str, Any]) -> str | None:
    names = []
    for i, tool in enumerate(body.get("tools") or ()):
        if not TOOL_NAME.match(str(tool.get("name"))):
            return f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{i}.custom.input_schema.type: Input should be 'object'"
        names.append(tool["name"])
    if len(set(names)) != len(names):
        return "tools: Tool names must be unique."
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice.get("type") not in ("auto", "any", "tool", "none"):
        return "tool_choice.type: Input tag does not match any of the expected tags"
    if choice["type"] == "tool" and choice.get("name") not in names:
        return f"Tool '{choice.get('name')}' not found in provided tools"
    return None


def _check_thinking(body: dict[str, Any], max_tokens: int) -> str | None:
    thinking = body.get("thinking")
    if thinking is None or thinking.get("type") == "disabled":
        return None
    budget = thinking.get("budget_tokens")
    if thinking.get("type") != "enabled" or not isinstance(budget, int):
        return "thinking.enabled.budget_tokens: Field required"
    if budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= max_tokens:
        return "`max_tokens` must be greater than `thinking.budget_tokens`."
    if body.get("temperature") not in (None, 1):
        return "`temperature` may only be set to 1 when thinking is enabled."
    if body.get("top_p") is not None and body["top_p"] < 0.95:
        return "`top_p` must be greater than or equal to 0.95 when thinking is enabled."
    if body.get("top_k") is not None:
        return "`top_k` must be unset when thinking is enabled."
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _check_messages(messages: list[Any], thinking: bool) -> str | None:
    if messages[0].get("role") != "user":
        return 'messages: first message must use the "user" role'
    pending: set[str] = set()  # tool_use ids the next user turn must answer
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i and messages[i - 1].get("role") == role:
            return 'messages: roles must alternate between "user" and "assistant"'
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{i}: all messages must have non-empty content"
        problem = _check_blocks(i, role, blocks, pending, i == len(messages) - 1)
        if problem:
            return problem
        if role == "assistant":
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
            final_turn = i == len(messages) - 2 and pending
            if thinking and final_turn and blocks[0]["type"] not in THINKING_BLOCKS:
                return (
                    f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                    "but found `tool_use`. When `thinking` is enabled, a final `assistant` "
                    "message must start with a thinking block."
                )
        else:
            pending = set()
    return None


THINKING_BLOCKS = ("thinking", "redacted_thinking")


def _check_blocks(
    i: int, role: str, blocks: list[Any], pending: set[str], last: bool
) -> str | None:
    answered = set()
    seen_other = False
    for j, b in enumerate(blocks):
        kind = b.get("type") if isinstance(b, dict) else None
        where = f"messages.{i}.content.{j}"
        if kind == "text":
            if not str(b.get("text") or "").strip():
                return f"{where}: text content blocks must contain non-whitespace text"
        elif kind == "image" and role == "user":
            src = b.get("source") or {}
            if src.get("type") == "base64" and src.get("media_type") not in IMAGE_TYPES:
                return f"{where}.source.base64.media_type: Input should be " + ", ".join(
                    repr(t) for t in IMAGE_TYPES
                )
        elif kind == "document" and role == "user":
            src = b.get("source") or {}
            if src.get("type") != "base64" or src.get("media_type") != "application/pdf":
                return f"{where}.source: Input tag does not match any of the expected tags"
        elif kind == "tool_result" and role == "user":
            if seen_other:
                return f"{where}: tool_result blocks must come first in the user message"
            if b.get("tool_use_id") not in pending:
                return (
                    f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{b.get('tool_use_id')}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
            answered.add(b["tool_use_id"])
            continue
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(b.get("id"), str) or not isinstance(b.get("input"), dict):
                return f"{where}.tool_use.id: Field required"
        elif kind == "thinking" and role == "assistant":
            if b.get("signature") != signature(str(b.get("thinking"))):
                return f"{where}: Invalid `signature` in `thinking` block"
        elif kind == "redacted_thinking" and role == "assistant":
            pass
        else:
            return f"{where}.type: Input tag {kind!r} found using 'type' does not match"
        seen_other = True
    if role == "user" and pending - answered:
        return (
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
            f"after: {', '.join(sorted(pending - answered))}"
        )
    final = blocks[-1]
    trailing = final.get("type") == "text" and final["text"] != final["text"].rstrip()
    if last and role == "assistant" and trailing:
        return "final assistant content cannot end with trailing whitespace"
    return None


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def message(model: str, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if _thinking(reply, body):
        thought = reply.reasoning
        content.append({"type": "thinking", "thinking": thought, "signature": signature(thought)})
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    content += [
        {"type": "tool_use", "id": t.id, "name": t.name, "input": json.loads(t.arguments)}
        for t in _calls(reply, body)
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
    if _thinking(reply, body):
        thought = reply.reasoning
        deltas = [{"type": "thinking_delta", "thinking": s} for s in split_text(thought, 2)]
        deltas.append({"type": "signature_delta", "signature": signature(thought)})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    if reply.text:
        deltas = [{"type": "text_delta", "text": s} for s in split_text(reply.text, reply.pieces)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for t in _calls(reply, body):
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
    problem = check_request(body)
    if problem is not None:
        return web.json_response(anthropic_error("invalid_request_error", problem), status=400)
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


def counted_tokens(body: dict[str, Any]) -> int:
    """The fake's token count of a count_tokens body: a character count of what it counts."""
    counted = {k: body.get(k) for k in ("system", "messages", "tools")}
    return len(json.dumps(counted, separators=(",", ":"))) // 4


async def count_tokens(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    """POST /v1/messages/count_tokens: the Messages API's checks, without `max_tokens`."""
    body = body if isinstance(body, dict) else {}
    problem = check_request({"max_tokens": 4096, **body})
    for extra in ("stream", "max_tokens"):
        if extra in body:
            problem = f"{extra}: Extra inputs are not permitted"
    if problem is not None:
        return web.json_response(anthropic_error("invalid_request_error", problem), status=400)
    return web.json_response({"input_tokens": counted_tokens(body)})


def fake_anthropic() -> FakeServer:
    return FakeServer(
        {
            ("POST", "/v1/messages"): messages,
            ("POST", "/v1/messages/count_tokens"): count_tokens,
            ("GET", "/v1/models"): models,
        }
    )
