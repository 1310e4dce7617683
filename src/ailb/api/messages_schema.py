"""The Messages API face's shapes for the OpenAPI document (the face validates requests itself,
in `messages_request`, with Anthropic's wording; these types only describe them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ailb.api.schemas import CollectionReference, SessionId

Blocks = Annotated[
    list[dict[str, Any]],
    Meta(description="Content blocks: text, image, document, tool_use, tool_result, thinking."),
]


class MessageParam(msgspec.Struct, omit_defaults=True):
    role: Literal["user", "assistant"]
    content: str | Blocks


class MessagesRequest(msgspec.Struct, omit_defaults=True):
    """Anthropic's Messages API body plus AILB's `session_id`, `rag_collection`, `rag_top_k`
    (`metadata.session_id` also names the session). Fields not listed reach Anthropic
    deployments unchanged; other deployments refuse them by name."""

    model: str
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    max_tokens: Annotated[int, Meta(ge=1)]
    system: str | list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    session_id: SessionId | None = None
    rag_collection: CollectionReference | None = None
    rag_top_k: Annotated[int, Meta(ge=1, le=20)] | None = None


class MessageUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(msgspec.Struct):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None
    usage: MessageUsage


class CountTokensRequest(msgspec.Struct, omit_defaults=True):
    """A Messages API body without `max_tokens`."""

    model: str
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class TokenCount(msgspec.Struct):
    """Counted by the Anthropic upstream, or the gateway's estimate for other providers."""

    input_tokens: int


class AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class AnthropicError(msgspec.Struct):
    """Errors of the Messages API face, in Anthropic's shape."""

    type: Literal["error"]
    error: AnthropicErrorDetail
