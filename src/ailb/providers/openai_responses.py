"""Native Responses pass-through for OpenAI deployments with `responses: native`.

Failover and accounting speak chat, so a pass-through travels inside them: the Responses face
puts the client's Responses body in the chat body under NATIVE (only when every deployment of
the model is native, so no other provider sees it); the OpenAI provider then posts it to the
upstream's /responses and hands back chat-shaped values carrying the upstream's own answer under
NATIVE: the whole Response, or each SSE event as the bytes it came in. Usage is given in chat
terms alongside, for the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from ailb.providers.base import ChunkBatch, UpstreamError, error_message_from
from ailb.upstream.transport import SSEDecoder, Upstream, decode_json, encode

NATIVE = "ailb_responses"
TERMINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """A Response's usage in chat terms (what accounting reads)."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def upstream_body(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """The client's Responses body with the deployment's model name (failover sets it in the
    chat body it carries)."""
    native: dict[str, Any] = body[NATIVE]
    return {**native, "model": body["model"], "stream": stream}


def as_completion(response: Any) -> dict[str, Any]:
    if not isinstance(response, dict) or response.get("object") != "response":
        raise UpstreamError("protocol", "upstream answer is not a Response object")
    return {
        "object": "chat.completion",
        "model": response.get("model"),
        "choices": [],
        "usage": chat_usage(response.get("usage")),
        NATIVE: response,
    }


def event_chunk(
    event: str | None, data: str, secrets: Sequence[str]
) -> tuple[dict[str, Any], bool]:
    """(a chunk carrying one upstream event as it came, whether it ends the response)."""
    obj = decode_json(data.encode(), "stream event")
    if not isinstance(obj, dict):
        raise UpstreamError("protocol", "stream event is not a JSON object")
    kind = obj.get("type")
    if kind == "error" or ("error" in obj and kind is None):
        msg, code, _ = error_message_from(obj, secrets)
        raise UpstreamError(
            "status", f"upstream error mid-stream: {msg or 'unknown'}", status=502, code=code
        )
    head = b"event: " + (event or str(kind)).encode() + b"\n" if (event or kind) else b""
    chunk: dict[str, Any] = {
        "object": "chat.completion.chunk",
        "choices": [],
        NATIVE: head + b"data: " + data.encode() + b"\n\n",
        "type": kind,
        "sequence_number": obj.get("sequence_number"),
    }
    response = obj.get("response")
    if isinstance(response, dict):
        chunk["response_id"] = response.get("id")
        if kind in TERMINAL:
            chunk["usage"] = chat_usage(response.get("usage"))
    return chunk, kind in TERMINAL


async def complete(upstream: Upstream, head: bytes, body: dict[str, Any]) -> dict[str, Any]:
    raw = await upstream.fetch(head, encode(upstream_body(body, False)))
    return as_completion(decode_json(raw, "response"))


async def stream(
    upstream: Upstream, head: bytes, body: dict[str, Any]
) -> AsyncGenerator[ChunkBatch, None]:
    resp = await upstream.send(head, encode(upstream_body(body, True)))
    try:
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            raise UpstreamError("protocol", "upstream did not stream the response")
        decoder = SSEDecoder()
        async for data in resp.iter_chunks():
            batch: ChunkBatch = []
            for event, payload in decoder.feed(data):
                if payload == "[DONE]":
                    continue
                chunk, last = event_chunk(event, payload, upstream.secrets)
                batch.append(chunk)
                if last:
                    yield batch
                    return
            if batch:
                yield batch
    finally:
        resp.release()
    raise UpstreamError("protocol", "stream ended before the response did")
