"""The chat-completions request schema: validation on the hot path (msgspec) and the OpenAPI
description of the endpoint (generated from the same types, so they cannot drift apart)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from ailb.errors import InvalidRequest
from ailb.rag.registry import REFERENCE

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
UnitFloat = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
# Patterns end in \Z, not $: `$` also matches before a final newline ("docs\n" would pass).
SessionId = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._:@-]+\Z")]
CollectionName = Annotated[str, Meta(min_length=3, max_length=512, pattern=r"^[a-zA-Z0-9._-]+\Z")]
# A collection as a request names it: `name` (the caller's own) or `<owner id>/<name>`.
CollectionReference = Annotated[str, Meta(min_length=3, max_length=577, pattern=REFERENCE.pattern)]


class ChatMessage(msgspec.Struct, omit_defaults=True):
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool | None = None


class FunctionDef(msgspec.Struct, omit_defaults=True):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+\Z")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(msgspec.Struct, omit_defaults=True):
    type: Literal["function"]
    function: FunctionDef


# A tool of any type: function tools are checked (FunctionTool) because every provider module
# reads them; other types (OpenAI's `custom`, and whatever comes next) pass through untouched to
# OpenAI-format upstreams, and a translation that cannot express one refuses it by name.
ToolSpec = Annotated[
    dict[str, Any],
    Meta(
        extra_json_schema={
            "required": ["type"],
            "properties": {"type": {"type": "string"}},
            "description": "A tool: `{type: function, function: {name, description?, "
            "parameters?, strict?}}`, or another type OpenAI defines (`custom` ...), passed "
            "through to OpenAI-compatible upstreams.",
        }
    ),
]


class ChatCompletionRequest(msgspec.Struct, omit_defaults=True):
    """OpenAI's chat-completions body plus AILB's `session_id`, `rag_collection`, `rag_top_k`.
    Fields not listed are passed through to OpenAI-compatible upstreams unchanged."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: UnitFloat | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: Annotated[str, Meta(max_length=512)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    session_id: SessionId | None = None
    rag_collection: CollectionReference | None = None
    rag_top_k: Annotated[int, Meta(ge=1, le=20)] | None = None


class ChatCompletionMessage(msgspec.Struct):
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatCompletionChoice(msgspec.Struct):
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class CompletionUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(msgspec.Struct):
    """OpenAI's chat.completion, for the OpenAPI document only (answers are relayed as the
    provider module builds them; OpenAI-compatible upstreams may add fields)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: dict[str, Any]
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(msgspec.Struct):
    """One event of a streamed answer (OpenAI's chat.completion.chunk), for the document only."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


# One Server-Sent Event of a streamed answer: a chunk, an error after the first byte (then the
# stream ends), or the final `[DONE]`.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "if": {"const": "[DONE]"},
            "else": {
                "contentMediaType": "application/json",
                "contentSchema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/ChatCompletionChunk"},
                        {"$ref": "#/components/schemas/Error"},
                    ]
                },
            },
        },
    },
}


T = TypeVar("T")

AILB_FIELDS = ("session_id", "rag_collection", "rag_top_k")

_decode_any = msgspec.json.Decoder().decode
_decode_chat = msgspec.json.Decoder(ChatCompletionRequest).decode
_AT = re.compile(r"- at `\$\.?([^`]*)`")

S = TypeVar("S", bound=msgspec.Struct)


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as its JSON object, or the 400 every face answers for anything else."""
    try:
        raw = _decode_any(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        raise bad_json(e) from None
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return raw


def validated(raw: dict[str, Any], kind: type[S]) -> tuple[S, dict[str, Any]]:
    """`raw` as `kind`, and the object that was converted (`raw`, or `raw` with whole-number
    floats as ints when only that made it fit): chat's errors for invalid or missing fields."""
    try:
        return msgspec.convert(raw, kind), raw
    except msgspec.ValidationError as e:
        retried = with_integral_floats(raw, kind)
        if retried is None:
            raise invalid_field(e) from None
        return retried
    except RecursionError as e:
        raise bad_json(e) from None


