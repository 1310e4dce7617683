"""The admin API for keys: /api/keys (master key or an admin-scoped key)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse, parse_body
from ailb.api.openapi import Operation, path_param
from ailb.auth.manager import KeyCreate, KeyCreated, KeyManager, KeyRotate, KeyUpdate, KeyView, view
from ailb.auth.principal import Principal, principal_of
from ailb.errors import PermissionDenied, ServiceUnavailable
from ailb.runtime import Runtime
from ailb.storage import StoreUnavailable

log = logging.getLogger("ailb.api")
Handler = Callable[[Request], Awaitable[JSONResponse]]


class KeyList(msgspec.Struct):
    object: Literal["list"]
    data: list[KeyView]


def require_admin(request: Request) -> Principal:
    p = principal_of(request.scope)
    if not p.admin:
        raise PermissionDenied(
            "This endpoint needs the master key or an admin-scoped key.", code="admin_required"
        )
    return p


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    def manager(request: Request) -> tuple[KeyManager, Principal]:
        if runtime.keys is None:
            raise PermissionDenied(
                "Authentication is off on this gateway: set AILB_MASTER_KEY to manage keys.",
                code="auth_disabled",
            )
        return runtime.keys, require_admin(request)

    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> JSONResponse:
            try:
                return await handler(request)
            except StoreUnavailable as e:
                raise _unavailable(e) from None

        return run

    @guarded
    async def create(request: Request) -> JSONResponse:
        keys, p = manager(request)
        body = await parse_body(request, KeyCreate)
        return JSONResponse(await keys.create(body, p.key_id))

    @guarded
    async def list_keys(request: Request) -> JSONResponse:
        keys, _ = manager(request)
        return JSONResponse({"object": "list", "data": [view(k) for k in await keys.list()]})

    @guarded
    async def get_key(request: Request) -> JSONResponse:
        keys, _ = manager(request)
        return JSONResponse(view(await keys.get(request.path_params["key_id"])))

    @guarded
    async def update(request: Request) -> JSONResponse:
        keys, p = manager(request)
        body = await parse_body(request, KeyUpdate)
        return JSONResponse(await keys.update(request.path_params["key_id"], body, p.key_id))

    @guarded
    async def rotate(request: Request) -> JSONResponse:
        keys, p = manager(request)
        body = await parse_body(request, KeyRotate, optional=True)
        return JSONResponse(await keys.rotate(request.path_params["key_id"], body, p.key_id))

    @guarded
    async def revoke(request: Request) -> JSONResponse:
        keys, p = manager(request)
        return JSONResponse(await keys.revoke(request.path_params["key_id"], p.key_id))

    one = "/api/keys/{key_id}"
    param = [
        path_param(
            "key_id",
            "The key's id (the part after sk-ailb-)",
            {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        )
    ]
    errors = (400, 401, 403, 404, 503)
    return (
        [
            Route("/api/keys", create, methods=["POST"]),
            Route("/api/keys", list_keys, methods=["GET"]),
            Route(one, get_key, methods=["GET"]),
            Route(one, update, methods=["PATCH"]),
            Route(one, revoke, methods=["DELETE"]),
            Route(one + "/rotate", rotate, methods=["POST"]),
        ],
        [
            Operation(
                "POST",
                "/api/keys",
                "Create a key; the secret is in the answer once",
                "Keys",
                request=KeyCreate,
                response=KeyCreated,
                errors=errors,
            ),
            Operation(
                "GET",
                "/api/keys",
                "Every key (never a secret)",
                "Keys",
                response=KeyList,
                errors=errors,
            ),
            Operation(
                "GET", one, "One key", "Keys", response=KeyView, errors=errors, parameters=param
            ),
            Operation(
                "PATCH",
                one,
                "Change a key's name, models, scopes, limits, budget or expiry (live on every "
                "instance within a second)",
                "Keys",
                request=KeyUpdate,
                response=KeyView,
                errors=errors,
                parameters=param,
            ),
            Operation(
                "DELETE",
                one,
                "Revoke a key at once, on every instance within a second",
                "Keys",
                response=KeyView,
                errors=errors,
                parameters=param,
            ),
            Operation(
                "POST",
                one + "/rotate",
                "A new secret for the key; the old one works for the grace period",
                "Keys",
                request=KeyRotate,
                response=KeyCreated,
                body_required=False,  # no body: the default grace period
                errors=errors,
                parameters=param,
            ),
        ],
    )


def _unavailable(e: StoreUnavailable) -> ServiceUnavailable:
    log.warning("key_store_unavailable", extra={"detail": str(e)})
    return ServiceUnavailable(
        "The key store is unavailable; please retry.", code="key_store_unavailable"
    )
