"""Admit: what the key may use, the control plane's per-model rate, and what the request holds
of its key's limits until it settles (ailb.ratelimit.reserve says what worst case it reserves)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ailb.auth.principal import Principal
from ailb.errors import PermissionDenied, RateLimited
from ailb.pipeline.call import Call
from ailb.ratelimit.policy import NOTHING, LimitPolicy
from ailb.ratelimit.reserve import TermsCache, context_bytes, prompt_ceiling, reservation
from ailb.ratelimit.route_bucket import RouteBuckets
from ailb.routing.router import Needs, Router


def permit(principal: Principal, model: str, collection: str | None) -> None:
    key = principal.key
    if key is None:
        return  # the master key, or an open gateway
    if key.models is not None and not principal.may_use_model(model):
        raise PermissionDenied(
            f"This API key may not use the model `{model}`.",
            param="model",
            code="model_not_allowed",
        )
    if collection is not None and not principal.may_use_collection(collection):
        raise PermissionDenied(
            f"This API key may not use the collection `{collection}`.",
            param="rag_collection",
            code="collection_not_allowed",
        )


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


def cap_answer(body: dict[str, Any], needs: Needs, each: int) -> Needs:
    """The answer's limit, set by the gateway: the current name of the field (providers give
    it the name their upstream reads)."""
    body["max_completion_tokens"] = each
    return replace(needs, max_tokens=each)


class Admission:
    def __init__(self, limits: LimitPolicy | None, routes: RouteBuckets) -> None:
        self.limits = limits
        self.routes = routes
        self._terms = TermsCache()  # what each model's deployments charge and allow

    async def admit(self, call: Call, router: Router) -> None:
        """A chat-shaped request (every face but embeddings): see `admit_for`. Written out, as
        it runs for every chat request: a request without a key, or a gateway without limits,
        computes no reservation."""
        req = call.req
        assert req is not None
        principal = call.principal
        key = principal.key
        if key is not None:
            permit(principal, req.model, req.rag_collection)
        if self.routes.active:
            self._route(router, req.model)
        if self.limits is None or key is None:  # no key (master, open): no limits
            return
        await self._reserve(
            call,
            router,
            req.model,
            req.user,
            prompt_ceiling(req.messages, call.body_size),
            max(req.max_tokens or 0, req.max_completion_tokens or 0),
            req.n or 1,
        )

    async def admit_for(
        self,
        call: Call,
        router: Router,
        model: str,
        collection: str | None,
        user: str | None,
        ceiling: int,
        answer_limit: int,
        choices: int,
    ) -> None:
        """Refuses what the key may not do or has no room for; otherwise the request holds its
        reservation (`call.granted`) until it settles. `ceiling` is the most prompt tokens the
        request can cost, `answer_limit` the client's limit on each of `choices` answers
        (0: none given; `choices` 0: no answer, as for embeddings)."""
        principal = call.principal
        permit(principal, model, collection)
        if self.routes.active:
            self._route(router, model)
        if self.limits is None or principal.key is None:  # no key (master, open): no limits
            return
        await self._reserve(call, router, model, user, ceiling, answer_limit, choices)

    def _route(self, router: Router, model: str) -> None:
        """The control plane's requests-per-second for the model (ApplyRateLimit)."""
        if model in router.models():
            wait = self.routes.take(model)
            if wait:
                raise route_limited(model, wait)

    async def _reserve(
        self,
        call: Call,
        router: Router,
        model: str,
        user: str | None,
        ceiling: int,
        answer_limit: int,
        choices: int,
    ) -> None:
        limits, key, principal = self.limits, call.principal.key, call.principal
        assert limits is not None and key is not None and call.needs is not None
        reserved = call.reserved = reservation(
            ceiling,
            answer_limit,
            choices,
            self._terms.get(router.models(), model),
            call.needs.prompt_tokens,
            key.budget_usd is not None,
        )
        rid = call.ex.request_id
        got = limits.admit_now(principal, rid, user, reserved.tokens, reserved.usd, reserved.flex)
        granted = call.granted = (
            got
            if got is not None
            else await limits.admit(
                principal, rid, user, reserved.tokens, reserved.usd, reserved.flex
            )
        )
        call.headers += granted.headers
        if granted.extra:  # no answer limit: the answer gets what the limits left
            call.needs = cap_answer(call.body, call.needs, granted.extra // reserved.choices)

    async def fund_context(self, call: Call, router: Router, before: list[Any]) -> None:
        """Context the gateway added (memory, RAG) costs prompt tokens the admission did not
        see. An answer whose length the gateway set gives them up; otherwise the key's budget
        must hold them too (a second reservation), or the request is refused."""
        reserved, req, needs = call.reserved, call.req, call.needs
        assert self.limits is not None and reserved is not None
        assert req is not None and needs is not None
        added = context_bytes(before, call.body["messages"])
        extra = call.granted.extra
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
            call.needs = cap_answer(call.body, needs, left // flex.step)
            return
        key = call.principal.key
        terms = self._terms.get(router.models(), req.model)
        priced = terms is not None and key is not None and key.budget_usd is not None
        usd = added * terms.input_per_token if priced and terms is not None else 0.0
        call.context_grant = await self.limits.top_up(
            call.principal, call.ex.request_id, added, usd
        )

    def settle(self, call: Call) -> None:
        limits = self.limits
        if limits is None:
            return
        ex = call.ex
        if call.granted is not NOTHING:
            limits.settle(call.granted, ex.prompt_tokens + ex.completion_tokens, ex.cost)
        if call.context_grant is not NOTHING:
            limits.settle(call.context_grant, 0, 0.0)  # what it held is in the above