def parse_chat_request(body: bytes) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """The validated request and the raw body (for pass-through of fields not modelled).
    json_object and chat_request written out: the chat hot path, where the two calls between
    them cost 4k machine instructions (about 1 % of a request)."""
    try:
        raw = _decode_any(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        raise bad_json(e) from None
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        req = _decode_chat(body)
    except msgspec.ValidationError as e:
        retried = with_integral_floats(raw, ChatCompletionRequest)
        if retried is None:
            raise invalid_field(e) from None
        req, raw = retried
    except RecursionError as e:
        raise bad_json(e) from None
    if req.tools:
        check_tools(req.tools)
    return req, raw


def parse_body(body: bytes, kind: type[S]) -> tuple[S, dict[str, Any]]:
    """A face's request body validated as `kind`, and the raw object (fields not modelled pass
    through): chat's errors for bad JSON and for invalid or missing fields."""
    return validated(json_object(body), kind)


def invalid_field(e: msgspec.ValidationError) -> InvalidRequest:
    text = str(e)
    m = _AT.search(text)
    param = (m.group(1) or None) if m else None
    if text.startswith("Object missing required field"):
        field = text.split("`")[1]
        param = f"{param}.{field}" if param else field
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    detail = _AT.sub("", text).strip()
    return InvalidRequest(
        f"Invalid value for '{param}': {detail}.", param=param, code="invalid_value"
    )


def chat_request(raw: dict[str, Any]) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """A chat request's JSON object validated, and the object the pipeline goes on with. Other
    faces (Responses, Messages, Completions) pass their request translated into chat terms: the
    same checks, the same errors."""
    req, raw = validated(raw, ChatCompletionRequest)
    if req.tools:
        check_tools(req.tools)
    return req, raw


def check_tools(tools: list[dict[str, Any]]) -> None:
    """Each tool names its type; function tools are whole (what every provider reads)."""
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if not isinstance(kind, str) or not kind:
            raise InvalidRequest(
                f"Invalid value for 'tools[{i}].type': a tool names its type.",
                param=f"tools[{i}].type",
                code="invalid_value",
            )
        if kind != "function":
            continue
        try:
            msgspec.convert(tool, FunctionTool)
        except msgspec.ValidationError as e:
            text = str(e)
            m = _AT.search(text)
            param = f"tools[{i}]" + ("." + m.group(1) if m and m.group(1) else "")
            detail = _AT.sub("", text).strip()
            raise InvalidRequest(
                f"Invalid value for '{param}': {detail}.", param=param, code="invalid_value"
            ) from None


def bad_json(e: Exception) -> InvalidRequest:
    """The 400 for a body that is not JSON: malformed, not UTF-8, or nested too deeply."""
    if isinstance(e, RecursionError):  # msgspec's limit: about 1000 levels
        return InvalidRequest("The JSON body is nested too deeply.", code="invalid_json")
    return InvalidRequest(
        "We could not parse the JSON body of your request. (HINT: This likely means you "
        "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        code="invalid_json",
    )


def with_integral_floats(raw: Any, kind: type[T]) -> tuple[T, Any] | None:
    """(`raw` as `kind`, the value converted) once every whole-number float is an int -- JSON
    Schema counts 4.0 as an integer, msgspec does not; None when there is no such float or it
    still does not fit. Only on the error path."""
    try:
        fixed = integral_floats(raw)
        return (msgspec.convert(fixed, kind), fixed) if fixed is not raw else None
    except (msgspec.ValidationError, RecursionError):
        return None


def integral_floats(value: Any) -> Any:
    """`value` with every float that is a whole number as an int (JSON Schema counts 4.0 as an
    integer; msgspec does not), or `value` itself when there is none. Only on the error path;
    recursive (a deeply nested value raises RecursionError)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if isinstance(value, dict):
        items = {k: integral_floats(v) for k, v in value.items()}
        changed = any(items[k] is not v for k, v in value.items())
        return items if changed else value
    if isinstance(value, list):
        out = [integral_floats(v) for v in value]
        return out if any(a is not b for a, b in zip(out, value, strict=True)) else value
    return value


def chat_request_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema of the request body, component schemas) for the OpenAPI document."""
    (schema,), components = msgspec.json.schema_components(
        [ChatCompletionRequest], ref_template="#/components/schemas/{name}"
    )
    return schema, components
