"""Ollama's native `/api/chat` (NDJSON streaming) behind the OpenAI chat-completions interface.

Native rather than Ollama's OpenAI-compatible endpoint because the native one reports usage on
every stream and takes the full `options` set. The translation is pure functions in
`ollama_request` (OpenAI request -> Ollama request, and how to read the answer) and
`ollama_reply` (Ollama answer -> OpenAI completion or chunks); this module is the connection and
the two cases that take a second request:

- `tool_choice: "required"` answered without a tool call is asked once more, with `format`
  constraining the answer to one call (within what is left of `max_tokens`); a second miss is a
  502 `tool_call_missing`, which is not held against the deployment;
- a `think` level (from `reasoning_effort`) refused by a model that takes no levels (only
  gpt-oss does) is asked again with `think: true`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from ailb.config import DeploymentConfig, Secret
from ailb.errors import UpstreamUnavailable
from ailb.providers.base import ChunkBatch, UpstreamError
from ailb.providers.embeddings import ollama_request, read_ollama
from ailb.providers.ollama_reply import StreamTranslator, made_call, to_completion, to_usage
from ailb.providers.ollama_request import Reading, to_chat_request, translate
from ailb.upstream.http import Response
from ailb.upstream.transport import NDJSONDecoder, Upstream, decode_json, encode

__all__ = [
    "OllamaProvider",
    "Reading",
    "StreamTranslator",
    "to_chat_request",
    "to_completion",
    "to_usage",
    "translate",
]


def tool_call_missing() -> UpstreamUnavailable:
    return UpstreamUnavailable(
        "The model answered twice without calling a tool although `tool_choice` requires one.",
        param="tool_choice",
        code="tool_call_missing",
    )


def retry_request(
    body: dict[str, Any], stream: bool, used: dict[str, int]
) -> tuple[dict[str, Any], Reading]:
    """The second attempt of a `required` request; it may generate only what the first left of
    the client's limit (the budget reserved one answer's worth)."""
    request, reading = translate(body, stream, retry=True)
    options = request.get("options") or {}
    limit = options.get("num_predict")
    if isinstance(limit, int) and limit > 0:
        left = limit - used["completion_tokens"]
        if left <= 0:
            raise tool_call_missing()
        request["options"] = {**options, "num_predict": left}
    return request, reading


def think_level_refused(err: UpstreamError, request: dict[str, Any]) -> bool:
    """Ollama's 400 for a think level sent to a model that only takes true/false."""
    return (
        err.status == 400
        and isinstance(request.get("think"), str)
        and "think value" in (err.client_message or "")
    )


# --- the provider --------------------------------------------------------------------------------


class OllamaProvider:
    def __init__(self, config: DeploymentConfig, api_key: Secret | None) -> None:
        self.config = config
        headers = {"Content-Type": "application/json"}
        if api_key:
            # Ollama itself has no keys; a proxy in front of it may want one.
            headers["Authorization"] = f"Bearer {api_key}"
        self.upstream = Upstream(config, headers)
        self._chat = self.upstream.head("POST", "/api/chat")
        self._tags = self.upstream.head("GET", "/api/tags")
        self._embed = self.upstream.head("POST", "/api/embed")

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model", "")
        request, reading = translate(body, stream=False)
        answer = to_completion(await self._answer(request), model, self.upstream.secrets, reading)
        if not reading.required or made_call(answer):
            return answer
        request, reading = retry_request(body, False, answer["usage"])
        reply = await self._answer(request)
        answer = to_completion(reply, model, self.upstream.secrets, reading, answer["usage"])
        if not made_call(answer):
            raise tool_call_missing()
        return answer

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        model = body.get("model", "")
        request, reading = translate(body, stream=True)
        translator = StreamTranslator(model, self.upstream.secrets, reading)
        async for batch in self._relay(request, translator):
            yield batch
        if not translator.missing_call:
            return
        assert translator.usage is not None
        request, reading = retry_request(body, True, translator.usage)
        translator = StreamTranslator(model, self.upstream.secrets, reading, translator.usage)
        async for batch in self._relay(request, translator):
            yield batch
        if translator.missing_call:
            raise tool_call_missing()

    async def _answer(self, request: dict[str, Any]) -> Any:
        try:
            raw = await self.upstream.fetch(self._chat, encode(request))
        except UpstreamError as e:
            if not think_level_refused(e, request):
                raise
            raw = await self.upstream.fetch(self._chat, encode({**request, "think": True}))
        return decode_json(raw, "chat reply")

    async def _open(self, request: dict[str, Any]) -> Response:
        try:
            return await self.upstream.send(self._chat, encode(request))
        except UpstreamError as e:
            if not think_level_refused(e, request):
                raise
            return await self.upstream.send(self._chat, encode({**request, "think": True}))

    async def _relay(
        self, request: dict[str, Any], translator: StreamTranslator
    ) -> AsyncGenerator[ChunkBatch, None]:
        """The upstream stream as batches of chunks (empty ones left out), up to its done
        line."""
        resp = await self._open(request)
        try:
            decoder = NDJSONDecoder()
            async for data in resp.iter_chunks():
                batch: ChunkBatch = []
                for obj in decoder.feed(data):
                    batch.extend(translator.feed(obj))
                    if translator.done:
                        break
                if batch:
                    yield batch
                if translator.done:
                    return
            batch = []
            for obj in decoder.finish():
                batch.extend(translator.feed(obj))
            if batch:
                yield batch
            if translator.done:
                return
        finally:
            resp.release()
        raise UpstreamError("protocol", "stream ended before its done line")

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        request = ollama_request(body)
        reply = decode_json(await self.upstream.fetch(self._embed, encode(request)), "embed")
        return read_ollama(
            reply, body.get("model", ""), len(request["input"]), request.get("dimensions")
        )

    async def list_models(self) -> list[str]:
        obj = decode_json(await self.upstream.fetch(self._tags), "model list")
        models = obj.get("models") if isinstance(obj, dict) else None
        if not isinstance(models, list):
            raise UpstreamError("protocol", "bad model list")
        names: list[str] = []
        for m in models:
            name = (m.get("name") or m.get("model")) if isinstance(m, dict) else None
            if isinstance(name, str):
                names.append(name)
                # Clients say `llama3.2` for `llama3.2:latest`, as Ollama's own CLI allows.
                if name.endswith(":latest"):
                    names.append(name.removesuffix(":latest"))
        return names

    async def close(self) -> None:
        await self.upstream.close()
