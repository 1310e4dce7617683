"""Creating, changing, rotating and revoking keys: the one path the admin API and the CLI share."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ailb.auth.audit import AuditLog
from ailb.auth.keyring import KeyRing
from ailb.auth.keys import ApiKey, display_prefix, hash_secret, new_key_id, new_secret
from ailb.errors import InvalidRequest
from ailb.ratelimit import Admitter
from ailb.storage import Store
from ailb.timefmt import parse_datetime

PositiveInt = Annotated[int, Meta(gt=0)]
Money = Annotated[float, Meta(ge=0)]
KeyName = Annotated[str, Meta(min_length=1, max_length=128)]
Pattern = Annotated[str, Meta(min_length=1, max_length=256)]
Scope = Annotated[str, Meta(pattern=r"^(admin|collection:\S{1,256})\Z")]
Period = Literal["day", "month", "total"]
DateTime = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]  # ISO 8601
Grace = Annotated[int, Meta(ge=0, le=30 * 86400)]
# A revocation is remembered in Redis longer than any instance can take to see it in the store.
REVOCATION_TTL_S = 300


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: KeyName
    models: list[Pattern] | None = None
    scopes: list[Scope] | None = None
    rpm_limit: PositiveInt | None = None
    tpm_limit: PositiveInt | None = None
    user_rpm_limit: PositiveInt | None = None
    user_tpm_limit: PositiveInt | None = None
    budget_usd: Money | None = None
    token_budget: PositiveInt | None = None
    budget_period: Period = "month"
    expires_at: float | DateTime | None = None  # Unix seconds or ISO 8601
    signed: bool = False  # require HMAC-signed requests


class KeyUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """PATCH: a field left out is unchanged; null removes a limit."""

    name: KeyName | UnsetType = UNSET
    models: list[Pattern] | UnsetType | None = UNSET
    scopes: list[Scope] | UnsetType | None = UNSET
    rpm_limit: PositiveInt | UnsetType | None = UNSET
    tpm_limit: PositiveInt | UnsetType | None = UNSET
    user_rpm_limit: PositiveInt | UnsetType | None = UNSET
    user_tpm_limit: PositiveInt | UnsetType | None = UNSET
    budget_usd: Money | UnsetType | None = UNSET
    token_budget: PositiveInt | UnsetType | None = UNSET
    budget_period: Period | UnsetType = UNSET
    expires_at: float | DateTime | UnsetType | None = UNSET


class KeyRotate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    grace_seconds: Grace | None = None


class KeyView(msgspec.Struct, kw_only=True):
    """A key as the API shows it: never a secret, never a hash."""

    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str
    models: list[str] | None
    scopes: list[str]
    rpm_limit: int | None
    tpm_limit: int | None
    user_rpm_limit: int | None
    user_tpm_limit: int | None
    budget_usd: float | None
    token_budget: int | None
    budget_period: str
    expires_at: int | None
    created_at: int
    updated_at: int
    revoked_at: int | None
    previous_key_valid_until: int | None
    signed: bool
    status: Literal["active", "revoked", "expired"]


class KeyCreated(KeyView, kw_only=True):
    key: str  # shown once
    signing_secret: str | None = None  # shown once, for keys created with signed=true


class KeyNotFound(InvalidRequest):
    status = 404

    def __init__(self, key_id: str) -> None:
        super().__init__(f"No API key with id `{key_id}`.", param="id", code="key_not_found")


def _timestamp(v: float | str | None, field: str, now: float) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            parsed = parse_datetime(v)
        except ValueError:
            raise InvalidRequest(
                f"{field} must be Unix seconds or an ISO 8601 time.", param=field
            ) from None
        if parsed.tzinfo is None:
            raise InvalidRequest(f"{field} needs a time zone (e.g. Z).", param=field)
        ts = parsed.timestamp()
    else:
        ts = float(v)
    if ts <= now:
        raise InvalidRequest(f"{field} must be in the future.", param=field)
    return ts


def _scopes(scopes: list[str] | None) -> tuple[bool, tuple[str, ...] | None]:
    if not scopes:
        return False, None
    cols = tuple(s.removeprefix("collection:") for s in scopes if s.startswith("collection:"))
    return "admin" in scopes, cols or None


def view(key: ApiKey, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    scopes = (["admin"] if key.admin else []) + [f"collection:{c}" for c in key.collections or ()]
    status: Literal["active", "revoked", "expired"] = (
        "revoked" if key.revoked_at is not None else "active" if key.active(now) else "expired"
    )
    grace = key.previous_expires_at
    out: dict[str, Any] = msgspec.to_builtins(
        KeyView(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            models=list(key.models) if key.models is not None else None,
            scopes=scopes,
            rpm_limit=key.rpm_limit,
            tpm_limit=key.tpm_limit,
            user_rpm_limit=key.user_rpm_limit,
            user_tpm_limit=key.user_tpm_limit,
            budget_usd=key.budget_usd,
            token_budget=key.token_budget,
            budget_period=key.budget_period,
            expires_at=int(key.expires_at) if key.expires_at else None,
            created_at=int(key.created_at),
            updated_at=int(key.updated_at),
            revoked_at=int(key.revoked_at) if key.revoked_at else None,
            previous_key_valid_until=int(grace) if grace and grace > now else None,
            signed=key.signing_secret is not None,
            status=status,
        )
    )
    return out


class KeyManager:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        ring: KeyRing | None = None,
        admitter: Admitter | None = None,
        rotation_grace: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.audit = audit
        self.ring = ring
        self.admitter = admitter
        self.rotation_grace = rotation_grace
        self._clock = clock

    async def create(self, req: KeyCreate, actor: str) -> dict[str, Any]:
        now = self._clock()
        key_id = new_key_id()
        secret = new_secret(key_id)
        admin, collections = _scopes(req.scopes)
        signing = secrets.token_urlsafe(32) if req.signed else None
        key = ApiKey(
            id=key_id,
            name=req.name,
            hash=hash_secret(secret),
            prefix=display_prefix(secret),
            models=tuple(req.models) if req.models is not None else None,
            collections=collections,
            admin=admin,
            rpm_limit=req.rpm_limit,
            tpm_limit=req.tpm_limit,
            user_rpm_limit=req.user_rpm_limit,
            user_tpm_limit=req.user_tpm_limit,
            budget_usd=req.budget_usd,
            token_budget=req.token_budget,
            budget_period=req.budget_period,
            expires_at=_timestamp(req.expires_at, "expires_at", now),
            created_at=now,
            updated_at=now,
            signing_secret=signing,
        )
        await self.store.insert_key(key)
        self._cache(key)
        self.audit.admin("key_created", actor, key_id=key_id, key_name=req.name, admin=admin)
        out = view(key, now)
        out["key"] = secret
        out["signing_secret"] = signing
        return out

    async def get(self, key_id: str) -> ApiKey:
        key = await self.store.get_key(key_id)
        if key is None:
            raise KeyNotFound(key_id)
        return key

    async def list(self) -> list[ApiKey]:
        return sorted(await self.store.list_keys(), key=lambda k: (k.created_at, k.id))

    async def update(self, key_id: str, req: KeyUpdate, actor: str) -> dict[str, Any]:
        key = await self.get(key_id)
        now = self._clock()
        changes: dict[str, Any] = {}
        for f in KeyUpdate.__struct_fields__:
            v = getattr(req, f)
            if v is UNSET:
                continue
            if f == "models":
                changes[f] = tuple(v) if v is not None else None
            elif f == "scopes":
                changes["admin"], changes["collections"] = _scopes(v)
            elif f == "expires_at":
                changes[f] = _timestamp(v, "expires_at", now)
            else:
                changes[f] = v
        key = await self._save(key, now, **changes)
        self.audit.admin("key_updated", actor, key_id=key_id, fields=sorted(changes))
        return view(key, now)

    async def rotate(self, key_id: str, req: KeyRotate, actor: str) -> dict[str, Any]:
        key = await self.get(key_id)
        if key.revoked_at is not None:
            raise InvalidRequest("A revoked key cannot be rotated.", code="key_revoked")
        now = self._clock()
        grace = self.rotation_grace if req.grace_seconds is None else req.grace_seconds
        secret = new_secret(key_id)
        key = await self._save(
            key,
            now,
            hash=hash_secret(secret),
            prefix=display_prefix(secret),
            previous_hash=key.hash if grace > 0 else None,
            previous_expires_at=now + grace if grace > 0 else None,
        )
        self.audit.admin("key_rotated", actor, key_id=key_id, grace_seconds=grace)
        out = view(key, now)
        out["key"] = secret
        return out

    async def revoke(self, key_id: str, actor: str) -> dict[str, Any]:
        key = await self.get(key_id)
        now = self._clock()
        if key.revoked_at is None:
            key = await self._save(key, now, revoked_at=now)
            if self.admitter is not None:
                # Instances sharing Redis refuse the key at their next admission check, before
                # their key cache has even polled the store.
                await self.admitter.revoke(key_id, REVOCATION_TTL_S)
        self.audit.admin("key_revoked", actor, key_id=key_id)
        return view(key, now)

    async def _save(self, key: ApiKey, now: float, **changes: Any) -> ApiKey:
        """A changed key stored as a new version (instances' key caches pick it up by that)."""
        key = msgspec.structs.replace(key, **changes, updated_at=now, version=key.version + 1)
        await self.store.update_key(key)
        self._cache(key)
        return key

    def _cache(self, key: ApiKey) -> None:
        if self.ring is not None:
            self.ring.put(key)
