"""One request in flight through the pipeline: what a face decoded, and what each stage added."""

from __future__ import annotations

from typing import Any

from ailb.api.schemas import ChatCompletionRequest
from ailb.auth.principal import Principal
from ailb.live import LiveConfig
from ailb.pipeline.exchange import Exchange
from ailb.ratelimit.policy import NOTHING, DeploymentGate, Grant, Granted
from ailb.ratelimit.reserve import Reservation
from ailb.routing.router import Needs

Headers = list[tuple[bytes, bytes]]


class Call:
    """`req` is the request in the pipeline's own terms (OpenAI chat, whatever face it came
    through); `body` is what goes upstream: the client's fields without AILB's, plus what the
    stages add (context, the answer's limit)."""

    __slots__ = (
        "body",
        "body_size",
        "context_grant",
        "ex",
        "gate",
        "granted",
        "headers",
        "live",
        "messages",
        "needs",
        "owner",
        "principal",
        "req",
        "reserved",
        "scope",
    )

    def __init__(self, ex: Exchange, principal: Principal, live: LiveConfig, scope: Any) -> None:
        self.ex = ex
        self.principal = principal
        self.live = live
        self.scope = scope
        self.headers: Headers = [(b"x-request-id", ex.request_id.encode())]
        self.granted: Grant = NOTHING
        self.context_grant: Granted = NOTHING
        self.gate: DeploymentGate | None = None
        self.reserved: Reservation | None = None
        self.owner: str | None = None  # memory's owner, once a session is read
        self.req: ChatCompletionRequest | None = None
        self.body: dict[str, Any] = {}
        self.messages: list[Any] = []  # the client's own, as sent (memory stores these)
        self.body_size = 0
        self.needs: Needs | None = None
