"""The control service's bearer token: checked on every call before any handler runs.

ModuleService steers all traffic (weights, rate limits, reloads) and reveals upstream hosts, so
with a token configured (Settings.control_credential) every call must carry
`authorization: Bearer <token>` metadata, as Envoy's and Kong's bearer checks ask of HTTP
requests. Only grpc.health.v1 stays open: probes (Kubernetes, grpc_health_probe, balancers)
carry no credentials, and it tells nothing but SERVING or NOT_SERVING. Server reflection needs
the token too: the schema it reveals is public, but it would tell an anonymous peer that this
port is an AILB steering service, and grpcurl sends its -H headers with reflection requests, so
operators lose nothing. A method no service has is refused the same way, so nothing at all is
learnt without the token.

A refused call gets UNAUTHENTICATED from a handler that reads no request message (one streaming
both ways, so it fits a call of any kind), and the ailb.audit log records why, which method and
the peer, never what was sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from ailb.auth.audit import AuditLog

OPEN_SERVICE_PREFIX = "/" + health_pb2.DESCRIPTOR.services_by_name["Health"].full_name + "/"
REFUSED = "This call needs `authorization: Bearer <token>` metadata (AILB_CONTROL_TOKEN)."


def _refuse(reason: str, method: str, audit: AuditLog) -> grpc.RpcMethodHandler:
    async def refuse(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        audit.auth_failure(reason, method=method, peer=context.peer())
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSED)

    return grpc.stream_stream_rpc_method_handler(refuse)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, token: str, audit: AuditLog) -> None:
        self._expected = token.encode()
        self._audit = audit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        if method.startswith(OPEN_SERVICE_PREFIX):
            return await continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata
        given = [value for key, value in metadata or () if key == "authorization"]
        if not given:
            return _refuse("missing_control_token", method, self._audit)
        # One value only: with two, which one a proxy in between acted on is anyone's guess.
        scheme, _, token = given[0].partition(" ") if len(given) == 1 else ("", "", "")
        offered = token.encode("utf-8", "surrogatepass")  # distinct bytes for any string
        # The scheme is case-insensitive (RFC 9110 11.1); the token is compared in constant
        # time (its length aside, as compare_digest documents).
        if scheme.lower() != "bearer" or not hmac.compare_digest(offered, self._expected):
            return _refuse("invalid_control_token", method, self._audit)
        return await continuation(handler_call_details)
