"""Where keys, the usage ledger and stored Responses API responses live: SQLite (embedded
default) or PostgreSQL (shared).

Both engines implement `Store`; the gateway never knows which one it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from ailb.auth.keys import ApiKey
from ailb.billing.records import UsageQuery, UsageRecord, UsageRow


def usage_row(labels: dict[str, Any], totals: Sequence[Any]) -> UsageRow:
    """One row of a usage query from its group labels and its five aggregates, in the order both
    engines select them: requests, errors, prompt tokens, completion tokens, cost."""
    requests, errors, prompt, completion, cost = totals
    return UsageRow(
        **labels,
        requests=int(requests),
        errors=int(errors),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        cost_usd=float(cost),
    )


class StoredResponse(NamedTuple):
    """One Responses API response's document (ailb.api.responses.store), for its owner."""

    id: str
    owner: str
    expires: float
    doc: bytes


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the operation; the message names it.
    `transient`: worth waiting for (unreachable, starting up, out of connections), as opposed
    to a configuration error (wrong password, unknown database or role, missing rights)."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class Store(Protocol):
    async def open(self) -> None:
        """Connect and create the schema if missing (idempotent)."""

    async def close(self) -> None: ...

    # --- keys -------------------------------------------------------------------------------

    async def insert_key(self, key: ApiKey) -> int:
        """Add a new key; returns its change sequence number."""

    async def update_key(self, key: ApiKey) -> int:
        """Replace the stored record with the same id; returns its new change sequence."""

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def keys_changed_since(self, seq: int) -> tuple[int, list[ApiKey]]:
        """Keys inserted or updated after change sequence `seq` (by any process sharing the
        database), and the highest sequence now stored (`seq` itself when nothing changed)."""

    # --- usage ledger -----------------------------------------------------------------------

    async def insert_usage(
        self, records: Sequence[UsageRecord], batch: str, encoded: Sequence[bytes] | None = None
    ) -> int:
        """Append a batch of records (a spool segment: `batch` names it uniquely) in one
        transaction; a batch written before changes nothing. Returns how many records were
        new (PostgreSQL also skips any request_id already stored, whatever its batch).
        `encoded`: each record's MessagePack encoding, when the caller has it (the spool's),
        which the embedded ledger stores as it is."""

    async def query_usage(self, query: UsageQuery) -> list[UsageRow]: ...

    async def spent_since(
        self, since: float, key_id: str | None = None
    ) -> dict[str, tuple[float, int]]:
        """key id -> (cost in USD, prompt + completion tokens) of records with ts >= since."""

    # --- Responses API state (ailb.api.responses.store) -------------------------------------

    async def put_responses(self, items: Sequence[StoredResponse]) -> None:
        """Keep each document until its `expires` (epoch seconds), in one transaction (an id
        stored before is replaced); expired documents go."""

    async def get_response(self, response_id: str, owner: str, now: float) -> bytes | None:
        """The document, if `owner` stored it and it has not expired by `now`."""

    async def delete_response(self, response_id: str, owner: str, now: float) -> bool:
        """Whether a live document of `owner`'s was there (and is gone now)."""
