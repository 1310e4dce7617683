"""Shared pieces of the JSON API endpoints (everything but the chat hot path)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

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


async def parse_body(request: Request, kind: type[T], limit: int = 1024 * 1024) -> T:
    """A request body validated against a msgspec type; 400 naming the field otherwise."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(limit)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        raise InvalidRequest(f"Invalid request body: {e}.", code="invalid_value") from None
    except msgspec.DecodeError:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
