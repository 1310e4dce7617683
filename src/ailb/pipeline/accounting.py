"""Settling a request: tokens and cost from the provider's figures (or the documented estimate),
and the usage record, durable before the client sees an answer."""

from __future__ import annotations

import time
from typing import Any

from ailb.billing.records import UsageRecord
from ailb.billing.usage import UsageRecorder
from ailb.pipeline.exchange import Exchange, rounded
from ailb.routing.deployment import DeploymentState
from ailb.routing.router import Needs


def account(
    ex: Exchange,
    dep: DeploymentState,
    usage: Any,
    needs: Needs,
    result: dict[str, Any] | None,
    streamed_chars: int = 0,
) -> None:
    """Tokens and cost: the provider's figures, else the documented estimate (about four
    characters a token, of what was actually delivered)."""
    cached = written = 0
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        prompt = usage["prompt_tokens"]
        completion = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        if details:  # cache reads (and Anthropic's cache writes) are priced on their own
            cached = details.get("cached_tokens") or 0
            written = details.get("cache_write_tokens") or 0
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
    ex.cost = dep.record_usage(ex.model or "", prompt, completion, cached, written)


class Ledger:
    """Writes each request's usage record once (the spool makes it durable)."""

    def __init__(self, usage: UsageRecorder | None, instance: str) -> None:
        self.usage = usage
        self.instance = instance

    def record(self, ex: Exchange) -> bool:
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
            ex.api,
        )
        if self.usage.record(record):
            return True
        ex.recorded = False  # the error answer that follows is recorded if the disk allows
        return False
