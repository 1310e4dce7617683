"""Turning a request's credentials into a `Principal`, or a 401.

With no master key configured the gateway is open: everyone is `anonymous` for usage and limits,
and data is still separated by a hash of whatever key the client sends (see identity.py).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from ailb.asgi import Scope, header
from ailb.auth.audit import AuditLog
from ailb.auth.identity import ANONYMOUS, presented_bytes
from ailb.auth.keyring import KeyRing
from ailb.auth.keys import ApiKey, key_id_of, matches
from ailb.auth.principal import MASTER, Principal
from ailb.errors import AuthenticationFailed, ServiceUnavailable
from ailb.storage import StoreUnavailable

OPEN = Principal(ANONYMOUS, "")
RECENT_TTL_S = 60.0
RECENT_MAX = 10_000
SIGNATURE_HEADER = b"x-ailb-signature"
TIMESTAMP_HEADER = b"x-ailb-timestamp"


def _missing() -> AuthenticationFailed:
    return AuthenticationFailed(
        "You didn't provide an API key. Send it as `Authorization: Bearer <key>` or "
        "`x-api-key: <key>`.",
        code="missing_api_key",
    )


def _invalid() -> AuthenticationFailed:
    return AuthenticationFailed("Incorrect API key provided.", code="invalid_api_key")


class Authenticator:
    def __init__(
        self,
        master_key: str | None,
        ring: KeyRing | None,
        audit: AuditLog,
        signature_window: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Only the master key's digest is kept, and compared in constant time like any key's.
        self._master = hashlib.sha256(master_key.encode()).digest() if master_key else None
        self.ring = ring
        self.audit = audit
        self.signature_window = signature_window
        self._clock = clock
        # presented secret -> (its principal, the key record it was checked against, until)
        self._recent: dict[bytes, tuple[Principal, ApiKey, float]] = {}
        self._ring_keys: dict[str, ApiKey] = ring.keys if ring is not None else {}

    @property
    def enabled(self) -> bool:
        return self._master is not None

    def authenticate_now(self, scope: Scope) -> Principal | None:
        """`authenticate` without awaiting, for the usual request: an open gateway, or a
        secret verified a moment ago. None: it takes `authenticate`."""
        if self._master is None:
            return OPEN  # the owner is derived from the presented key only when data is used
        raw = presented_bytes(scope)
        hit = self._recent.get(raw) if raw is not None else None
        if hit is None:
            return None
        principal, key, until = hit
        # Still the very record the ring holds (any change replaces it), and still in time.
        if self._ring_keys.get(key.id) is key and self._clock() < until:
            return principal
        return None

    async def authenticate(self, scope: Scope) -> Principal:
        principal = self.authenticate_now(scope)
        if principal is not None:
            return principal
        assert self._master is not None  # an open gateway is always answered above
        raw = presented_bytes(scope)
        if raw is not None:
            self._recent.pop(raw, None)  # stale, if it was there
        presented = raw.decode("latin-1") if raw is not None else None
        path = scope.get("path", "")
        if presented is None:
            self.audit.auth_failure("missing_key", path=path)
            raise _missing()
        digest = hashlib.sha256(presented.encode()).digest()
        if hmac.compare_digest(digest, self._master):
            return Principal(MASTER, MASTER, admin=True)
        key_id = key_id_of(presented)
        if key_id is None or self.ring is None:
            self.audit.auth_failure("malformed_key", path=path)
            raise _invalid()
        try:
            key = await self.ring.get(key_id)
        except StoreUnavailable:
            self.audit.auth_failure("key_store_unavailable", key_id=key_id, path=path)
            raise ServiceUnavailable(
                "The key store is unavailable; please retry.",
                code="key_store_unavailable",
                headers={"retry-after": "1"},
            ) from None
        now = self._clock()
        if key is None or not matches(key, presented, now):
            self.audit.auth_failure("unknown_key", key_id=key_id, path=path)
            raise _invalid()
        if key.revoked_at is not None:
            self.audit.auth_failure("revoked_key", key_id=key_id, path=path)
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if key.expires_at is not None and now >= key.expires_at:
            self.audit.auth_failure("expired_key", key_id=key_id, path=path)
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        principal = Principal(key.id, "key_" + key.id, admin=key.admin, key=key)
        assert raw is not None
        self._remember(raw, presented, principal, now)
        return principal

    def _remember(self, raw: bytes, presented: str, principal: Principal, now: float) -> None:
        """Skip hashing for a secret verified a moment ago (the hot path sees the same few keys
        over and over); valid until the key or the old secret's grace period expires."""
        key = principal.key
        assert key is not None
        until = now + RECENT_TTL_S
        if key.expires_at is not None:
            until = min(until, key.expires_at)
        if key.previous_expires_at is not None and not hmac.compare_digest(
            hashlib.sha256(presented.encode()).hexdigest(), key.hash
        ):
            until = min(until, key.previous_expires_at)  # it is the rotated-out secret
        if len(self._recent) >= RECENT_MAX:
            self._recent.clear()
        self._recent[raw] = (principal, key, until)

    def verify_signature(self, principal: Principal, scope: Scope, body: bytes) -> None:
        """For keys created with signing: HMAC-SHA256 over `<timestamp>.<body>` in
        x-ailb-signature (hex, optionally `sha256=`), timestamp within the replay window."""
        key = principal.key
        if key is None or key.signing_secret is None:
            return
        path = scope.get("path", "")
        ts_raw = header(scope, TIMESTAMP_HEADER)
        sig_raw = header(scope, SIGNATURE_HEADER)
        if ts_raw is None or sig_raw is None:
            self.audit.auth_failure("signature_missing", key_id=key.id, path=path)
            raise AuthenticationFailed(
                "This key requires signed requests: send x-ailb-timestamp and x-ailb-signature.",
                code="signature_required",
            )
        try:
            ts = float(ts_raw)
        except ValueError:
            ts = float("nan")
        if not abs(self._clock() - ts) <= self.signature_window:
            self.audit.auth_failure("signature_expired", key_id=key.id, path=path)
            raise AuthenticationFailed(
                f"x-ailb-timestamp is outside the {int(self.signature_window)} s replay window.",
                code="signature_expired",
            )
        expected = hmac.new(
            key.signing_secret.encode(), ts_raw + b"." + body, hashlib.sha256
        ).hexdigest()
        given = sig_raw.decode("latin-1").strip().removeprefix("sha256=")
        if not hmac.compare_digest(expected, given):
            self.audit.auth_failure("signature_invalid", key_id=key.id, path=path)
            raise AuthenticationFailed(
                "The request signature is invalid.", code="invalid_signature"
            )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """What a client puts in x-ailb-signature (also used by the CLI and tests)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
