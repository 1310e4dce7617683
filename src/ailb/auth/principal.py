"""Who is calling: set on the ASGI scope by the authenticator, read by every endpoint."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ailb.asgi import Scope
from ailb.auth.keys import ApiKey

SCOPE_KEY = "ailb.principal"
MASTER = "master"


@dataclass(frozen=True, slots=True)
class Principal:
    """`key_id` is what usage, limits and the audit log name; `owner` owns sessions and
    collections (a key's data survives its rotation because the owner is the key id). On an open
    gateway `owner` is empty: identity.caller_id derives it from the presented key."""

    key_id: str
    owner: str
    admin: bool = False
    key: ApiKey | None = None

    def may_use_model(self, model: str) -> bool:
        allowed = self.key.models if self.key is not None else None
        return allowed is None or any(fnmatch.fnmatchcase(model, p) for p in allowed)

    def may_use_collection(self, collection: str) -> bool:
        allowed = self.key.collections if self.key is not None else None
        return allowed is None or any(fnmatch.fnmatchcase(collection, p) for p in allowed)


def principal_of(scope: Scope) -> Principal:
    p = scope.get(SCOPE_KEY)
    if p is None:  # a route the authenticator does not guard (never one that owns data)
        raise LookupError("no principal on this request")
    assert isinstance(p, Principal)
    return p
