"""OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, LM Studio ...): pass-through,
except two names other servers do not read (`max_completion_tokens`, the `developer` role)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any
from urllib.parse import urlsplit

from ailb.config import DeploymentConfig, Secret
from ailb.providers import openai_responses as native
from ailb.providers.base import ChunkBatch, UpstreamError, error_message_from
from ailb.providers.embeddings import input_items, read_openai
from ailb.upstream.transport import SSEDecoder, Upstream, decode_json, encode, model_ids


def reads_max_completion_tokens(base_url: str | None) -> bool:
    """OpenAI's own API (and Azure's) reads `max_completion_tokens`, and its reasoning models
    refuse `max_tokens`; other OpenAI-compatible servers (LM Studio, Ollama, older llama.cpp
    and vLLM) read `max_tokens` and may ignore the newer name, generating without a limit."""
    host = (urlsplit(base_url).hostname or "") if base_url else ""
    return host == "api.openai.com" or host.endswith(".openai.azure.com")


def name_answer_limit(body: dict[str, Any], completion_name: bool) -> dict[str, Any]:
    """The answer's limit under the name the upstream reads: a lone `max_completion_tokens`
    becomes `max_tokens` for a server that does not read the newer name. A body with both, or
    only `max_tokens`, is the client's to send as it is."""
    if completion_name or "max_tokens" in body or "max_completion_tokens" not in body:
        return body
    renamed = {k: v for k, v in body.items() if k != "max_completion_tokens"}
    renamed["max_tokens"] = body["max_completion_tokens"]
    return renamed


