"""The Responses API's types for the OpenAPI document (request.py validates as it translates;
these describe the same fields)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ailb.api.schemas import CollectionReference, SessionId


class ResponsesRequest(msgspec.Struct, omit_defaults=True):
    """OpenAI's Responses request, translated to chat for every provider, plus AILB's
    `session_id` (or `metadata.session_id`), `rag_collection`, `rag_top_k`. Only function
    tools; hosted tools (web_search, file_search, computer …) are refused by name."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: Annotated[int, Meta(ge=1)] | None = None
    reasoning: dict[str, Any] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    include: list[str] | None = None
    truncation: str | None = None
    session_id: SessionId | None = None
    rag_collection: CollectionReference | None = None
    rag_top_k: Annotated[int, Meta(ge=1, le=20)] | None = None


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens_details: dict[str, int]


class Response(msgspec.Struct):
    """OpenAI's Response object (output items: message, function_call, reasoning)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    model: str
    output: list[dict[str, Any]]
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    usage: ResponseUsage | None = None


class DeletedResponse(msgspec.Struct):
    id: str
    object: Literal["response"]
    deleted: bool


# One Server-Sent Event of a streamed response: `event:` names its type, `data:` is the event.
RESPONSES_SSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["type", "sequence_number"],
                "properties": {
                    "type": {"type": "string"},
                    "sequence_number": {"type": "integer"},
                },
            },
        },
    },
}
