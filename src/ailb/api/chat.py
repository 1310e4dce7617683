"""POST /v1/chat/completions: the hot path, as a plain ASGI endpoint.

Kept out of FastAPI's per-route machinery (DESIGN §1: ~40 % faster); its schema is still in the
OpenAPI document, generated from the same msgspec types that validate it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import replace
from typing import Any

import msgspec

from ailb.api.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    send_bytes,
    send_error,
)
from ailb.api.asgi import read_body as read_request_body
from ailb.api.schemas import AILB_FIELDS, ChatCompletionRequest, parse_chat_request
from ailb.auth.identity import caller_id
from ailb.errors import APIError, InvalidRequest
from ailb.memory.service import MemoryService, room_for_context
from ailb.observability.access_log import AccessLog
from ailb.providers.base import UpstreamError
from ailb.rag.context import augment, sources_header
from ailb.rag.service import RagService
from ailb.routing.deployment import DeploymentState
from ailb.routing.failover import Failover, OpenStream
from ailb.routing.router import Needs, Plan, Router

log = logging.getLogger("ailb.chat")
_encode = msgspec.json.Encoder().encode

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
DONE_FRAME = b"data: [DONE]\n\n"
DEFAULT_TOP_K = 3
IMAGE_TOKENS = 850  # what one high-detail image costs in OpenAI's accounting, roughly


def request_needs(req: ChatCompletionRequest) -> Needs:
    chars = 0
    images = 0
    for m in req.messages:
        c = m.content
        if isinstance(c, str):
            chars += len(c)
        elif c:
            for part in c:
                kind = part.get("type")
                if kind == "text":
                    chars += len(part.get("text") or "")
                elif kind in ("image_url", "input_image"):
                    images += 1
    rf = req.response_format
    return Needs(
        tools=bool(req.tools),
        images=images > 0,
        json_mode=rf is not None and rf.get("type") in ("json_object", "json_schema"),
        streaming=bool(req.stream),
        prompt_tokens=(chars + 3) // 4 + images * IMAGE_TOKENS + 4 * len(req.messages),
        max_tokens=req.max_completion_tokens or req.max_tokens or 0,
    )


def stream_error_frame(message: str, code: str) -> bytes:
    payload = {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
    return b"data: " + _encode(payload) + b"\n\n"


class Exchange:
    """The facts of one request, filled in as it goes: logged once at the end."""

    __slots__ = (
        "attempts",
        "completion_tokens",
        "cost",
        "deployment",
        "error",
        "memory",
        "model",
        "plan",
        "prompt_tokens",
        "rag",
        "request_id",
        "started",
        "status",
        "stream",
    )

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = time.perf_counter()
        self.model: str | None = None
        self.plan: Plan | None = None
        self.deployment: str | None = None
        self.status = 0
        self.error: str | None = None
        self.attempts = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.stream = False
        self.memory: str | None = None
        self.rag: str | None = None

    def log_fields(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "request_id": self.request_id,
            "model": self.model,
            "deployment": self.deployment,
            "status": self.status,
            "error": self.error,
            "stream": self.stream,
            "memory": self.memory,
            "rag": self.rag,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 2),
            "attempts": self.attempts,
            "reason": plan.reason if plan is not None else None,
            "candidates": plan.candidates() if plan is not None else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost, 8),
        }


class ChatCompletionsEndpoint:
    def __init__(
        self,
        router: Router,
        failover: Failover,
        max_body_bytes: int,
        access_log: AccessLog,
        memory: MemoryService | None = None,
        rag: RagService | None = None,
    ) -> None:
        self.router = router
        self.failover = failover
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.memory = memory
        self.rag = rag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = Exchange("req_" + os.urandom(12).hex())
        rid_header = [(b"x-request-id", ex.request_id.encode())]
        try:
            body = await read_request_body(scope, receive, self.max_body_bytes)
            req, raw = parse_chat_request(body)
            ex.model = req.model
            ex.stream = bool(req.stream)
            needs = request_needs(req)
            upstream_body = {k: v for k, v in raw.items() if k not in AILB_FIELDS}
            owner = None
            if req.session_id is not None and self.memory is not None:
                owner = caller_id(scope)
                aug = await self.memory.augment(
                    owner,
                    req.session_id,
                    raw["messages"],
                    self.router.context_window(req.model),
                    needs.prompt_tokens,
                    needs.max_tokens,
                )
                ex.memory = aug.outcome
                rid_header = [*rid_header, (b"x-ailb-memory", aug.outcome.encode())]
                if aug.added_tokens:
                    upstream_body["messages"] = aug.messages
                    needs = replace(needs, prompt_tokens=needs.prompt_tokens + aug.added_tokens)
            if req.rag_collection is not None:
                needs, rid_header = await self._retrieve(
                    scope, req, upstream_body, needs, rid_header, ex
                )
            plan = ex.plan = self.router.plan(req.model, needs, req.session_id)
            if req.stream:
                opened = await self.failover.open_stream(plan, upstream_body, ex.request_id)
                ex.deployment = opened.deployment.name
                ex.attempts = opened.attempts
                ex.status = 200
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                answer = await self._pump(
                    opened, receive, send, rid_header, include_usage, needs, ex, owner is not None
                )
                if owner is not None and answer is not None and self.memory is not None:
                    assert req.session_id is not None
                    self.memory.remember(owner, req.session_id, raw["messages"], answer)
                return
            result, dep, ex.attempts = await self.failover.complete(
                plan, upstream_body, ex.request_id
            )
            ex.deployment = dep.name
            _account(ex, dep, result.get("usage"), needs, result)
            ex.status = 200
            await send_bytes(send, 200, _encode(result), rid_header)
            if owner is not None and self.memory is not None:
                assert req.session_id is not None
                self.memory.remember(owner, req.session_id, raw["messages"], _answer(result))
        except APIError as e:
            ex.status, ex.error = e.status, e.code or e.type
            await send_error(send, e, rid_header)
        except ClientDisconnected:
            ex.status, ex.error = 499, "client_disconnected"
        except Exception:
            log.exception("unhandled_error", extra={"request_id": ex.request_id})
            ex.status, ex.error = 500, "internal_error"
            await send_error(
                send, APIError("The gateway failed to process the request."), rid_header
            )
        finally:
            if self.access_log.enabled:
                self.access_log.write("request", ex.log_fields())

    async def _retrieve(
        self,
        scope: Scope,
        req: ChatCompletionRequest,
        upstream_body: dict[str, Any],
        needs: Needs,
        headers: list[tuple[bytes, bytes]],
        ex: Exchange,
    ) -> tuple[Needs, list[tuple[bytes, bytes]]]:
        """RAG: the retrieved passages into the upstream request; headers say what was used."""
        assert req.rag_collection is not None
        if self.rag is None:
            raise InvalidRequest(
                "RAG is disabled on this gateway (ENABLE_RAG=false).",
                param="rag_collection",
                code="rag_disabled",
            )
        budget = room_for_context(
            self.router.context_window(req.model), needs.prompt_tokens, needs.max_tokens
        )
        aug = await augment(
            self.rag,
            caller_id(scope),
            req.rag_collection,
            upstream_body["messages"],
            req.rag_top_k or DEFAULT_TOP_K,
            budget,
        )
        ex.rag = aug.outcome
        headers = [*headers, (b"x-ailb-rag", aug.outcome.encode())]
        if aug.sources:
            headers.append((b"x-ailb-rag-sources", sources_header(aug.sources).encode()))
            upstream_body["messages"] = aug.messages
            needs = replace(needs, prompt_tokens=needs.prompt_tokens + aug.added_tokens)
        return needs, headers

    async def _pump(
        self,
        opened: OpenStream,
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        include_usage: bool,
        needs: Needs,
        ex: Exchange,
        collect: bool = False,
    ) -> str | None:
        """Relay the stream. The status line is already decided (200); from here a failure is
        an explicit SSE error event and never `[DONE]`, so a cut answer never looks whole.
        With `collect`, returns the assembled answer of a stream that completed."""
        dep = opened.deployment
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})

        main = asyncio.current_task()
        state = {"finished": False, "disconnected": False}

        def on_receive(task: asyncio.Future[Any]) -> None:
            # The only thing a client can send now is a disconnect: stop the upstream at once.
            if not state["finished"] and not task.cancelled() and main is not None:
                state["disconnected"] = True
                main.cancel()

        watcher: asyncio.Future[Any] = asyncio.ensure_future(receive())
        watcher.add_done_callback(on_receive)

        usage: dict[str, Any] | None = None
        chars = 0
        pieces: list[str] | None = [] if collect else None
        complete = False
        batch = opened.first
        try:
            try:
                while True:
                    frames = []
                    for chunk in batch:
                        choices = chunk.get("choices")
                        if choices:
                            delta = choices[0].get("delta")
                            if delta:
                                content = delta.get("content")
                                if content:
                                    chars += len(content)
                                    if pieces is not None:
                                        pieces.append(content)
                        u = chunk.get("usage")
                        if u:
                            usage = u
                            if not choices and not include_usage:
                                continue
                        frames.append(b"data: " + _encode(chunk) + b"\n\n")
                    if frames:
                        await send(
                            {
                                "type": "http.response.body",
                                "body": b"".join(frames),
                                "more_body": True,
                            }
                        )
                    batch = await anext(opened.rest)
            except StopAsyncIteration:
                state["finished"] = True
                await send({"type": "http.response.body", "body": DONE_FRAME})
                dep.record_success(time.perf_counter() - opened.started, opened.ttft)
                complete = True
            except UpstreamError as e:
                state["finished"] = True
                dep.record_failure(e)
                ex.error = "upstream_stream_error"
                log.warning(
                    "stream_broken",
                    extra={
                        "request_id": ex.request_id,
                        "deployment": dep.name,
                        "error": e.label,
                        "detail": e.message,
                    },
                )
                await send(
                    {
                        "type": "http.response.body",
                        "more_body": False,
                        "body": stream_error_frame(
                            "The upstream stream failed before the answer was complete.",
                            "upstream_stream_error",
                        ),
                    }
                )
            except asyncio.CancelledError:
                if not state["disconnected"] or main is None:
                    raise
                main.uncancel()
                ex.error = "client_disconnected"
        finally:
            state["finished"] = True
            dep.end()
            if not watcher.done():
                watcher.cancel()
            await opened.rest.aclose()
            _account(ex, dep, usage, needs, None, streamed_chars=chars)
        return "".join(pieces) if complete and pieces is not None else None


def _answer(result: dict[str, Any]) -> str:
    choices = result.get("choices") or ()
    content = (choices[0].get("message") or {}).get("content") if choices else None
    return content if isinstance(content, str) else ""


def _account(
    ex: Exchange,
    dep: DeploymentState,
    usage: Any,
    needs: Needs,
    result: dict[str, Any] | None,
    streamed_chars: int = 0,
) -> None:
    """Tokens and cost: the provider's figures, else the documented estimate (about four
    characters a token, of what was actually delivered)."""
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        prompt = usage["prompt_tokens"]
        completion = int(usage.get("completion_tokens") or 0)
    else:
        completion_chars = streamed_chars
        if result is not None:
            for choice in result.get("choices") or ():
                content = (choice.get("message") or {}).get("content")
                if isinstance(content, str):
                    completion_chars += len(content)
        prompt, completion = needs.prompt_tokens, (completion_chars + 3) // 4
    ex.prompt_tokens, ex.completion_tokens = prompt, completion
    ex.cost = dep.record_usage(prompt, completion)