def name_roles(body: dict[str, Any], openai_host: bool) -> dict[str, Any]:
    """`developer` messages as `system` ones for servers other than OpenAI's own: the chat
    templates of open models (vLLM, llama.cpp, LM Studio) know system, user, assistant and tool;
    some refuse another role and some (Qwen's) silently leave its message out."""
    messages = body.get("messages")
    if openai_host or not isinstance(messages, list):
        return body
    if not any(isinstance(m, dict) and m.get("role") == "developer" for m in messages):
        return body
    renamed = [
        {**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m
        for m in messages
    ]
    return {**body, "messages": renamed}


def prepare_stream_body(body: dict[str, Any]) -> dict[str, Any]:
    """Ask for usage on every stream: billing needs it even when the client did not ask
    (the gateway drops the usage chunk for such clients)."""
    opts = dict(body.get("stream_options") or {})
    opts["include_usage"] = True
    return {**body, "stream": True, "stream_options": opts}


def parse_stream_event(
    event: str | None, data: str, secrets: Sequence[str] = ()
) -> dict[str, Any] | None:
    """One SSE event of an OpenAI stream: a chunk, or None for `[DONE]`; an error event
    raises UpstreamError (its text scrubbed of `secrets`, the upstream's credentials)."""
    if data == "[DONE]":
        return None
    obj = decode_json(data.encode(), "stream event")
    if not isinstance(obj, dict):
        raise UpstreamError("protocol", "stream event is not a JSON object")
    if "error" in obj or event == "error":
        msg, code, _ = error_message_from(obj, secrets)
        raise UpstreamError(
            "status", f"upstream error mid-stream: {msg or 'unknown'}", status=502, code=code
        )
    return obj


def check_completion(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
        raise UpstreamError("protocol", "upstream answer is not a chat.completion object")
    return obj


class OpenAIProvider:
    def __init__(self, config: DeploymentConfig, api_key: Secret | None) -> None:
        self.config = config
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.upstream = Upstream(config, headers)
        self._chat = self.upstream.head("POST", "/chat/completions")
        self._chat_stream = self.upstream.head(
            "POST", "/chat/completions", {"Accept": "text/event-stream"}
        )
        self._models = self.upstream.head("GET", "/models")
        self._embeddings = self.upstream.head("POST", "/embeddings")
        self._openai_host = reads_max_completion_tokens(config.base_url)
        self._text = self.upstream.head("POST", "/completions")
        self._text_stream = self.upstream.head(
            "POST", "/completions", {"Accept": "text/event-stream"}
        )
        self._responses = self.upstream.head("POST", "/responses")
        self._responses_stream = self.upstream.head(
            "POST", "/responses", {"Accept": "text/event-stream"}
        )

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        if native.NATIVE in body:  # a Responses pass-through (ailb.providers.openai_responses)
            return await native.complete(self.upstream, self._responses, body)
        body = name_roles(name_answer_limit(body, self._openai_host), self._openai_host)
        raw = await self.upstream.fetch(self._chat, encode(body))
        return check_completion(decode_json(raw, "chat completion"))

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        if native.NATIVE in body:
            passed = native.stream(self.upstream, self._responses_stream, body)
            try:
                async for passed_batch in passed:
                    yield passed_batch
            finally:
                await passed.aclose()  # now, not when collected: it holds the connection
            return
        body = name_roles(name_answer_limit(body, self._openai_host), self._openai_host)
        body = prepare_stream_body(body)
        resp = await self.upstream.send(self._chat_stream, encode(body))
        try:
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                # Some servers ignore stream=true for errors or small answers: read it whole.
                raw = await resp.read()
                yield [_as_chunk(check_completion(decode_json(raw, "chat completion")))]
                return
            decoder = SSEDecoder()
            async for data in resp.iter_chunks():
                batch: ChunkBatch = []
                for event, payload in decoder.feed(data):
                    chunk = parse_stream_event(event, payload, self.upstream.secrets)
                    if chunk is None:
                        if batch:
                            yield batch
                        return
                    batch.append(chunk)
                if batch:
                    yield batch
        finally:
            resp.release()
        raise UpstreamError("protocol", "stream ended before [DONE]")

    # --- the legacy completions API passed through (the /v1/completions face) ---------------

    async def complete_text(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's completions body as it is: the upstream's `text_completion`."""
        obj = decode_json(await self.upstream.fetch(self._text, encode(body)), "completion")
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            raise UpstreamError("protocol", "upstream answer is not a text_completion object")
        return obj

    async def stream_text(self, body: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        """The upstream's completion chunks, each as it is in `raw`, with what the gateway reads
        of it in chat terms (the text as a delta, the usage)."""
        resp = await self.upstream.send(self._text_stream, encode(prepare_stream_body(body)))
        try:
            decoder = SSEDecoder()
            async for data in resp.iter_chunks():
                batch: ChunkBatch = []
                for event, payload in decoder.feed(data):
                    chunk = parse_stream_event(event, payload, self.upstream.secrets)
                    if chunk is None:
                        if batch:
                            yield batch
                        return
                    batch.append(_text_chunk_read(chunk))
                if batch:
                    yield batch
        finally:
            resp.release()
        raise UpstreamError("protocol", "stream ended before [DONE]")

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Passed through (the gateway has set `encoding_format: float`)."""
        raw = await self.upstream.fetch(self._embeddings, encode(body))
        return read_openai(decode_json(raw, "embeddings"), len(input_items(body["input"])))

    async def list_models(self) -> list[str]:
        return model_ids(decode_json(await self.upstream.fetch(self._models), "model list"))

    async def close(self) -> None:
        await self.upstream.close()


def _text_chunk_read(chunk: dict[str, Any]) -> dict[str, Any]:
    read: dict[str, Any] = {"raw": chunk}
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices:
        read["choices"] = [
            {
                "index": c.get("index", 0),
                "delta": {"content": c.get("text") or ""},
                "finish_reason": c.get("finish_reason"),
            }
            for c in choices
            if isinstance(c, dict)
        ]
    if chunk.get("usage"):
        read["usage"] = chunk["usage"]
    return read


def _as_chunk(completion: dict[str, Any]) -> dict[str, Any]:
    """A whole chat.completion as one chunk (with usage), for servers that did not stream."""
    choices = [
        {
            "index": c.get("index", 0),
            "delta": c.get("message") or {},
            "logprobs": c.get("logprobs"),
            "finish_reason": c.get("finish_reason"),
        }
        for c in completion.get("choices", ())
    ]
    out = {**completion, "object": "chat.completion.chunk", "choices": choices}
    return out
