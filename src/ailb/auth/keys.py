"""API keys: the record kept per key, and the secrets handed out once.

A secret reads `sk-ailb-<id>-<token>`: the id finds the record without scanning, the token is
32 random bytes. Only SHA-256 of the whole secret is stored; a presented secret is hashed and
compared with `hmac.compare_digest`, so neither a database dump nor response timing gives a key
away.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Literal

import msgspec

SECRET_PREFIX = "sk-ailb-"  # noqa: S105 - the format, not a secret
BudgetPeriod = Literal["day", "month", "total"]


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """One key as stored. Times are Unix seconds (UTC)."""

    id: str
    name: str
    hash: str  # sha256 hex of the current secret
    prefix: str  # the secret's first characters, to recognise it in lists
    models: tuple[str, ...] | None = None  # allowed models (fnmatch patterns); None: all
    collections: tuple[str, ...] | None = None  # allowed RAG collections; None: all of its own
    admin: bool = False
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    user_rpm_limit: int | None = None  # per distinct `user` field under this key
    user_tpm_limit: int | None = None
    budget_usd: float | None = None
    token_budget: int | None = None  # prompt + completion tokens per budget_period
    budget_period: BudgetPeriod = "month"
    expires_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    revoked_at: float | None = None
    previous_hash: str | None = None  # the secret before the last rotation ...
    previous_expires_at: float | None = None  # ... accepted until then
    signing_secret: str | None = None  # set: requests must carry an HMAC signature
    version: int = 1  # bumped on every change

    def active(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_id() -> str:
    return secrets.token_hex(8)


def new_secret(key_id: str) -> str:
    return f"{SECRET_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"


def key_id_of(secret: str) -> str | None:
    """The id a well-formed secret names; None for anything else (never a lookup)."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    key_id, sep, token = secret[len(SECRET_PREFIX) :].partition("-")
    if not sep or len(key_id) != 16 or len(token) < 32:
        return None
    try:
        int(key_id, 16)
    except ValueError:
        return None
    return key_id


def display_prefix(secret: str) -> str:
    return secret[: len(SECRET_PREFIX) + 20] + "…"


def matches(key: ApiKey, secret: str, now: float) -> bool:
    """The secret is this key's current one, or its previous one within the grace period."""
    digest = hash_secret(secret)
    if hmac.compare_digest(digest, key.hash):
        return True
    return (
        key.previous_hash is not None
        and key.previous_expires_at is not None
        and now < key.previous_expires_at
        and hmac.compare_digest(digest, key.previous_hash)
    )
