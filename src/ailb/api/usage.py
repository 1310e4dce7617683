"""GET /api/usage: the usage ledger, filtered and grouped. A key sees only its own usage."""

from __future__ import annotations

import logging
import math
from datetime import UTC

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse
from ailb.api.openapi import Operation, query_param
from ailb.auth.principal import principal_of
from ailb.billing.records import UsageQuery, UsageRow
from ailb.errors import InvalidRequest, PermissionDenied, ServiceUnavailable
from ailb.runtime import Runtime
from ailb.storage import StoreUnavailable
from ailb.timefmt import parse_datetime

log = logging.getLogger("ailb.api")
GROUPS = ("key", "model", "day")
MAX_ROWS = 10_000


class UsageReport(msgspec.Struct):
    object: str
    group_by: list[str]
    data: list[UsageRow]


def _time(raw: str | None, name: str) -> float | None:
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        t = parse_datetime(raw)
    except ValueError:
        raise InvalidRequest(
            f"`{name}` must be Unix seconds, a date (2026-12-01) or an ISO 8601 time.", param=name
        ) from None
    if t.tzinfo is None:  # a bare date or time is UTC, like the ledger's days
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _query(request: Request) -> UsageQuery:
    q = request.query_params
    unknown = set(q) - {"key_id", "model", "from", "to", "group_by", "limit"}
    if unknown:
        raise InvalidRequest(f"Unknown query parameter `{sorted(unknown)[0]}`.", param="query")
    named = [g.strip() for g in (q.get("group_by") or "").split(",") if g.strip()]
    groups = tuple(dict.fromkeys(named))  # once each, in the order first named
    if any(g not in GROUPS for g in groups):
        raise InvalidRequest(
            "`group_by` is a comma-separated subset of key, model, day.", param="group_by"
        )
    limit_raw = q.get("limit", "1000")
    ascii_digits = limit_raw.isascii() and limit_raw.isdigit()  # "²".isdigit() is True
    if not ascii_digits or not 1 <= int(limit_raw) <= MAX_ROWS:
        raise InvalidRequest(f"`limit` must be 1-{MAX_ROWS}.", param="limit")
    return UsageQuery(
        key_id=q.get("key_id") or None,
        model=q.get("model") or None,
        from_ts=_time(q.get("from"), "from"),
        to_ts=_time(q.get("to"), "to"),
        group_by=groups,  # type: ignore[arg-type]
        limit=int(limit_raw),
    )


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    async def usage(request: Request) -> JSONResponse:
        query = _query(request)
        if runtime.usage is None:
            raise ServiceUnavailable(
                "Usage recording is disabled (ENABLE_USAGE=false).", code="usage_disabled"
            )
        p = principal_of(request.scope)
        if not p.admin and runtime.auth.enabled:
            if query.key_id is not None and query.key_id != p.key_id:
                raise PermissionDenied(
                    "A key can only read its own usage.", param="key_id", code="not_your_key"
                )
            query = msgspec.structs.replace(query, key_id=p.key_id)
        try:
            await runtime.usage.sync()  # include what was answered a moment ago
            if runtime.store is None:
                raise StoreUnavailable("no usage ledger")
            rows = await runtime.store.query_usage(query)
        except StoreUnavailable as e:
            log.warning("usage_ledger_unavailable", extra={"detail": str(e)})
            raise ServiceUnavailable(
                "The usage ledger is unavailable; please retry.", code="usage_unavailable"
            ) from None
        return JSONResponse(UsageReport("list", list(query.group_by), rows))

    text = {"type": "string"}
    when = {"type": "number"}  # also a date or an ISO 8601 time, which JSON Schema cannot say
    group = "(key|model|day)"
    params = [
        query_param(n, schema, d)
        for n, schema, d in (
            ("key_id", text, "Only this key (a non-admin key: only its own)"),
            ("model", text, "Only this model"),
            ("from", when, "From this time, inclusive (Unix seconds, date or ISO 8601; UTC)"),
            ("to", when, "Until this time, exclusive"),
            (
                "group_by",
                {"type": "string", "pattern": f"^({group}(,{group})*)?$"},
                "Comma-separated: key, model, day",
            ),
            (
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_ROWS},
                f"Most rows (1-{MAX_ROWS}, default 1000)",
            ),
        )
    ]
    return (
        [Route("/api/usage", usage, methods=["GET"])],
        [
            Operation(
                "GET",
                "/api/usage",
                "Requests, tokens and cost from the usage ledger, filtered and grouped",
                "Usage",
                response=UsageReport,
                errors=(400, 401, 403, 503),
                parameters=params,
            )
        ],
    )
