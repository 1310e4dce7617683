"""Anthropic's Messages API behind the OpenAI chat-completions interface.

The translation is pure functions: `anthropic_request` (OpenAI request -> Messages API request,
and how to read the answer; `anthropic_messages` for the conversation itself) and
`anthropic_reply` (message or SSE events -> OpenAI completion or chunks). This module is the
connection. The README's table lists what happens to each OpenAI request field.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from ailb.config import DeploymentConfig, Secret
from ailb.errors import InvalidRequest
from ailb.providers.anthropic_reply import StreamTranslator, stream_error, to_completion, to_usage
from ailb.providers.anthropic_request import (
    JSON_OBJECT_INSTRUCTION,
    Reading,
    to_messages_request,
    translate,
)
from ailb.providers.base import ChunkBatch, UpstreamError
from ailb.upstream.transport import SSEDecoder, Upstream, decode_json, encode, model_ids

API_VERSION = "2023-06-01"
# The client's headers a Messages API request passed through takes along (the API version it
# was written for, the betas it uses); a deployment's own configured headers win.
FORWARDED = ("anthropic-version", "anthropic-beta")
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

__all__ = [
    "JSON_OBJECT_INSTRUCTION",
    "AnthropicProvider",
    "Reading",
    "StreamTranslator",
    "to_completion",
    "to_messages_request",
    "to_usage",
    "translate",
]


class AnthropicProvider:
    def __init__(self, config: DeploymentConfig, api_key: Secret | None) -> None:
        self.config = config
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        self.upstream = Upstream(config, headers)
        self._messages = self.upstream.head("POST", "/v1/messages")
        self._messages_stream = self.upstream.head(
            "POST", "/v1/messages", {"Accept": "text/event-stream"}
        )
        self._models = self.upstream.head("GET", "/v1/models?limit=1000")
        self._configured = {k.lower() for k in config.headers}

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        request, reading = translate({**body, "stream": False}, self.config.max_output_tokens)
        raw = await self.upstream.fetch(self._messages, encode(request))
        return to_completion(decode_json(raw, "message"), reading)

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        request, reading = translate({**body, "stream": True}, self.config.max_output_tokens)
        resp = await self.upstream.send(self._messages_stream, encode(request))
        translator = StreamTranslator(body.get("model", ""), reading, self.upstream.secrets)
        try:
            decoder = SSEDecoder()
            async for data in resp.iter_chunks():
                batch: ChunkBatch = []
                for event, text in decoder.feed(data):
                    batch.extend(translator.feed(event, text))
                    if translator.done:
                        yield batch
                        return
                if batch:
                    yield batch
        finally:
            resp.release()
        raise UpstreamError("protocol", "stream ended before message_stop")

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Anthropic has no embeddings API (the config refuses `embedding_models` here, so the
        router never sends one; this says why if anything else does)."""
        raise InvalidRequest(
            f"The model `{body.get('model')}` on deployment `{self.config.name}` cannot embed: "
            "Anthropic has no embeddings API.",
            param="model",
            code="unsupported_feature",
        )

    # --- the Messages API passed through (the /v1/messages face) ----------------------------

    def _head(self, path: str, headers: Mapping[str, str], stream: bool = False) -> bytes:
        extra = {k: v for k, v in headers.items() if k not in self._configured}
        if stream:
            extra["Accept"] = "text/event-stream"
        return self.upstream.head("POST", path, extra)

    async def messages(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        """The client's Messages API body as it is: the upstream's `message`, as it is."""
        raw = await self.upstream.fetch(self._head("/v1/messages", headers), encode(body))
        msg = decode_json(raw, "message")
        if not isinstance(msg, dict) or msg.get("type") != "message":
            raise UpstreamError("protocol", "upstream answer is not a Messages API message")
        return msg

    async def messages_stream(
        self, body: dict[str, Any], headers: Mapping[str, str]
    ) -> AsyncGenerator[ChunkBatch, None]:
        """The upstream's SSE events as they are, each in a chunk's `raw` (bytes), with what
        the gateway reads of them in chat terms: text deltas as `choices` (memory, the
        estimate), the usage so far as chat `usage` on `message_delta`. `message_stop` is
        held back: the stream ends after the event before it, and the face sends it (only
        a complete stream gets it). An `error` event raises."""
        resp = await self.upstream.send(self._head("/v1/messages", headers, True), encode(body))
        usage: dict[str, Any] = {}
        try:
            decoder = SSEDecoder()
            async for data in resp.iter_chunks():
                batch: ChunkBatch = []
                for event, text in decoder.feed(data):
                    obj = decode_json(text.encode(), "stream event")
                    kind = obj.get("type") if isinstance(obj, dict) else None
                    if kind is None:
                        raise UpstreamError("protocol", "stream event without a type")
                    if kind == "message_stop":
                        yield batch
                        return
                    if kind == "error":
                        raise stream_error(obj, self.upstream.secrets)
                    chunk: dict[str, Any] = {"raw": sse_frame(event or kind, text)}
                    if kind == "content_block_delta":
                        delta = obj.get("delta") or {}
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            chunk["choices"] = [{"index": 0, "delta": {"content": delta["text"]}}]
                    elif kind == "message_start":
                        usage = dict((obj.get("message") or {}).get("usage") or {})
                    elif kind == "message_delta":
                        for key, value in (obj.get("usage") or {}).items():
                            if value is not None:
                                usage[key] = value
                        chunk["usage"] = to_usage(usage)
                    batch.append(chunk)
                if batch:
                    yield batch
        finally:
            resp.release()
        raise UpstreamError("protocol", "stream ended before message_stop")

    async def count_tokens(
        self, body: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        """POST /v1/messages/count_tokens as it is."""
        head = self._head("/v1/messages/count_tokens", headers)
        counted = decode_json(await self.upstream.fetch(head, encode(body)), "token count")
        if not isinstance(counted, dict) or not isinstance(counted.get("input_tokens"), int):
            raise UpstreamError("protocol", "upstream token count has no input_tokens")
        return counted

    async def list_models(self) -> list[str]:
        return model_ids(decode_json(await self.upstream.fetch(self._models), "model list"))

    async def close(self) -> None:
        await self.upstream.close()


def sse_frame(event: str, data: str) -> bytes:
    """One SSE event as Anthropic frames it."""
    lines = data.replace("\n", "\ndata: ")  # JSON has no raw newlines; other data may
    return b"event: " + event.encode() + b"\ndata: " + lines.encode() + b"\n\n"
