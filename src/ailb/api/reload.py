"""POST /api/reload: the gRPC Reload over HTTP, for an admin key (ailb.control.reload)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse, parse_body
from ailb.api.keys import require_admin
from ailb.api.openapi import Operation
from ailb.control.reload import Reloader
from ailb.errors import PermissionDenied


class ReloadOptions(msgspec.Struct, forbid_unknown_fields=True):
    force: bool = False  # apply what can be, keeping settings that need a restart as they run


class ReloadAnswer(msgspec.Struct):
    success: bool
    message: str
    reload_timestamp: int  # Unix seconds the configuration now running was loaded


def build(reloader: Reloader) -> tuple[list[Route], list[Operation]]:
    runtime = reloader.runtime

    async def reload(request: Request) -> JSONResponse:
        if not runtime.auth.enabled:
            raise PermissionDenied(
                "Authentication is off on this gateway: set AILB_MASTER_KEY to reload over "
                "HTTP (SIGHUP and the gRPC Reload work without it).",
                code="auth_disabled",
            )
        principal = require_admin(request)
        options = await parse_body(request, ReloadOptions, optional=True)
        runtime.auth.audit.admin("config_reload_requested", principal.key_id, force=options.force)
        result = await reloader.reload(force=options.force, source="api")
        answer = ReloadAnswer(result.success, result.message, result.reload_timestamp)
        # A rejected configuration is not this request's fault, but a deploy script must see
        # it fail (curl -f): 422, with the same body.
        return JSONResponse(answer, status_code=200 if result.success else 422)

    return (
        [Route("/api/reload", reload, methods=["POST"])],
        [
            Operation(
                "POST",
                "/api/reload",
                "Re-read the config file and environment and apply them atomically (admin)",
                "Operations",
                request=ReloadOptions,
                response=ReloadAnswer,
                body_required=False,  # no body: {"force": false}
                errors=(400, 401, 403),
                other_responses={422: ReloadAnswer},
                description="422 with the same body when the new configuration is rejected; "
                "the running one is kept.",
            )
        ],
    )
