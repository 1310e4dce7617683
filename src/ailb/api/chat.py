"""POST /v1/chat/completions: the hot path, as a plain ASGI endpoint.

Kept out of FastAPI's per-route machinery (DESIGN §1: ~40 % faster); its schema is still in the
OpenAPI document, generated from the same msgspec types that validate it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import replace
from typing import Any

import msgspec

from ailb.api.asgi import (
    ARRIVED,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    send_bytes,
    send_error,
)
from ailb.api.asgi import read_body as read_request_body
from ailb.api.schemas import AILB_FIELDS, ChatCompletionRequest, bad_json, parse_chat_request
from ailb.auth.authenticator import OPEN
from ailb.auth.identity import ANONYMOUS, caller_id
from ailb.auth.keys import ApiKey
from ailb.auth.principal import SCOPE_KEY, Principal
from ailb.billing.records import UsageRecord
from ailb.billing.usage import UsageRecorder
from ailb.errors import APIError, InvalidRequest, PermissionDenied, RateLimited, ServiceUnavailable
from ailb.memory.service import MemoryService, room_for_context
from ailb.observability.access_log import AccessLog
from ailb.providers.base import UpstreamError
from ailb.rag.context import augment, sources_header
from ailb.rag.service import RagService
from ailb.ratelimit.policy import NOTHING, DeploymentGate, Grant, Granted, LimitPolicy
from ailb.ratelimit.reserve import (
    COMPLETION_ESTIMATE,
    Reservation,
    TermsCache,
    context_bytes,
    prompt_ceiling,
    reservation,
)
from ailb.routing.deployment import DeploymentState
from ailb.routing.failover import OpenStream
from ailb.routing.router import Needs, Plan, Router
from ailb.runtime import Runtime

log = logging.getLogger("ailb.chat")
_encode = msgspec.json.Encoder().encode

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
DONE_FRAME = b"data: [DONE]\n\n"
OVERHEAD_HEADER = b"x-ailb-overhead-ms"
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


def rounded(x: float, scale: int) -> float:
    """x to 1/scale, half up: round(x, n) goes through decimal strings (about 2,000 machine
    instructions, several times per request); k / scale is the double nearest that decimal."""
    return math.floor(x * scale + 0.5) / scale


def stream_error_frame(message: str, code: str) -> bytes:
    payload = {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
    return b"data: " + _encode(payload) + b"\n\n"


class Exchange:
    """The facts of one request, filled in as it goes: logged once at the end."""

    __slots__ = (
        "answer",
        "attempts",
        "collection",
        "completion_tokens",
        "cost",
        "deployment",
        "error",
        "estimated",
        "key_id",
        "memory",
        "messages",
        "model",
        "overhead",
        "plan",
        "prompt_tokens",
        "provider",
        "rag",
        "recorded",
        "request_id",
        "session_id",
        "started",
        "status",
        "stream",
        "ts",
        "ttft",
        "upstream",
        "user",
    )

    def __init__(self, request_id: str, arrived: float | None = None) -> None:
        self.request_id = request_id
        self.started = time.perf_counter() if arrived is None else arrived
        self.ts = time.time()
        self.key_id = ANONYMOUS
        self.user: str | None = None
        self.session_id: str | None = None
        self.collection: str | None = None
        self.estimated = False
        self.recorded = False
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
        self.provider: str | None = None
        self.upstream = 0.0  # seconds spent in upstream attempts (failover included)
        self.overhead: float | None = None  # the gateway's own seconds, up to the response
        self.ttft: float | None = None  # streams: seconds to the first byte sent
        # Only with AILB_LOG_CONTENT=true: the client's messages and the answer, for the log.
        self.messages: Any = None
        self.answer: str | None = None

    def log_fields(self) -> dict[str, Any]:
        plan = self.plan
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "key_id": self.key_id,
            "model": self.model,
            "provider": self.provider,
            "deployment": self.deployment,
            "status": self.status,
            "error": self.error,
            "stream": self.stream,
            "memory": self.memory,
            "rag": self.rag,
            "latency_ms": rounded((time.perf_counter() - self.started) * 1000, 100),
            "overhead_ms": None if self.overhead is None else rounded(self.overhead * 1000, 1000),
            "ttft_ms": None if self.ttft is None else rounded(self.ttft * 1000, 100),
            "attempts": self.attempts,
            "reason": plan.reason if plan is not None else None,
            "candidates": plan.candidates() if plan is not None else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": rounded(self.cost, 100_000_000),
        }
        if self.messages is not None:  # AILB_LOG_CONTENT=true
            fields["messages"] = self.messages
            fields["answer"] = self.answer
        return fields


class ChatCompletionsEndpoint:
    def __init__(
        self,
        runtime: Runtime,
        max_body_bytes: int,
        access_log: AccessLog,
        memory: MemoryService | None = None,
        rag: RagService | None = None,
        limits: LimitPolicy | None = None,
        usage: UsageRecorder | None = None,
        instance: str = "",
    ) -> None:
        # Its `live` configuration is read once per request: a reload swaps it, and the request
        # keeps the one it started with (ailb.live).
        self.runtime = runtime
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.memory = memory
        self.rag = rag
        self.limits = limits
        self.usage = usage
        self.instance = instance
        self._terms = TermsCache()  # what each model's deployments charge and allow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Time-ordered ids: sortable for people, and appended (not scattered) in ledger indexes.
        ex = Exchange(f"req_{time.time_ns():016x}{os.urandom(6).hex()}", scope.get(ARRIVED))
        rid_header = [(b"x-request-id", ex.request_id.encode())]
        principal = scope.get(SCOPE_KEY) or OPEN
        ex.key_id = principal.key_id
        granted: Grant = NOTHING
        context_grant: Granted = NOTHING
        gate: DeploymentGate | None = None
        live = self.runtime.live
        live.requests += 1
        router = live.router
        metrics = self.runtime.metrics
        metrics.in_flight += 1
        try:
            body = await read_request_body(scope, receive, self.max_body_bytes)
            req, raw = parse_chat_request(body)
            ex.model = req.model
            ex.stream = bool(req.stream)
            ex.user, ex.session_id, ex.collection = req.user, req.session_id, req.rag_collection
            if live.settings.env.log_content:
                ex.messages = raw["messages"]
            _permit(principal, req)
            routes = self.runtime.routes
            if routes.active and req.model in router.models():
                wait = routes.take(req.model)
                if wait:
                    raise route_limited(req.model, wait)
            needs = request_needs(req)
            upstream_body = {k: v for k, v in raw.items() if k not in AILB_FIELDS}
            reserved: Reservation | None = None
            key = principal.key
            if self.limits is not None and key is not None:  # no key (master, open): no limits
                reserved = self._reservation(router, key, req, len(body), needs)
                got = self.limits.admit_now(
                    principal,
                    ex.request_id,
                    req.user,
                    reserved.tokens,
                    reserved.usd,
                    reserved.flex,
                )
                granted = (
                    got
                    if got is not None
                    else await self.limits.admit(
                        principal,
                        ex.request_id,
                        req.user,
                        reserved.tokens,
                        reserved.usd,
                        reserved.flex,
                    )
                )
                rid_header += granted.headers
                if granted.extra:  # no max_tokens: the answer gets what the limits left
                    needs = _cap_answer(upstream_body, needs, granted.extra // reserved.choices)
            if live.gated and self.limits is not None:
                completion = needs.max_tokens * (req.n or 1) or COMPLETION_ESTIMATE
                gate = DeploymentGate(self.limits, ex.request_id, needs.prompt_tokens + completion)
            before = raw["messages"]
            owner = None
            if req.session_id is not None and self.memory is not None:
                owner = caller_id(scope)
                aug = await self.memory.augment(
                    owner,
                    req.session_id,
                    raw["messages"],
                    router.context_window(req.model),
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
                    scope, req, upstream_body, needs, rid_header, ex, router
                )
            if reserved is not None and upstream_body["messages"] is not before:
                needs, context_grant = await self._fund_context(
                    router, principal, req, ex.request_id, granted, reserved, upstream_body,
                    before, needs,
                )  # fmt: skip
            plan = ex.plan = router.plan(req.model, needs, req.session_id)
            if req.stream:
                waited = time.perf_counter()
                try:
                    opened = await live.failover.open_stream(
                        plan, upstream_body, ex.request_id, gate
                    )
                finally:
                    ex.upstream = time.perf_counter() - waited
                ex.deployment = opened.deployment.name
                ex.provider = opened.deployment.config.provider
                ex.attempts = opened.attempts
                ex.status = 200
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                collect = owner is not None or ex.messages is not None
                answer = await self._pump(
                    opened, receive, send, rid_header, include_usage, needs, ex, collect
                )
                if owner is not None and answer is not None and self.memory is not None:
                    assert req.session_id is not None
                    self.memory.remember(owner, req.session_id, raw["messages"], answer)
                return
            waited = time.perf_counter()
            try:
                result, dep, ex.attempts = await live.failover.complete(
                    plan, upstream_body, ex.request_id, gate
                )
            finally:
                ex.upstream = time.perf_counter() - waited
            ex.deployment = dep.name
            ex.provider = dep.config.provider
            _account(ex, dep, result.get("usage"), needs, result)
            ex.status = 200
            if not self._record(ex):  # durable before the client sees the answer, or no answer
                raise ServiceUnavailable(
                    "Usage cannot be recorded right now (the gateway's disk is full); the "
                    "answer is withheld rather than left unbilled. Please retry.",
                    code="usage_unrecordable",
                )
            body = _encode(result)
            await send_bytes(send, 200, body, [*rid_header, _overhead(ex)])
            if ex.messages is not None:
                ex.answer = _answer(result)
            if owner is not None and self.memory is not None:
                assert req.session_id is not None
                self.memory.remember(owner, req.session_id, raw["messages"], _answer(result))
        except (APIError, RecursionError) as exc:
            # Answered from another frame: a local naming the exception here would make a cycle
            # (its traceback holds this frame), keeping the request's body until the collector
            # runs.
            await self._refuse(send, exc, ex, rid_header)
        except ClientDisconnected:
            ex.status, ex.error = 499, "client_disconnected"
        except Exception:
            log.exception("unhandled_error", extra={"request_id": ex.request_id})
            ex.status, ex.error = 500, "internal_error"
            self._record(ex)
            await send_error(
                send,
                APIError("The gateway failed to process the request."),
                [*rid_header, _overhead(ex)],
            )
        finally:
            metrics.finish(ex)
            live.requests -= 1  # done with the upstream: its configuration may be retired
            if not ex.recorded:
                self._record(ex)
            if granted is not NOTHING and self.limits is not None:
                self.limits.settle(granted, ex.prompt_tokens + ex.completion_tokens, ex.cost)
            if context_grant is not NOTHING and self.limits is not None:
                self.limits.settle(context_grant, 0, 0.0)  # what it held is in the above
            if gate is not None:
                gate.settle(ex.deployment, ex.prompt_tokens + ex.completion_tokens)
            if self.access_log.enabled:
                self.access_log.write("request", ex.log_fields())

    async def _refuse(
        self,
        send: Send,
        exc: APIError | RecursionError,
        ex: Exchange,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        # RecursionError: JSON nested just shallower than the decoder's limit, too deep for a
        # provider's translation or the encoder deeper in the stack (about 1,000 levels).
        e = exc if isinstance(exc, APIError) else bad_json(exc)
        ex.status, ex.error = e.status, e.code or e.type
        self._record(ex)
        if e.status == 429:
            self.runtime.metrics.rate_limited_by(
                e.code, e.reason if isinstance(e, RateLimited) else None
            )
        await send_error(send, e, [*headers, _overhead(ex)])

    def _record(self, ex: Exchange) -> bool:
        """Spool the request's usage once; False only when it could not be made durable."""
        if self.usage is None or ex.recorded or ex.model is None:
            return True
        ex.recorded = True
        # Positional (field order): a third of the cost of sixteen keywords, once per request.
        record = UsageRecord(
            ex.request_id,
            ex.ts,
            ex.key_id,
            ex.model,
            ex.deployment,
            ex.prompt_tokens,
            ex.completion_tokens,
            ex.cost,
            rounded((time.perf_counter() - ex.started) * 1000, 1000),
            ex.status,
            ex.estimated,
            ex.stream,
            ex.user,
            ex.session_id,
            ex.collection,
            self.instance,
        )
        if self.usage.record(record):
            return True
        ex.recorded = False  # the error answer that follows is recorded if the disk allows
        return False

    def _reservation(
        self,
        router: Router,
        key: ApiKey,
        req: ChatCompletionRequest,
        body_size: int,
        needs: Needs,
    ) -> Reservation:
        """What the request holds of its key's limits until it settles (ailb.ratelimit.reserve)."""
        return reservation(
            prompt_ceiling(req.messages, body_size),
            max(req.max_tokens or 0, req.max_completion_tokens or 0),
            req.n or 1,
            self._terms.get(router.models(), req.model),
            needs.prompt_tokens,
            key.budget_usd is not None,
        )

    async def _fund_context(
        self,
        router: Router,
        principal: Principal,
        req: ChatCompletionRequest,
        request_id: str,
        granted: Grant,
        reserved: Reservation,
        upstream_body: dict[str, Any],
        before: list[Any],
        needs: Needs,
    ) -> tuple[Needs, Granted]:
        """Context the gateway added (memory, RAG) costs prompt tokens the admission did not
        see. An answer whose length the gateway set gives them up; otherwise the key's budget
        must hold them too (a second reservation), or the request is refused."""
        assert self.limits is not None
        added = context_bytes(before, upstream_body["messages"])
        extra = granted.extra
        if extra:
            flex = reserved.flex
            assert flex is not None
            left = extra - added
            left -= left % flex.step
            if left < flex.least:
                raise RateLimited(
                    "The context added to this request (memory, RAG) leaves no room for an "
                    "answer within this API key's limits; retry later or ask for less.",
                    code="budget_exceeded",
                    headers={"retry-after": "60"},
                )
            return _cap_answer(upstream_body, needs, left // flex.step), NOTHING
        key = principal.key
        terms = self._terms.get(router.models(), req.model)
        priced = terms is not None and key is not None and key.budget_usd is not None
        usd = added * terms.input_per_token if priced and terms is not None else 0.0
        return needs, await self.limits.top_up(principal, request_id, added, usd)

    async def _retrieve(
        self,
        scope: Scope,
        req: ChatCompletionRequest,
        upstream_body: dict[str, Any],
        needs: Needs,
        headers: list[tuple[bytes, bytes]],
        ex: Exchange,
        router: Router,
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
            router.context_window(req.model), needs.prompt_tokens, needs.max_tokens
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
        # The status line and first frames leave now: the first byte's time and overhead.
        ex.ttft = time.perf_counter() - ex.started
        headers = [*SSE_HEADERS, *headers, _overhead(ex, ex.ttft)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

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
        accounted = False
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
                _account(ex, dep, usage, needs, None, streamed_chars=chars)
                accounted = True
                self._record(ex)  # durable before the stream's last frame
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
                if self.runtime.draining and not state["disconnected"] and main is not None:
                    # AILB_SHUTDOWN_GRACE ran out and the server cancels what is left: an
                    # explicit error ends the stream (never [DONE]), not a cut connection.
                    main.uncancel()
                    ex.error = "gateway_shutting_down"
                    await send(
                        {
                            "type": "http.response.body",
                            "more_body": False,
                            "body": stream_error_frame(
                                "The gateway is shutting down; the answer is incomplete.",
                                "gateway_shutting_down",
                            ),
                        }
                    )
                elif not state["disconnected"] or main is None:
                    raise
                else:
                    main.uncancel()
                    ex.error = "client_disconnected"
        finally:
            state["finished"] = True
            if ex.messages is not None and pieces is not None:  # AILB_LOG_CONTENT: as delivered
                ex.answer = "".join(pieces)
            dep.end()
            if not watcher.done():
                watcher.cancel()
            await opened.rest.aclose()
            if not accounted:
                _account(ex, dep, usage, needs, None, streamed_chars=chars)
        return "".join(pieces) if complete and pieces is not None else None


def _overhead(ex: Exchange, elapsed: float | None = None) -> tuple[bytes, bytes]:
    """The gateway's own time so far -- arrival to now minus the time in upstream attempts --
    noted for the metrics and sent as a header (for streams: up to the first byte)."""
    if elapsed is None:
        elapsed = time.perf_counter() - ex.started
    overhead = elapsed - ex.upstream
    ex.overhead = overhead
    return (OVERHEAD_HEADER, b"%.3f" % (overhead * 1000))


def route_limited(model: str, wait: float) -> RateLimited:
    retry = str(max(1, math.ceil(wait)))
    err = RateLimited(
        f"Rate limit reached for model `{model}` on this gateway (requests per second set by "
        f"the control plane). Retry after {retry} s.",
        code="rate_limit_exceeded",
        headers={"retry-after": retry},
    )
    err.reason = "route_requests"  # the metrics' label
    return err


def _cap_answer(upstream_body: dict[str, Any], needs: Needs, each: int) -> Needs:
    """The answer's limit, set by the gateway: the current name of the field (providers give
    it the name their upstream reads)."""
    upstream_body["max_completion_tokens"] = each
    return replace(needs, max_tokens=each)


def _permit(principal: Principal, req: ChatCompletionRequest) -> None:
    key = principal.key
    if key is None:
        return  # the master key, or an open gateway
    if key.models is not None and not principal.may_use_model(req.model):
        raise PermissionDenied(
            f"This API key may not use the model `{req.model}`.",
            param="model",
            code="model_not_allowed",
        )
    if req.rag_collection is not None and not principal.may_use_collection(req.rag_collection):
        raise PermissionDenied(
            f"This API key may not use the collection `{req.rag_collection}`.",
            param="rag_collection",
            code="collection_not_allowed",
        )


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
        ex.estimated = True
    ex.prompt_tokens, ex.completion_tokens = prompt, completion
    ex.cost = dep.record_usage(prompt, completion)
