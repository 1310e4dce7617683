"""Small raw-ASGI helpers for the hot path (no framework machinery per request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ailb.errors import APIError, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_CT = (b"content-type", b"application/json")
# Scope key: perf_counter() when the application got the request, before authentication, so a
# request's latency and the gateway's overhead include the time spent authenticating it.
ARRIVED = "ailb.arrived"


class ClientDisconnected(Exception):
    """The client went away before its request body arrived."""


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v  # type: ignore[no-any-return]
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body"):
        if len(body) > limit:
            raise PayloadTooLarge(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        parts.append(chunk)
        if not msg.get("more_body"):
            return b"".join(parts)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_CT, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, err: APIError, headers: list[tuple[bytes, bytes]], body: bytes | None = None
) -> None:
    """`err` with its status and headers; `body` when a face renders it in its own shape."""
    extra = [(k.encode(), v.encode()) for k, v in err.headers.items()]
    await send_bytes(send, err.status, err.body() if body is None else body, [*headers, *extra])
