"""Trying a plan's deployments in turn until one answers, within a deadline and attempt budget.

Streams may fail over freely until their first batch exists; after that the caller owns the
stream and a failure can only be reported to the client (DESIGN §3). With hedging on for a
model, a second deployment is asked when the first has not answered within its recent p95; the
first answer wins and the other attempt is cancelled (both are counted).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ailb.errors import APIError, RateLimited, UpstreamTimeout, UpstreamUnavailable
from ailb.providers.base import ChunkBatch, UnsupportedFeature, UpstreamError
from ailb.routing.deployment import DeploymentState
from ailb.routing.retry_budget import RetryBudget
from ailb.routing.router import Plan, Target

log = logging.getLogger("ailb.routing")

Call = Callable[[Target, dict[str, Any]], Awaitable[Any]]
# What an attempt runs instead of the provider's chat call (a face that passes its own wire
# format through to deployments that speak it): given the target and the chat body.
Complete = Callable[[Target, dict[str, Any]], Awaitable[dict[str, Any]]]
Stream = Callable[[Target, dict[str, Any]], AsyncGenerator[ChunkBatch, None]]
# A deployment's own rpm/tpm check before an attempt: None to go ahead, else seconds until it
# has room (the attempt is skipped: another deployment is tried, or the request waits briefly).
Gate = Callable[[DeploymentState], Awaitable[float | None]]
MIN_HEDGE_SAMPLES = 20
MAX_CAPACITY_WAIT_S = 2.0


@dataclass(slots=True)
class OpenStream:
    """A stream whose first batch arrived: from here on it belongs to the client, who must call
    `deployment.end()` when it is over (the deployment counts it in flight until then)."""

    deployment: DeploymentState
    first: ChunkBatch
    rest: AsyncGenerator[ChunkBatch, None]
    started: float
    ttft: float
    attempts: int


class _Attempts:
    """Bookkeeping of one request's attempts: errors seen, budget, deadline."""

    __slots__ = ("count", "deadline", "errors", "failed", "full", "held", "unsupported", "waited")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.count = 0
        self.errors: list[UpstreamError] = []
        self.failed: set[str] = set()  # deployments that failed this request
        self.unsupported: UnsupportedFeature | None = None
        self.full: list[float] = []  # waits of deployments skipped for their own rate limits
        self.held = False  # a slot of the retry budget, for the next (or current) attempt
        self.waited = False  # a Retry-After was waited out: once per request at most


