"""Native pass-through: a model whose every deployment declares `responses: native` (an OpenAI
upstream that serves /responses itself) gets the client's Responses body as it is, and the
client gets the upstream's answer, or its events, as they are (hosted tools, OpenAI's own
stored responses and previous_response_id included). The pipeline still admits, routes, fails
over and accounts it: the chat body it sees is only an estimate of the request (its size, its
tools, its answer limit) and carries the Responses body to the provider
(ailb.providers.openai_responses)."""

from __future__ import annotations

from typing import Any

import msgspec

from ailb.api.chat import SSE_HEADERS
from ailb.api.responses.reply import new_id, response_object, sse
from ailb.api.responses.request import bad, tools
from ailb.api.schemas import AILB_FIELDS
from ailb.live import LiveConfig
from ailb.providers.openai_responses import NATIVE

_encode = msgspec.json.Encoder().encode


def is_native(live: LiveConfig, model: Any) -> bool:
    return isinstance(model, str) and model in live.router.native_responses


def admission_body(raw: dict[str, Any]) -> dict[str, Any]:
    """What the pipeline needs to know of a pass-through, in chat terms: the model, the input's
    size (as text), the tools (for routing by capability), the answer's limit."""
    for name in AILB_FIELDS:
        if raw.get(name) is not None:
            raise bad(
                name,
                f"'{name}' is not available for this model: its deployments pass the Responses "
                "API through to the upstream (responses: native), where AILB adds no context.",
                "unsupported_parameter",
            )
    text = _encode([raw.get("instructions"), raw.get("input")]).decode()
    body: dict[str, Any] = {
        "model": raw.get("model"),
        "messages": [{"role": "user", "content": text}],
    }
    listed = raw.get("tools")
    if isinstance(listed, list) and listed:
        functions = [t for t in listed if isinstance(t, dict) and t.get("type") == "function"]
        others = [
            {"type": str(t.get("type"))}
            for t in listed
            if isinstance(t, dict) and t.get("type") != "function"
        ]
        body["tools"] = tools(functions) + others
    for name, chat_name in (("max_output_tokens", "max_completion_tokens"), ("user", "user")):
        if raw.get(name) is not None:
            body[chat_name] = raw[name]
    if raw.get("stream") is not None:
        body["stream"] = raw["stream"]
    return body


def upstream_body(raw: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    """The chat body the pipeline routes: the Responses body rides along under NATIVE, with the
    answer limit the admission set when the client gave none."""
    passed = {k: v for k, v in raw.items() if k not in AILB_FIELDS}
    if passed.get("max_output_tokens") is None and chat.get("max_completion_tokens"):
        passed["max_output_tokens"] = chat["max_completion_tokens"]
    return {"model": chat["model"], NATIVE: passed}


class NativeStream:
    """The upstream's events as they came; a stream broken after the first byte ends with a
    response.failed of the same response, numbered after the last event sent."""

    headers = SSE_HEADERS

    def __init__(self, echo: dict[str, Any], created_at: float) -> None:
        self.echo = echo
        self.created_at = created_at
        self.response_id: str | None = None
        self.seq = 0
        self.ended = False  # the upstream's own terminal event went out

    def encode(self, chunk: dict[str, Any]) -> bytes | None:
        if chunk.get("response_id"):
            self.response_id = chunk["response_id"]
        if isinstance(chunk.get("sequence_number"), int):
            self.seq = chunk["sequence_number"] + 1
        frame = chunk.get(NATIVE)
        return frame if isinstance(frame, bytes) else None

    def done(self) -> bytes:
        return b""

    def error(self, message: str, code: str) -> bytes:
        failed = response_object(
            self.response_id or new_id("resp"),
            self.created_at,
            self.echo,
            status="failed",
            output=[],
            error={"code": "server_error", "message": f"{message} ({code})"},
        )
        return sse({"type": "response.failed", "sequence_number": self.seq, "response": failed})
