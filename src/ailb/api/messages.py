"""POST /v1/messages and /v1/messages/count_tokens: the Anthropic Messages API face of the
pipeline (ailb.pipeline), as plain ASGI endpoints.

Every request is admitted, augmented and routed as its chat translation (`messages_request`);
each attempt then runs according to the deployment it lands on: an Anthropic deployment gets the
client's own body and headers (`anthropic-version`, `anthropic-beta`) and its answer is relayed
as it is; any other gets the chat body, and its answer is translated (`messages_reply`). Memory
and RAG context reach an Anthropic deployment as system text. Errors are in Anthropic's shape.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import msgspec

from ailb.api.face import Face
from ailb.api.messages_reply import (
    PASSED,
    MessagesStream,
    PassThroughStream,
    to_message,
)
from ailb.api.messages_request import Translated, translate
from ailb.api.schemas import bad_json, chat_request
from ailb.asgi import ClientDisconnected, Receive, Scope, Send, read_body, send_bytes, send_error
from ailb.auth.authenticator import OPEN
from ailb.auth.principal import SCOPE_KEY
from ailb.errors import APIError, anthropic_body
from ailb.pipeline.admission import permit
from ailb.pipeline.call import Call, Headers
from ailb.pipeline.core import Pipeline, request_needs
from ailb.pipeline.exchange import overhead
from ailb.pipeline.stream import relay
from ailb.providers.anthropic import FORWARDED, AnthropicProvider, to_usage
from ailb.providers.base import ChunkBatch, UnsupportedFeature, UpstreamError
from ailb.routing.router import Target

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


def decode_body(body: bytes) -> Any:
    try:
        return _decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        raise bad_json(e) from None


def forwarded_headers(scope: Scope) -> dict[str, str]:
    """The client's Anthropic headers an Anthropic upstream gets (repeated betas joined)."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key in FORWARDED:
            text = value.decode("latin-1").strip()
            if "\r" in text or "\n" in text or not text:
                continue
            out[key] = f"{out[key]},{text}" if key in out else text
    return out


async def send_anthropic_error(send: Send, err: APIError, headers: Headers) -> None:
    await send_error(send, err, headers, anthropic_body(err))


def with_context(body: dict[str, Any], added: list[dict[str, Any]]) -> dict[str, Any]:
    """The Messages body with the context the pipeline added (memory, RAG: system messages)
    after its own system prompt."""
    texts = [m["content"] for m in added if isinstance(m.get("content"), str) and m["content"]]
    if not texts:
        return body
    text = "\n\n".join(texts)
    system = body.get("system")
    if isinstance(system, list):
        return {**body, "system": [*system, {"type": "text", "text": text}]}
    if isinstance(system, str) and system:
        return {**body, "system": f"{system}\n\n{text}"}
    return {**body, "system": text}


def message_text(msg: dict[str, Any]) -> str:
    return "".join(
        b.get("text") or ""
        for b in msg.get("content") or ()
        if isinstance(b, dict) and b.get("type") == "text"
    )


