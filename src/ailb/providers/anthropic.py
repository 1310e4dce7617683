"""Anthropic's Messages API behind the OpenAI chat-completions interface.

The translation is pure functions: `anthropic_request` (OpenAI request -> Messages API request,
and how to read the answer; `anthropic_messages` for the conversation itself) and
`anthropic_reply` (message or SSE events -> OpenAI completion or chunks). This module is the
connection. The README's table lists what happens to each OpenAI request field.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from ailb.config import DeploymentConfig, Secret
from ailb.errors import InvalidRequest
from ailb.providers.anthropic_reply import StreamTranslator, to_completion, to_usage
from ailb.providers.anthropic_request import (
    JSON_OBJECT_INSTRUCTION,
    Reading,
    to_messages_request,
    translate,
)
from ailb.providers.base import ChunkBatch, UpstreamError
from ailb.providers.transport import SSEDecoder, Upstream, decode_json, encode, model_ids

API_VERSION = "2023-06-01"

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

    async def list_models(self) -> list[str]:
        return model_ids(decode_json(await self.upstream.fetch(self._models), "model list"))

    async def close(self) -> None:
        await self.upstream.close()
