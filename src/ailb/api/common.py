"""Shared pieces of the JSON API endpoints (everything but the chat hot path)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ailb.api.schemas import with_integral_floats
from ailb.errors import APIError, InvalidRequest, PayloadTooLarge

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode


class JSONResponse(Response):
    """JSON rendered by msgspec (faster than the stdlib, same output for plain data)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


def error_response(err: APIError) -> Response:
    return Response(
        err.body(), status_code=err.status, media_type="application/json", headers=err.headers
    )


async def read_body(request: Request, limit: int = 1024 * 1024) -> bytes:
    """The whole body, but never more than `limit` bytes of it in memory (413 past that,
    whether or not the client declared a Content-Length)."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            parts.append(chunk)
    except ClientDisconnect:  # nobody to answer: no stack trace in the log either
        raise InvalidRequest(
            "The client went away before its request body arrived.", code="client_disconnected"
        ) from None
    body = b"".join(parts)
    request._body = body  # Starlette's cache: a later request.body() returns it
    return body


async def parse_body(
    request: Request, kind: type[T], limit: int = 1024 * 1024, optional: bool = False
) -> T:
    """A request body validated against a msgspec type; 400 naming the field otherwise.
    `optional`: an empty body is the type's defaults."""
    body = await read_body(request, limit)
    if optional and not body.strip():
        return kind()
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        try:  # typed decoding stops at the first wrong value, before the JSON is checked
            retried = with_integral_floats(msgspec.json.decode(body), kind)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            retried = None
        if retried is not None:
            return retried[0]
        raise InvalidRequest(f"Invalid request body: {e}.", code="invalid_value") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        deep = isinstance(e, RecursionError)
        raise InvalidRequest(
            "The request body is nested too deeply."
            if deep
            else "The request body is not valid JSON.",
            code="invalid_json",
        ) from None
