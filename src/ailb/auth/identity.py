"""The caller's identity, which owns sessions and collections.

Until authentication is configured, the identity is a hash of whatever key the client presents
(`Authorization: Bearer` or `x-api-key`), so two clients with different keys never see each
other's sessions even on an open gateway; no key at all is the shared `anonymous` owner.
"""

from __future__ import annotations

import hashlib

from ailb.api.asgi import Scope

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


def owner_of(key: str | None) -> str:
    if not key:
        return ANONYMOUS
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def caller_id(scope: Scope) -> str:
    return owner_of(presented_key(scope))