class Failover:
    def __init__(
        self,
        *,
        max_attempts: int = 4,
        request_timeout: float = 600.0,
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_attempts = max_attempts
        self.request_timeout = request_timeout
        # Shared by every request (and carried over by reloads): see ailb.routing.retry_budget.
        self.budget = budget if budget is not None else RetryBudget()
        self._clock = clock

    async def complete(
        self,
        plan: Plan,
        body: dict[str, Any],
        request_id: str,
        gate: Gate | None = None,
        operation: Call | None = None,
    ) -> tuple[dict[str, Any], DeploymentState, int]:
        """The first successful answer: (chat.completion, deployment, attempts). `operation`
        is what an attempt asks of a deployment (default: a chat completion; `embed`, a face's
        pass-through)."""
        result, target, attempts, started = await self._run(
            plan, body, request_id, operation or _complete, False, gate=gate
        )
        d = target.deployment
        d.end()
        d.record_success(time.perf_counter() - started)
        return result, d, attempts

    async def open_stream(
        self,
        plan: Plan,
        body: dict[str, Any],
        request_id: str,
        gate: Gate | None = None,
        op: Stream | None = None,
    ) -> OpenStream:
        """`op`: what each attempt runs instead of the provider's `stream`."""

        async def call(target: Target, payload: dict[str, Any]) -> tuple[Any, ChunkBatch]:
            if op is not None:
                gen = op(target, payload)
            else:
                gen = target.deployment.provider.stream(payload)
            try:
                first = await anext(gen)
            except StopAsyncIteration:
                raise UpstreamError("protocol", "empty stream") from None
            except BaseException:
                await gen.aclose()
                raise
            return gen, first

        (gen, first), target, attempts, started = await self._run(
            plan, body, request_id, call, True, discard=_close_stream, gate=gate
        )
        return OpenStream(
            deployment=target.deployment,
            first=first,
            rest=gen,
            started=started,
            ttft=time.perf_counter() - started,
            attempts=attempts,
        )

    # --- sequential attempts ----------------------------------------------------------------

    async def _run(
        self,
        plan: Plan,
        body: dict[str, Any],
        request_id: str,
        call: Call,
        stream: bool,
        discard: Callable[[Any], Awaitable[None]] | None = None,
        gate: Gate | None = None,
    ) -> tuple[Any, Target, int, float]:
        state = _Attempts(self._clock() + self.request_timeout)
        self.budget.begin()
        try:
            while True:
                try:
                    if plan.hedging and len(plan) > 1:
                        return await self._run_hedged(
                            plan, body, request_id, call, stream, state, discard, gate
                        )
                    return await self._run_sequential(plan, body, request_id, call, state, gate)
                except _AllFull:
                    # Every deployment is at its own rate limit: wait for the first to have
                    # room when that is soon, else tell the client when to come back.
                    wait = min(state.full)
                    state.full.clear()
                    if wait > MAX_CAPACITY_WAIT_S or self._clock() + wait >= state.deadline:
                        raise RateLimited(
                            "Every deployment of this model is at its rate limit; retry after "
                            "the indicated time.",
                            code="deployment_rate_limited",
                            headers={"retry-after": str(max(1, math.ceil(wait)))},
                        ) from None
                    await asyncio.sleep(wait)
        finally:
            if state.held:
                self._release(state)
            self.budget.end()

    async def _run_sequential(
        self,
        plan: Plan,
        body: dict[str, Any],
        request_id: str,
        call: Call,
        state: _Attempts,
        gate: Gate | None,
    ) -> tuple[Any, Target, int, float]:
        i = 0
        while i < len(plan) and state.count < self.max_attempts:
            target = plan.target(i)
            d = target.deployment
            remaining = state.deadline - self._clock()
            if remaining <= 0:
                break
            if gate is not None:
                wait = await gate(d)
                if wait is not None:
                    state.full.append(wait)
                    i += 1
                    continue
            # A first attempt, or one after a retry slot is held, always goes (_may_retry).
            if state.errors and not state.held and not self._may_retry(plan, state, request_id, d):
                break
            state.count += 1
            started = time.perf_counter()
            d.begin()
            try:
                if remaining < d.config.timeouts.total:
                    async with asyncio.timeout(remaining):
                        result = await call(target, {**body, "model": target.upstream_model})
                else:  # the deployment's own total timeout ends it first: skip a timer
                    result = await call(target, {**body, "model": target.upstream_model})
            except UnsupportedFeature as e:
                d.end()
                state.unsupported = e  # another provider of the model may support it
                i += 1
                continue
            except UpstreamError as e:
                err = e
            except TimeoutError:
                err = UpstreamError("timeout", "request deadline reached")
            except BaseException:
                d.end()
                raise
            else:
                # Still in flight: the caller ends it when the answer is delivered.
                return result, target, state.count, started
            finally:
                if state.held:  # a retry's slot is over with its attempt
                    self._release(state)
            d.end()
            self._failed(plan, target, err, state, request_id)
            if await self._wait_out_429(plan, i, err, state):
                continue  # same deployment again, after its Retry-After
            i += 1
            if i < len(plan) and state.count < self.max_attempts:
                to = plan.target(i).deployment.name
                d.failovers[(plan.model, to, err.label)] += 1
                log.info(
                    "failover",
                    extra={
                        "request_id": request_id,
                        "model": plan.model,
                        "from": d.name,
                        "to": to,
                        "error": err.label,
                    },
                )
        raise self._final(state)

    def _failed(
        self, plan: Plan, target: Target, err: UpstreamError, state: _Attempts, request_id: str
    ) -> None:
        d = target.deployment
        ejected = d.record_failure(err)
        state.errors.append(err)
        state.failed.add(d.name)
        log.warning(
            "upstream_failure",
            extra={
                "request_id": request_id,
                "deployment": d.name,
                "model": plan.model,
                "error": err.label,
                "detail": err.message,
                "ejected": ejected,
                "attempt": state.count,
            },
        )
        if err.kind == "status" and err.status in (401, 403):
            log.error(
                "upstream_credentials_rejected", extra={"deployment": d.name, "status": err.status}
            )
        if err.client_fault:
            raise APIError(
                err.client_message or "The request was rejected by the upstream model.",
                status=err.status,
                type="invalid_request_error",
                code=err.code,
                param=err.param,
            )

    def _may_retry(self, plan: Plan, state: _Attempts, request_id: str, d: DeploymentState) -> bool:
        """Whether the next attempt, on `d`, may go out. A first attempt always, and so does a
        failover to a deployment that is up and has not failed this request: that is what the
        other deployments are for, and it adds no load to the trouble. A retry into trouble --
        the same deployment again (a 429 waited out) or one ejected, cooling down or failing
        probes (tried as a last resort) -- needs a slot of the retry budget, held to its end.
        In an outage deployments are ejected after a few failures, so from then on the budget
        bounds every retry."""
        if not state.errors or state.held:
            return True
        if d.name not in state.failed and d.available():
            return True
        if self.budget.acquire():
            state.held = True
            return True
        log.info(
            "retry_budget_exhausted",
            extra={
                "request_id": request_id,
                "model": plan.model,
                "active_requests": self.budget.active,
                "retries_in_progress": self.budget.retrying,
            },
        )
        return False

    def _release(self, state: _Attempts) -> None:
        if state.held:
            state.held = False
            self.budget.release()

    async def _wait_out_429(self, plan: Plan, i: int, err: UpstreamError, state: _Attempts) -> bool:
        """With no other deployment left, waiting out an upstream's 429 is the answer -- once
        per request, when the wait fits the deadline (the attempt after it needs the retry
        budget). A second 429 goes to the client with its Retry-After: its SDK waits and
        retries on its own, and waiting here again would multiply the upstream calls of every
        client retry."""
        if not (err.kind == "status" and err.status == 429 and err.retry_after is not None):
            return False
        if state.waited or i != len(plan) - 1 or state.count >= self.max_attempts:
            return False
        if self._clock() + err.retry_after >= state.deadline:
            return False
        state.waited = True
        # No budget slot held while waiting (that costs the upstream nothing): the attempt
        # after the wait asks for one, and without it the client gets this 429.
        await asyncio.sleep(err.retry_after)
        return True

    def _final(self, state: _Attempts) -> Exception:
        if state.full and not state.errors:
            return _AllFull()
        if not state.errors and state.unsupported is not None:
            return state.unsupported
        return final_error(state.errors)

    # --- hedged attempts --------------------------------------------------------------------

    async def _run_hedged(
        self,
        plan: Plan,
        body: dict[str, Any],
        request_id: str,
        call: Call,
        stream: bool,
        state: _Attempts,
        discard: Callable[[Any], Awaitable[None]] | None,
        gate: Gate | None,
    ) -> tuple[Any, Target, int, float]:
        running: dict[asyncio.Task[Any], tuple[Target, float]] = {}
        retries: set[asyncio.Task[Any]] = set()  # attempts holding a retry budget slot
        next_i = 0

        def can_start() -> bool:
            return next_i < len(plan) and state.count < self.max_attempts

        async def start() -> None:
            nonlocal next_i
            target = plan.target(next_i)
            next_i += 1
            if gate is not None:
                wait = await gate(target.deployment)
                if wait is not None:
                    state.full.append(wait)
                    return
            if not self._may_retry(plan, state, request_id, target.deployment):
                next_i = len(plan)  # the budget is spent: no more attempts for this request
                return
            retry, state.held = state.held, False  # the slot goes with this attempt's task
            state.count += 1
            target.deployment.begin()
            task = asyncio.ensure_future(call(target, {**body, "model": target.upstream_model}))
            running[task] = (target, time.perf_counter())
            if retry:
                retries.add(task)

        try:
            while True:
                if not running:
                    if not can_start():
                        break
                    await start()
                    continue
                remaining = state.deadline - self._clock()
                if remaining <= 0:
                    state.errors.append(UpstreamError("timeout", "request deadline reached"))
                    break
                wait_for = remaining
                hedge_at = None
                if len(running) == 1 and can_start():
                    (only,) = running.values()
                    hedge_at = _hedge_delay(only[0].deployment, stream)
                    if hedge_at is not None:
                        elapsed = time.perf_counter() - only[1]
                        wait_for = min(remaining, max(0.0, hedge_at - elapsed))
                done, _ = await asyncio.wait(
                    running, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    if hedge_at is not None and can_start():
                        log.info(
                            "hedge",
                            extra={
                                "request_id": request_id,
                                "model": plan.model,
                                "slow": next(iter(running.values()))[0].deployment.name,
                                "to": plan.target(next_i).deployment.name,
                            },
                        )
                        await start()
                    continue
                for task in done:
                    target, started = running.pop(task)
                    if task in retries:
                        retries.discard(task)
                        self.budget.release()
                    d = target.deployment
                    exc = task.exception()
                    if exc is None:
                        return task.result(), target, state.count, started
                    d.end()
                    if isinstance(exc, UnsupportedFeature):
                        state.unsupported = exc
                        continue
                    if not isinstance(exc, UpstreamError):
                        raise exc
                    self._failed(plan, target, exc, state, request_id)
        finally:
            for _ in retries:
                self.budget.release()
            retries.clear()
            for task, (target, _) in running.items():
                # The loser of a hedge: cancelled, but it was sent and its prompt was paid for.
                task.cancel()
                target.deployment.end()
                target.deployment.record_usage(plan.model, plan.prompt_tokens, 0)
            for outcome in await asyncio.gather(*running, return_exceptions=True):
                if discard is not None and not isinstance(outcome, BaseException):
                    await discard(outcome)  # it finished too, a moment too late
        raise self._final(state)


async def _complete(target: Target, payload: dict[str, Any]) -> dict[str, Any]:
    return await target.deployment.provider.complete(payload)


async def embed(target: Target, payload: dict[str, Any]) -> dict[str, Any]:
    """The operation of an embeddings request (`Failover.complete(..., operation=embed)`)."""
    return await target.deployment.provider.embed(payload)


class _AllFull(Exception):
    """Every deployment tried was skipped for its own rate limit."""


async def _close_stream(opened: tuple[AsyncGenerator[ChunkBatch, None], ChunkBatch]) -> None:
    await opened[0].aclose()


def _hedge_delay(d: DeploymentState, stream: bool) -> float | None:
    """The deployment's recent p95 to first byte; None until it has enough history."""
    window = d.ttft if stream else d.latency
    if len(window) < MIN_HEDGE_SAMPLES:
        return None
    p95 = window.percentile(0.95)
    return None if p95 is None else max(p95, 0.005)


def final_error(errors: list[UpstreamError]) -> APIError:
    """What the client hears when no deployment answered: no provider names, no details."""
    if errors and all(e.kind == "status" and e.status == 429 for e in errors):
        wait = min((e.retry_after for e in errors if e.retry_after is not None), default=1.0)
        secs = max(1, int(wait + 0.999))
        return RateLimited(
            "The upstream models are rate limited; retry after the indicated time.",
            code="upstream_rate_limited",
            headers={"retry-after": str(secs)},
        )
    if errors and all(e.kind == "timeout" for e in errors):
        return UpstreamTimeout(
            "The upstream model did not answer in time.", code="upstream_timeout"
        )
    return UpstreamUnavailable(
        "No upstream model could answer the request; please retry.", code="upstream_error"
    )
