"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with the right status."""

from __future__ import annotations

from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode


def open_gateway_owners(what: str) -> str:
    """Said in a 404 for sessions or collections on an open gateway, where their owner is a
    hash of whatever key the client presents: a client that sends another key, or none (a bare
    curl, where the openai SDK always sends one), is another owner and finds nothing."""
    return (
        f" Authentication is off on this gateway: {what} belong to the API key the client "
        "presents (a different key, or none, is a different owner)."
    )


class APIError(Exception):
    """An error answered to the client. Messages never carry credentials or upstream URLs."""

    status: int = 500
    type: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return _encode(self.payload())


class AuthenticationFailed(APIError):
    status = 401
    type = "invalid_request_error"


class PermissionDenied(APIError):
    status = 403
    type = "permission_error"


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class ModelNotFound(APIError):
    status = 404
    type = "invalid_request_error"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or is not served by this gateway.",
            param="model",
            code="model_not_found",
        )


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Request body is larger than the {limit} bytes this gateway accepts.",
            code="request_too_large",
            # The rest of the body is not wanted: closing stops the client sending it.
            headers={"connection": "close"},
        )


class UpstreamUnavailable(APIError):
    """No deployment could answer: every candidate failed or none is available."""

    status = 502
    type = "api_error"


class UpstreamTimeout(APIError):
    status = 504
    type = "timeout_error"


class ServiceUnavailable(APIError):
    status = 503
    type = "api_error"


class RateLimited(APIError):
    status = 429
    type = "rate_limit_error"
    # Which limit refused (key_requests, user_tokens, route_requests ...), for the metrics;
    # None where the code says it (budget_exceeded, deployment_rate_limited ...).
    reason: str | None = None


STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_for_status(status: int, message: str, code: str | None = None) -> APIError:
    return APIError(message, status=status, type=STATUS_TYPES.get(status, "api_error"), code=code)


# Anthropic's error types by HTTP status: the Messages API face answers in its shape, which
# the anthropic SDK turns into its typed exceptions (BadRequestError, AuthenticationError ...).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_payload(err: APIError) -> dict[str, Any]:
    """`err` in Anthropic's error shape: `{"type": "error", "error": {"type", "message"}}`."""
    return {
        "type": "error",
        "error": {"type": ANTHROPIC_TYPES.get(err.status, "api_error"), "message": err.message},
    }


def anthropic_body(err: APIError) -> bytes:
    return _encode(anthropic_payload(err))
