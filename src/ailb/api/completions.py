"""POST /v1/completions: the legacy prompt API, a face of the pipeline (ailb.pipeline).

The request is admitted and routed as its chat view (the prompt as one user message); each
attempt then runs by the deployment it lands on: an OpenAI-format deployment gets the client's
body as it is (its own /completions: base models have no chat template), any other the chat
translation (ailb.api.completions_translate), whose answer comes back as `text_completion`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from ailb.api.chat import DONE_FRAME, SSE_HEADERS, stream_error_frame
from ailb.api.completions_translate import (
    DEFAULT_MAX_TOKENS,
    chat_body,
    text_chunk,
    text_completion,
)
from ailb.api.face import Face
from ailb.api.schemas import AILB_FIELDS, chat_request, parse_body
from ailb.asgi import Receive, Scope, Send, read_body, send_bytes
from ailb.errors import InvalidRequest
from ailb.pipeline.call import Call
from ailb.pipeline.core import Pipeline
from ailb.pipeline.exchange import overhead
from ailb.pipeline.stream import relay
from ailb.providers.base import ChunkBatch
from ailb.providers.openai import OpenAIProvider
from ailb.routing.router import Target

_encode = msgspec.json.Encoder().encode

COMPLETIONS_PATH = "/v1/completions"
PROMPT_SCHEMA: dict[str, Any] = {
    "description": "A string, an array of strings (several prompts), an array of token ids, "
    "or an array of token-id arrays. Only OpenAI-format deployments take all four; others "
    "take one text prompt.",
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
        {"type": "array", "items": {"type": "integer"}},
        {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
    ],
}


class CompletionRequest(msgspec.Struct, omit_defaults=True):
    """OpenAI's legacy create-completion body; fields not listed pass to OpenAI-format
    upstreams."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    prompt: Annotated[Any, Meta(extra_json_schema=PROMPT_SCHEMA)]
    max_tokens: Annotated[int, Meta(ge=0)] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    presence_penalty: Annotated[float, Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Meta(ge=-2, le=2)] | None = None
    seed: int | None = None
    user: Annotated[str, Meta(max_length=512)] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: Annotated[int, Meta(ge=1, le=20)] | None = None


class CompletionChoice(msgspec.Struct):
    text: str
    index: int
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class TextCompletion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: dict[str, Any] | None = None


def prompts(prompt: Any) -> list[str] | int:
    """The prompt's texts, or its token count when given as token ids; raises for a shape
    that is neither."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return prompt
        if all(isinstance(t, int) for t in prompt):
            return len(prompt)
        if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
            return sum(len(p) for p in prompt)
    raise InvalidRequest(
        "`prompt` must be a string, an array of strings, an array of token ids or an array "
        "of token-id arrays.",
        param="prompt",
        code="invalid_value",
    )


def chat_view(req: CompletionRequest, raw: dict[str, Any]) -> dict[str, Any]:
    """What the pipeline admits and routes: the prompts as user text (token ids as a word
    each, for the estimate), every choice the request can cost."""
    texts = prompts(req.prompt)
    count = len(texts) if isinstance(texts, list) else 1
    text = "\n".join(texts) if isinstance(texts, list) else " ".join(["t"] * texts)
    view: dict[str, Any] = {
        "model": req.model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": raw["max_tokens"],
        "n": (req.n or 1) * count * max(1, req.best_of or 1),
        "stream": bool(req.stream),
    }
    if req.user is not None:
        view["user"] = req.user
    return view


class Attempts:
    """What each attempt runs, by the deployment it lands on."""

    __slots__ = ()

    async def complete(self, target: Target, payload: dict[str, Any]) -> dict[str, Any]:
        provider = target.deployment.provider
        if isinstance(provider, OpenAIProvider):
            return await provider.complete_text(payload)
        chat = chat_body(payload, target.deployment.config.provider)
        return text_completion(await provider.complete(chat))

    def stream(self, target: Target, payload: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        provider = target.deployment.provider
        if isinstance(provider, OpenAIProvider):
            return provider.stream_text(payload)
        return provider.stream(chat_body(payload, target.deployment.config.provider))


class CompletionStream:
    """Completion chunks as SSE `data:` frames ending with `[DONE]`: an OpenAI-format
    upstream's as they are (`raw`), others' chat chunks translated. The usage chunk reaches
    only a client that asked for it."""

    __slots__ = ("include_usage",)
    headers = SSE_HEADERS

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def encode(self, chunk: dict[str, Any]) -> bytes | None:
        raw = chunk.get("raw")
        obj = raw if isinstance(raw, dict) else text_chunk(chunk)
        if not self.include_usage and obj.get("usage") and not obj.get("choices"):
            return None
        return b"data: " + _encode(obj) + b"\n\n"

    def done(self) -> bytes:
        return DONE_FRAME

    def error(self, message: str, code: str) -> bytes:
        return stream_error_frame(message, code)


class CompletionsEndpoint(Face):
    def __init__(self, pipeline: Pipeline, max_body_bytes: int) -> None:
        super().__init__(pipeline, max_body_bytes, "completions")
        self.attempts = Attempts()

    async def handle(self, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self.pipeline
        ex = call.ex
        body = await read_body(scope, receive, self.max_body_bytes)
        req, raw = parse_body(body, CompletionRequest)
        for name in AILB_FIELDS:
            if name in raw:
                raise InvalidRequest(
                    f"`{name}` is not served on /v1/completions; use /v1/chat/completions "
                    "or /v1/responses for memory and RAG.",
                    param=name,
                    code="unsupported_feature",
                )
        # OpenAI's default for this API, explicit: the reservation and every upstream
        # then agree on the answer's length.
        raw = {
            **raw,
            "max_tokens": DEFAULT_MAX_TOKENS if req.max_tokens is None else req.max_tokens,
        }
        view, view_raw = chat_request(chat_view(req, raw))
        pipeline.accept(call, view, view_raw, len(body))
        call.body = raw
        await pipeline.prepare(call)
        if req.stream:
            opened = await pipeline.open_stream(call, self.attempts.stream)
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            await relay(
                pipeline.runtime,
                pipeline.ledger,
                call,
                opened,
                receive,
                send,
                CompletionStream(include_usage),
            )
            return
        result = await pipeline.complete(call, self.attempts.complete)
        await send_bytes(send, 200, _encode(result), [*call.headers, overhead(ex)])
