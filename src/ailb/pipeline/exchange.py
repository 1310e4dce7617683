"""The facts of one request, filled in as it goes through the pipeline: logged once at the end,
folded into the metrics, and written to the usage ledger."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ailb.auth.identity import ANONYMOUS
from ailb.routing.router import Plan

OVERHEAD_HEADER = b"x-ailb-overhead-ms"


def new_request_id() -> str:
    # Time-ordered ids: sortable for people, and appended (not scattered) in ledger indexes.
    return f"req_{time.time_ns():016x}{os.urandom(6).hex()}"


def rounded(x: float, scale: int) -> float:
    """x to 1/scale, half up: round(x, n) goes through decimal strings (about 2,000 machine
    instructions, several times per request); k / scale is the double nearest that decimal."""
    return math.floor(x * scale + 0.5) / scale


class Exchange:
    __slots__ = (
        "answer",
        "api",
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
        self.api = "chat"  # the face: chat, responses, messages, completions, embeddings
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
            "api": self.api,
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


def overhead(ex: Exchange, elapsed: float | None = None) -> tuple[bytes, bytes]:
    """The gateway's own time so far -- arrival to now minus the time in upstream attempts --
    noted for the metrics and sent as a header (for streams: up to the first byte)."""
    if elapsed is None:
        elapsed = time.perf_counter() - ex.started
    spent = elapsed - ex.upstream
    ex.overhead = spent
    return (OVERHEAD_HEADER, b"%.3f" % (spent * 1000))