class Attempts:
    """What each attempt of one request runs, by the deployment it lands on."""

    __slots__ = ("before", "headers", "translated")

    def __init__(self, translated: Translated, headers: Mapping[str, str], call: Call) -> None:
        self.translated = translated
        self.headers = headers
        # The chat messages before the context step: what it adds is everything else.
        self.before = {id(m) for m in call.body["messages"]}

    def _upstream(self, target: Target, payload: dict[str, Any]) -> dict[str, Any]:
        added = [m for m in payload["messages"] if id(m) not in self.before]
        body = {**self.translated.upstream, "model": target.upstream_model}
        return with_context(body, added) if added else body

    def _translatable(self, target: Target) -> None:
        issues = self.translated.issues
        if issues:
            what, param = issues[0]
            raise UnsupportedFeature(target.deployment.config.provider, what, param)

    async def complete(self, target: Target, payload: dict[str, Any]) -> dict[str, Any]:
        provider = target.deployment.provider
        if isinstance(provider, AnthropicProvider):
            msg = await provider.messages(self._upstream(target, payload), self.headers)
            text = message_text(msg)
            return {
                "usage": to_usage(msg.get("usage") or {}),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                PASSED: msg,
            }
        self._translatable(target)
        return await provider.complete(payload)

    def stream(self, target: Target, payload: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        provider = target.deployment.provider
        if isinstance(provider, AnthropicProvider):
            return provider.messages_stream(self._upstream(target, payload), self.headers)
        self._translatable(target)
        return provider.stream(payload)


class MessagesEndpoint(Face):
    def __init__(self, pipeline: Pipeline, max_body_bytes: int) -> None:
        super().__init__(pipeline, max_body_bytes, "messages", send_anthropic_error)

    async def handle(self, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self.pipeline
        ex = call.ex
        # Where the anthropic SDK looks for a request's id (`_request_id`, in its errors too).
        call.headers.append((b"request-id", ex.request_id.encode()))
        body = await read_body(scope, receive, self.max_body_bytes)
        translated = translate(decode_body(body))
        req, raw = chat_request(translated.chat)
        pipeline.accept(call, req, raw, len(body))
        attempts = Attempts(translated, forwarded_headers(scope), call)
        await pipeline.prepare(call)
        message_id = "msg_" + ex.request_id.removeprefix("req_")
        if req.stream:
            opened = await pipeline.open_stream(call, attempts.stream)
            assert call.needs is not None
            encoder: MessagesStream | PassThroughStream = (
                PassThroughStream()
                if isinstance(opened.deployment.provider, AnthropicProvider)
                else MessagesStream(req.model, message_id, call.needs.prompt_tokens)
            )
            collect = call.owner is not None or ex.messages is not None
            answer = await relay(
                pipeline.runtime, pipeline.ledger, call, opened, receive, send, encoder, collect
            )
            if answer is not None:
                pipeline.remember(call, answer)
            return
        result = await pipeline.complete(call, attempts.complete)
        passed = result.get(PASSED)
        message = passed if passed is not None else to_message(result, req.model, message_id)
        await send_bytes(send, 200, _encode(message), [*call.headers, overhead(ex)])
        if ex.messages is not None or call.owner is not None:
            text = message_text(message)
            if ex.messages is not None:
                ex.answer = text
            pipeline.remember(call, text)


def estimate_input_tokens(translated: Translated, prompt_tokens: int) -> int:
    """The gateway's estimate (about four characters a token, as for routing), tools included."""
    tools = translated.chat.get("tools")
    return prompt_tokens + ((len(_encode(tools)) + 3) // 4 if tools else 0)


class CountTokensEndpoint:
    """Anthropic deployments count (their /v1/messages/count_tokens, as it is); for others the
    answer is the gateway's estimate. The key's model and collection permissions apply; it is
    no model call, so it is neither rate limited nor billed (no usage record)."""

    def __init__(self, pipeline: Pipeline, max_body_bytes: int) -> None:
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
            counted = await self._count(scope, decode_body(body))
            await send_bytes(send, 200, _encode(counted), [])
        except (APIError, RecursionError) as exc:
            e = exc if isinstance(exc, APIError) else bad_json(exc)
            await send_anthropic_error(send, e, [])
        except ClientDisconnected:
            return

    async def _count(self, scope: Scope, raw: Any) -> dict[str, Any]:
        translated = translate(raw, count=True)
        req, _ = chat_request(translated.chat)
        principal = scope.get(SCOPE_KEY) or OPEN
        permit(principal, req.model, req.rag_collection)
        needs = request_needs(req)
        plan = self.pipeline.runtime.live.router.plan(req.model, needs, None)
        headers = forwarded_headers(scope)
        for i in range(len(plan)):
            target = plan.target(i)
            provider = target.deployment.provider
            if not isinstance(provider, AnthropicProvider):
                continue
            upstream = {**translated.upstream, "model": target.upstream_model}
            try:
                return await provider.count_tokens(upstream, headers)
            except UpstreamError as e:
                if e.client_fault:
                    raise APIError(
                        e.client_message or "The request was rejected by the upstream model.",
                        status=e.status,
                        type="invalid_request_error",
                    ) from None
        return {"input_tokens": estimate_input_tokens(translated, needs.prompt_tokens)}
