"""Schemathesis hooks for test_schemathesis.py (loaded by the `st` run through its config file).

Chat and embeddings requests name a model the gateway serves (of their kind), so fuzzing reaches
routing, memory and the provider instead of stopping at 404 model_not_found; names it does not
serve are still sent by the negative cases (anything outside the enum)."""

from __future__ import annotations

from typing import Any

import schemathesis

SERVED_MODEL = "mock"
EMBEDDING_MODEL = "mock-embed"


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    request = raw_schema["components"]["schemas"]["ChatCompletionRequest"]
    request["properties"]["model"] = {"type": "string", "enum": [SERVED_MODEL]}
    embeddings = raw_schema["components"]["schemas"]["EmbeddingRequest"]
    embeddings["properties"]["model"] = {"type": "string", "enum": [EMBEDDING_MODEL]}
