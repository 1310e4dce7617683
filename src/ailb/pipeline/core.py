"""The request pipeline every inbound API shares: a face decodes its wire format into a `Call`
(OpenAI chat terms), the pipeline admits it, adds context, routes it and settles it; the face
encodes what comes back into its own format.

    begin → accept → prepare (admit → augment → route) → complete | open_stream + relay → end
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ailb.api.schemas import AILB_FIELDS, ChatCompletionRequest
from ailb.asgi import ARRIVED
from ailb.auth.authenticator import OPEN
from ailb.auth.principal import SCOPE_KEY
from ailb.billing.usage import UsageRecorder
from ailb.embeddings import LocalEmbedder
from ailb.errors import APIError, RateLimited, ServiceUnavailable
from ailb.memory.service import MemoryService
from ailb.observability.access_log import AccessLog
from ailb.pipeline.accounting import Ledger, account
from ailb.pipeline.admission import Admission
from ailb.pipeline.call import Call
from ailb.pipeline.context import Context
from ailb.pipeline.exchange import Exchange, new_request_id
from ailb.pipeline.local_embeddings import embed_locally, local_request
from ailb.providers.embeddings import input_items
from ailb.rag.service import RagService
from ailb.ratelimit.policy import DeploymentGate, LimitPolicy
from ailb.ratelimit.reserve import COMPLETION_ESTIMATE
from ailb.routing.failover import Complete, OpenStream, Stream, embed
from ailb.routing.router import Needs
from ailb.runtime import Runtime

log = logging.getLogger("ailb.pipeline")

IMAGE_TOKENS = 850  # what one high-detail image costs in OpenAI's accounting, roughly


def unrecordable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Usage cannot be recorded right now (the gateway's disk is full); the "
        "answer is withheld rather than left unbilled. Please retry.",
        code="usage_unrecordable",
    )


def embedding_needs(value: Any) -> Needs:
    """An embeddings request's routing needs: its prompt estimate (about four characters a
    token; token ids are counted as they are)."""
    tokens = 0
    for item in input_items(value):
        tokens += (len(item) + 3) // 4 if isinstance(item, str) else len(item)
    return Needs(embedding=True, prompt_tokens=tokens)


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


class Pipeline:
    def __init__(
        self,
        runtime: Runtime,
        access_log: AccessLog,
        memory: MemoryService | None = None,
        rag: RagService | None = None,
        limits: LimitPolicy | None = None,
        usage: UsageRecorder | None = None,
        instance: str = "",
        encoder: LocalEmbedder | None = None,
    ) -> None:
        # Its `live` configuration is read once per request: a reload swaps it, and the request
        # keeps the one it started with (ailb.live).
        self.runtime = runtime
        self.access_log = access_log
        self.limits = limits
        self.admission = Admission(limits, runtime.routes)
        self.context = Context(memory, rag)
        self.ledger = Ledger(usage, instance)
        # The local embedder of memory and RAG, served as a model of its own name on
        # /v1/embeddings (unless a deployment serves that name).
        self.encoder = encoder

    def begin(self, scope: Any) -> Call:
        ex = Exchange(new_request_id(), scope.get(ARRIVED))
        principal = scope.get(SCOPE_KEY) or OPEN
        ex.key_id = principal.key_id
        live = self.runtime.live
        live.requests += 1
        self.runtime.metrics.in_flight += 1
        return Call(ex, principal, live, scope)

    def accept(
        self, call: Call, req: ChatCompletionRequest, raw: dict[str, Any], size: int
    ) -> None:
        """The decoded request: `raw` is its JSON object in OpenAI chat terms, `size` the bytes
        the client sent (what the admission reserves against)."""
        ex = call.ex
        call.req = req
        call.body_size = size
        call.messages = raw["messages"]
        call.body = {k: v for k, v in raw.items() if k not in AILB_FIELDS}
        call.needs = request_needs(req)
        ex.model = req.model
        ex.stream = bool(req.stream)
        ex.user, ex.session_id, ex.collection = req.user, req.session_id, req.rag_collection
        if call.live.settings.env.log_content:
            ex.messages = raw["messages"]

    async def prepare(self, call: Call) -> None:
        """Admit, augment, route: after it the call has a plan and holds its reservation."""
        req = call.req
        assert req is not None
        router = call.live.router
        await self.admission.admit(call, router)
        needs = call.needs
        assert needs is not None
        if call.live.gated and self.limits is not None:
            completion = needs.max_tokens * (req.n or 1) or COMPLETION_ESTIMATE
            call.gate = DeploymentGate(
                self.limits, call.ex.request_id, needs.prompt_tokens + completion
            )
        named = req.session_id is not None or req.rag_collection is not None  # most name neither
        if named and self.context.wanted(call):
            before = call.body["messages"]
            await self.context.add(call, router)
            if call.reserved is not None and call.body["messages"] is not before:
                await self.admission.fund_context(call, router, before)
        assert call.needs is not None
        call.ex.plan = router.plan(req.model, call.needs, req.session_id)

    async def complete(self, call: Call, op: Complete | None = None) -> dict[str, Any]:
        """The whole answer, accounted and durably recorded (or no answer at all). `op`: what
        each attempt runs instead of the provider's chat call (it answers in chat terms, or
        at least with chat `usage`)."""
        ex, plan = call.ex, call.ex.plan
        assert plan is not None and call.needs is not None
        waited = time.perf_counter()
        try:
            result, dep, ex.attempts = await call.live.failover.complete(
                plan, call.body, ex.request_id, call.gate, op
            )
        finally:
            ex.upstream = time.perf_counter() - waited
        ex.deployment = dep.name
        ex.provider = dep.config.provider
        account(ex, dep, result.get("usage"), call.needs, result)
        ex.status = 200
        if not self.ledger.record(ex):  # durable before the client sees the answer
            raise unrecordable()
        return result

    async def open_stream(self, call: Call, op: Stream | None = None) -> OpenStream:
        """The upstream stream, open with its first batch: from here the status is 200. `op`:
        what each attempt runs instead of the provider's `stream` (its chunks carry chat
        `usage` and text deltas, for the accounting and memory)."""
        ex, plan = call.ex, call.ex.plan
        assert plan is not None
        waited = time.perf_counter()
        try:
            opened = await call.live.failover.open_stream(
                plan, call.body, ex.request_id, call.gate, op
            )
        finally:
            ex.upstream = time.perf_counter() - waited
        ex.deployment = opened.deployment.name
        ex.provider = opened.deployment.config.provider
        ex.attempts = opened.attempts
        ex.status = 200
        return opened

    def accept_embedding(self, call: Call, raw: dict[str, Any], size: int) -> None:
        """A validated embeddings request (OpenAI's body): upstreams are always asked for
        floats, the face encodes what the client asked for."""
        ex = call.ex
        ex.api = "embeddings"
        call.body_size = size
        call.body = {**raw, "encoding_format": "float"}
        call.needs = embedding_needs(raw["input"])
        ex.model, ex.user = raw["model"], raw.get("user")
        if call.live.settings.env.log_content:
            ex.messages = raw["input"]

    async def embed(self, call: Call) -> dict[str, Any]:
        """Admit, route (or encode locally), settle: the OpenAI embeddings answer, in input
        order, accounted and durably recorded."""
        ex, router, needs = call.ex, call.live.router, call.needs
        assert ex.model is not None and needs is not None
        # No answer tokens (choices 0): the reservation is the prompt's ceiling alone.
        await self.admission.admit_for(call, router, ex.model, None, ex.user, call.body_size, 0, 0)
        encoder = self.encoder
        waited = time.perf_counter()
        if encoder is not None and ex.model == encoder.name and ex.model not in router.models():
            texts = local_request(encoder, call.body)
            try:
                result, ex.prompt_tokens = await embed_locally(encoder, texts)
            finally:
                ex.upstream = time.perf_counter() - waited
            ex.deployment = ex.provider = "local"
        else:
            if call.live.gated and self.limits is not None:
                call.gate = DeploymentGate(self.limits, ex.request_id, needs.prompt_tokens)
            plan = ex.plan = router.plan(ex.model, needs)
            try:
                result, dep, ex.attempts = await call.live.failover.complete(
                    plan, call.body, ex.request_id, call.gate, embed
                )
            finally:
                ex.upstream = time.perf_counter() - waited
            ex.deployment = dep.name
            ex.provider = dep.config.provider
            account(ex, dep, result.get("usage"), needs, None)
            if "usage" not in result:  # the upstream reported none: the estimate, as billed
                result["usage"] = {
                    "prompt_tokens": ex.prompt_tokens,
                    "total_tokens": ex.prompt_tokens,
                }
        ex.status = 200
        if not self.ledger.record(ex):
            raise unrecordable()
        return result

    def remember(self, call: Call, answer: str) -> None:
        self.context.remember(call, call.messages, answer)

    def refused(self, call: Call, err: APIError) -> None:
        """A refusal the face answers in its own error shape: noted and recorded here."""
        ex = call.ex
        ex.status, ex.error = err.status, err.code or err.type
        self.ledger.record(ex)
        if err.status == 429:
            self.runtime.metrics.rate_limited_by(
                err.code, err.reason if isinstance(err, RateLimited) else None
            )

    def crashed(self, call: Call) -> None:
        ex = call.ex
        log.exception("unhandled_error", extra={"request_id": ex.request_id})
        ex.status, ex.error = 500, "internal_error"
        self.ledger.record(ex)

    def end(self, call: Call) -> None:
        """Settle: metrics, the ledger, the limits' reservations, the access log."""
        ex = call.ex
        self.runtime.metrics.finish(ex)
        call.live.requests -= 1  # done with the upstream: its configuration may be retired
        if not ex.recorded:
            self.ledger.record(ex)
        self.admission.settle(call)
        if call.gate is not None:
            call.gate.settle(ex.deployment, ex.prompt_tokens + ex.completion_tokens)
        if self.access_log.enabled:
            self.access_log.write("request", ex.log_fields())
