"""The caller's identity, which owns sessions and collections.

With authentication on, it is the key id the authenticator put on the scope (so data survives a
key's rotation). On an open gateway it is a hash of whatever key the client presents
(`Authorization: Bearer` or `x-api-key`), so two clients with different keys never see each
other's sessions; no key at all is the shared `anonymous` owner.
"""

from __future__ import annotations

import hashlib

from ailb.asgi import Scope
from ailb.auth.principal import SCOPE_KEY, Principal

ANONYMOUS = "anonymous"


def presented_key(scope: Scope) -> str | None:
    name: bytes
    value: bytes
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return str(token.strip())
        elif name == b"x-api-key" and value.strip():
            return str(value.decode("latin-1").strip())
    return None


def presented_bytes(scope: Scope) -> bytes | None:
    """presented_key() as the raw header bytes (no decoding: the hot path's cache key)."""
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            # The usual spelling first: one call instead of a slice, a copy and a compare.
            if value.startswith(b"Bearer ") or value[:7].lower() == b"bearer ":
                token = value[7:].strip()
                if token:
                    return token
        elif name == b"x-api-key":
            token = value.strip()
            if token:
                return token
    return None


def owner_of(key: str | None) -> str:
    if not key:
        return ANONYMOUS
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def caller_id(scope: Scope) -> str:
    p = scope.get(SCOPE_KEY)
    if isinstance(p, Principal) and p.owner:
        return p.owner
    return owner_of(presented_key(scope))  # an open gateway: derived only when data is used
