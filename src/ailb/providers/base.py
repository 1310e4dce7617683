"""The provider interface every upstream speaks through.

The gateway's own wire format is OpenAI's: a provider takes an OpenAI chat-completions body and
returns an OpenAI `chat.completion` (complete) or batches of `chat.completion.chunk` objects
(stream). Translation to and from the provider's own format is pure functions in its module.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Literal, Protocol

from ailb.config import DeploymentConfig
from ailb.errors import InvalidRequest
from ailb.observability.logging import redact

Chunk = dict[str, Any]
"""One OpenAI `chat.completion.chunk` object."""

ChunkBatch = list[Chunk]
"""The chunks that arrived together in one upstream read; sent to the client in one write."""

ErrorKind = Literal["connect", "timeout", "status", "protocol"]

# Upstream statuses that describe the client's own request: passed back, never held against
# the deployment (DESIGN §3).
CLIENT_FAULT_STATUSES = frozenset({400, 404, 409, 413, 415, 422})


class UpstreamError(Exception):
    """A deployment failed to answer. `message` is safe to log; `client_message` is what the
    client may see when the failure is its own fault (never credentials or URLs)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        client_message: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.client_message = client_message
        self.code = code
        self.param = param

    @property
    def client_fault(self) -> bool:
        """The request itself is bad: another deployment would refuse it too."""
        return self.kind == "status" and self.status in CLIENT_FAULT_STATUSES

    @property
    def label(self) -> str:
        """Short error kind for stats: connect, timeout, protocol, http_5xx, http_429 ..."""
        if self.kind == "status" and self.status is not None:
            return f"http_{self.status}" if self.status < 500 else "http_5xx"
        return self.kind


class UnsupportedFeature(InvalidRequest):
    """The request asks for something this provider cannot do."""

    def __init__(self, provider: str, what: str, param: str | None = None) -> None:
        super().__init__(
            f"{what} is not supported by the {provider} provider.",
            param=param,
            code="unsupported_feature",
        )


class Provider(Protocol):
    """One deployment's connection to its upstream."""

    config: DeploymentConfig

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a non-streaming request with an OpenAI `chat.completion` object."""
        ...

    def stream(self, body: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        """Stream OpenAI chunks. The last batch carries a usage chunk (`choices: []`) when the
        upstream reports usage. A failure raises `UpstreamError`; a stream that ends without
        its terminal event raises too, so a truncated answer never looks complete."""
        ...

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer an OpenAI embeddings body (`encoding_format` float) with an OpenAI embeddings
        list in input order, float vectors, `usage` when the upstream reported it
        (ailb.providers.embeddings)."""
        ...

    async def list_models(self) -> list[str]:
        """The upstream's models; doubles as the cheap active health probe."""
        ...

    async def close(self) -> None: ...


_SECRETISH = re.compile(
    r"(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+\S+|(?:api[_-]?key|x-api-key)\s*[:=]\s*\S+|https?://\S+)",
    re.IGNORECASE,
)


def scrub(text: str, limit: int = 500, secrets: Sequence[str] = ()) -> str:
    """Upstream error text made safe to show: without `secrets` (the credentials this upstream
    is sent, whatever their shape), keys, tokens or URLs, and only then cut to `limit`: a
    secret across the cut would no longer match, and its head would be shown."""
    return _SECRETISH.sub("[redacted]", redact(text, secrets))[:limit]


def error_message_from(
    payload: Any, secrets: Sequence[str] = ()
) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) from an OpenAI, Anthropic or Ollama error body, scrubbed."""
    if not isinstance(payload, dict):
        return None, None, None
    err = payload.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        code = err.get("code") or err.get("type")
        param = err.get("param")
        return (  # code and param too: a server may put anything there, the key included
            scrub(msg, 500, secrets) if isinstance(msg, str) else None,
            scrub(code, 100, secrets) if isinstance(code, str) else None,
            scrub(param, 200, secrets) if isinstance(param, str) else None,
        )
    if isinstance(err, str):
        return scrub(err, 500, secrets), None, None
    return None, None, None
