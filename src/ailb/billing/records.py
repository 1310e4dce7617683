"""What one request leaves in the usage ledger, and how the ledger is asked about it."""

from __future__ import annotations

from typing import Literal

import msgspec

GroupBy = Literal["key", "model", "day"]


class UsageRecord(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One request, as billed. Tokens are the provider's figures unless `estimated`.
    Serialised as an array in field order (compact and quick); made with keywords everywhere
    but on the hot path. Not tracked by the garbage collector (`gc=False`: it holds only
    strings and numbers, so it can never be part of a cycle): a second's records wait in
    memory for the ledger, and as tracked objects they set off a collection every few hundred
    requests, which cost more than recording them."""

    request_id: str  # unique: writing the same record twice keeps one
    ts: float  # Unix seconds (UTC) when the request started
    key_id: str  # the AILB key id; "master" or "anonymous" without a key record
    model: str
    deployment: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    status: int
    estimated: bool = False
    stream: bool = False
    user: str | None = None  # the request's `user` field
    session_id: str | None = None
    collection: str | None = None
    instance: str = ""
    api: str = "chat"  # the inbound API (face) it came through: chat, responses, messages ...


# A record's MessagePack encoding: what the spool holds and the embedded ledger stores as it is,
# so both must use this one.
encode_record = msgspec.msgpack.Encoder().encode


class UsageQuery(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str | None = None
    model: str | None = None
    from_ts: float | None = None  # inclusive
    to_ts: float | None = None  # exclusive
    group_by: tuple[GroupBy, ...] = ()
    limit: int = 1000


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    """One group of a usage query (one row in all when nothing is grouped)."""

    key_id: str | None = None
    model: str | None = None
    day: str | None = None  # YYYY-MM-DD, UTC
    requests: int = 0
    errors: int = 0  # status >= 400
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
