"""AILB's own encoder (all-MiniLM-L6-v2, the local embedder of memory and RAG) answering
`/v1/embeddings` like a deployment: same answer shape, usage in its own tokens, no cost."""

from __future__ import annotations

from typing import Any

from ailb.embeddings import LocalEmbedder
from ailb.errors import InvalidRequest, ServiceUnavailable
from ailb.providers.embeddings import input_texts

# Requests of more texts than this go to the encoder's bulk lane (lower priority threads, as RAG
# ingestion): a client's batch of documents must not hold up memory recalls and searches.
INTERACTIVE_TEXTS = 4
# What the encoder reads of one text, with its [CLS] and [SEP] markers (longer ones are cut, as
# sentence-transformers does).
MAX_SEQUENCE = 256
KNOWN_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


def local_request(encoder: LocalEmbedder, body: dict[str, Any]) -> list[str]:
    """The texts to encode; what the local model cannot do is refused, naming the field."""
    name = encoder.name
    for key in body:
        if key not in KNOWN_FIELDS:
            raise InvalidRequest(
                f"The field `{key}` is not supported by the local model `{name}`.",
                param=key,
                code="unsupported_feature",
            )
    texts = input_texts(body["input"])
    if texts is None:
        raise InvalidRequest(
            f"Token-id input is not supported by the local model `{name}` (send text).",
            param="input",
            code="unsupported_feature",
        )
    dims = body.get("dimensions")
    if dims is not None and dims != encoder.dimensions:
        raise InvalidRequest(
            f"The local model `{name}` gives {encoder.dimensions}-dimensional vectors only.",
            param="dimensions",
            code="unsupported_feature",
        )
    return texts


async def embed_locally(encoder: LocalEmbedder, texts: list[str]) -> tuple[dict[str, Any], int]:
    """(the OpenAI answer, its prompt tokens). The vectors stay float32 rows (numpy): the face
    encodes them as floats or base64 without a round trip through Python floats."""
    try:
        vectors = await encoder.embed(texts, bulk=len(texts) > INTERACTIVE_TEXTS)
    except Exception as e:  # the model could not load or run: the client hears 503, not 500
        raise ServiceUnavailable(
            f"The local embedding model `{encoder.name}` is unavailable right now.",
            code="embedder_unavailable",
        ) from e
    tokens = sum(min(n + 2, MAX_SEQUENCE) for n in encoder.count_tokens(texts))
    answer = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": encoder.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return answer, tokens
