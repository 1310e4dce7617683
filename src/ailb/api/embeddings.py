"""POST /v1/embeddings: the embeddings face of the pipeline (ailb.pipeline), a plain ASGI
endpoint like the chat one.

The request is OpenAI's create-embeddings body. Upstreams are always asked for floats; the
answer is encoded here as the client asked: floats, or base64 of little-endian float32 (as
OpenAI does, and as the openai SDK asks by default).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import Meta

from ailb.api.face import Face
from ailb.api.schemas import parse_body
from ailb.asgi import Receive, Scope, Send, read_body, send_bytes
from ailb.errors import InvalidRequest
from ailb.pipeline.call import Call
from ailb.pipeline.core import Pipeline
from ailb.pipeline.exchange import overhead
from ailb.providers.embeddings import is_tokens

MAX_INPUTS = 2048  # OpenAI's limit on one request's inputs
MAX_DIMENSIONS = 16384

TextInput = Annotated[str, Meta(min_length=1)]
TokenIds = Annotated[list[Annotated[int, Meta(ge=0)]], Meta(min_length=1)]
INPUT_SCHEMA: dict[str, Any] = {
    "description": "Text to embed: a string, an array of strings, an array of token ids, or "
    f"an array of token-id arrays (at most {MAX_INPUTS} inputs; none empty). Token ids pass "
    "to OpenAI-format deployments only.",
    "anyOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "maxItems": MAX_INPUTS,
        },
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
        {
            "type": "array",
            "items": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": 1,
            },
            "minItems": 1,
            "maxItems": MAX_INPUTS,
        },
    ],
}


class EmbeddingRequest(msgspec.Struct, omit_defaults=True):
    """OpenAI's create-embeddings body. Fields not listed pass to OpenAI-format upstreams."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    # Checked by `check_input`: msgspec takes one array type in a union (and its schema for
    # a union would hide the four shapes).
    input: Annotated[Any, Meta(extra_json_schema=INPUT_SCHEMA)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Meta(ge=1, le=MAX_DIMENSIONS)] | None = None
    user: Annotated[str, Meta(max_length=512)] | None = None


class Embedding(msgspec.Struct):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    """OpenAI's create-embeddings answer, for the OpenAPI document."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


_encode = msgspec.json.Encoder().encode


SHAPES = (
    "expected a string, an array of strings, an array of token ids or an array of token-id arrays"
)


def invalid_input(detail: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for 'input': {detail}.", param="input", code="invalid_value"
    )


def check_input(value: Any) -> None:
    """One of the four shapes OpenAI takes, none empty, at most MAX_INPUTS inputs."""
    if isinstance(value, str):
        if not value:
            raise invalid_input("an input cannot be an empty string")
        return
    if not isinstance(value, list):
        raise invalid_input(SHAPES)
    if not value:
        raise invalid_input("the array of inputs is empty")
    if is_tokens(value):  # one input, as token ids
        if any(t < 0 for t in value):
            raise invalid_input("token ids are not negative")
        return
    if len(value) > MAX_INPUTS:
        raise invalid_input(f"at most {MAX_INPUTS} inputs are taken in one request")
    if all(isinstance(v, str) for v in value):
        if not all(value):
            raise invalid_input("an input cannot be an empty string")
        return
    if all(is_tokens(v) for v in value):
        if not all(value):
            raise invalid_input("an input cannot be an empty array of token ids")
        if any(t < 0 for v in value for t in v):
            raise invalid_input("token ids are not negative")
        return
    raise invalid_input(SHAPES)


def parse_embedding_request(body: bytes) -> tuple[EmbeddingRequest, dict[str, Any]]:
    """The validated request and the raw body (fields not modelled pass through)."""
    req, raw = parse_body(body, EmbeddingRequest)
    check_input(req.input)
    return req, raw


def encode_vectors(answer: dict[str, Any], base64_wanted: bool) -> dict[str, Any]:
    """The rows' vectors as the client asked: lists of floats, or base64 of little-endian
    float32 (exactly OpenAI's encoding)."""
    for row in answer["data"]:
        vector = row["embedding"]
        if base64_wanted:
            packed = np.asarray(vector, dtype="<f4").tobytes()
            row["embedding"] = base64.b64encode(packed).decode("ascii")
        elif isinstance(vector, np.ndarray):
            row["embedding"] = vector.tolist()
    return answer


class EmbeddingsEndpoint(Face):
    def __init__(self, pipeline: Pipeline, max_body_bytes: int) -> None:
        super().__init__(pipeline, max_body_bytes, "embeddings")

    async def handle(self, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(scope, receive, self.max_body_bytes)
        req, raw = parse_embedding_request(body)
        self.pipeline.accept_embedding(call, raw, len(body))
        answer = await self.pipeline.embed(call)
        encoded = _encode(encode_vectors(answer, req.encoding_format == "base64"))
        await send_bytes(send, 200, encoded, [*call.headers, overhead(call.ex)])
