"""Chat answers as Responses API objects: a whole chat.completion as a Response, and a stream
of chat chunks as the Responses event sequence the official SDK assembles (its types in
openai/types/responses are the contract)."""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

# finish_reason -> incomplete_details.reason; any other reason is a complete answer.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """Time-ordered like request ids, so stored responses sort by age. Unique, not secret (a
    stored response is found only by the key that made it): 64 bits from `random`, a tenth of
    the cost of the operating system's (this runs several times per request)."""
    return f"{prefix}_{time.time_ns():016x}{random.getrandbits(64):016x}"


# A Response's fields, in OpenAI's order, as they are when the request did not set them. Copied
# per response (shallowly: nothing changes a response's nested values once it is made).
RESPONSE_DEFAULTS: dict[str, Any] = {
    "id": None, "object": "response", "created_at": 0, "status": None, "background": False,
    "error": None, "incomplete_details": None, "instructions": None, "max_output_tokens": None,
    "metadata": {}, "model": None, "output": [], "parallel_tool_calls": True,
    "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
    "service_tier": None, "store": True, "temperature": None,
    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
    "truncation": "disabled", "usage": None, "user": None,
}  # fmt: skip
# The request's fields a Response repeats (ailb.api.responses.request.decode picks them; a
# falsy object or list there reads as the default).
ECHOED = frozenset(RESPONSE_DEFAULTS) - {
    "id", "object", "created_at", "status", "background", "error", "incomplete_details",
    "instructions", "output", "previous_response_id", "store", "usage",
}  # fmt: skip


def response_fields(
    response_id: str,
    created_at: float,
    echo: dict[str, Any],
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    model: str | None = None,
    instructions: str | None = None,
    previous_response_id: str | None = None,
    store: bool = True,
    finish_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Response's fields that are not RESPONSE_DEFAULTS: what the client asked for (`echo`:
    its fields in ECHOED, repeated as OpenAI does) and what came back. What is stored."""
    fields = {"id": response_id, **echo, "created_at": int(created_at), "output": output}
    reason = INCOMPLETE.get(finish_reason) if finish_reason else None
    if reason is not None:
        fields["incomplete_details"] = {"reason": reason}
        if status == "completed":
            status = "incomplete"
    fields["status"] = status
    if model:
        fields["model"] = model
    if usage is not None:
        fields["usage"] = usage
    if error is not None:
        fields["error"] = error
    if instructions is not None:
        fields["instructions"] = instructions
    if previous_response_id is not None:
        fields["previous_response_id"] = previous_response_id
    if not store:
        fields["store"] = False
    return fields


def whole(fields: dict[str, Any]) -> dict[str, Any]:
    """The Response object of its fields (response_fields): every field, in OpenAI's order."""
    return {**RESPONSE_DEFAULTS, **fields}


# Each default field as JSON (`"name":value`), for whole_json.
DEFAULT_JSON = tuple((k, _encode({k: v})[1:-1]) for k, v in RESPONSE_DEFAULTS.items())


def whole_json(fields: dict[str, Any], encoded: bytes) -> bytes:
    """whole(fields) as JSON, from the fields' own JSON (`encoded`): the fields, then the
    defaults they do not set. The fields are encoded once for the answer and the stored
    document alike (encoding the whole object again cost the face about a tenth of its
    requests/s); its keys come in another order than OpenAI's, which no JSON reader minds."""
    rest = b",".join([part for name, part in DEFAULT_JSON if name not in fields])
    return encoded[:-1] + b"," + rest + b"}" if rest else encoded


def response_object(
    response_id: str, created_at: float, echo: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    """The whole Response (response_fields' arguments)."""
    return whole(response_fields(response_id, created_at, echo, **kw))


_MISSING = object()


def non_default(response: dict[str, Any]) -> dict[str, Any]:
    """A whole Response's fields that are not RESPONSE_DEFAULTS (response_fields' result)."""
    return {k: v for k, v in response.items() if RESPONSE_DEFAULTS.get(k, _MISSING) != v}


def usage_of(chat: dict[str, Any] | None) -> dict[str, Any] | None:
    if not chat:
        return None
    prompt = int(chat.get("prompt_tokens") or 0)
    completion = int(chat.get("completion_tokens") or 0)
    details = chat.get("prompt_tokens_details")
    cached = int(details.get("cached_tokens") or 0) if details else 0
    written = int(details.get("cache_write_tokens") or 0) if details else 0
    details = chat.get("completion_tokens_details")
    reasoning = int(details.get("reasoning_tokens") or 0) if details else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": int(chat.get("total_tokens") or prompt + completion),
    }


def text_part(text: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def refusal_part(text: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": text}


def token_logprobs(choice: dict[str, Any]) -> list[Any]:
    """A chat choice's (or chunk choice's) token logprobs: the Responses API's entries have the
    same fields (token, logprob, bytes, top_logprobs)."""
    found = choice.get("logprobs")
    content = found.get("content") if isinstance(found, dict) else None
    return content if isinstance(content, list) else []


def message_item(item_id: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": parts,
    }


def function_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}] if text else [],
        "status": status,
    }


def reasoning_text(message: dict[str, Any]) -> str:
    """Thinking text, under the name the provider module (or the upstream) gave it."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else ""


def output_items(
    message: dict[str, Any], logprobs: list[Any] | None = None, suffix: str | None = None
) -> list[dict[str, Any]]:
    """A chat answer's message as Response output items: reasoning, text, function calls.
    `suffix`: what makes the items' ids unique (the response's own, when it has one)."""
    if suffix is None:
        suffix = new_id("")[1:]
    out: list[dict[str, Any]] = []
    thought = reasoning_text(message)
    if thought:
        out.append(reasoning_item("rs_" + suffix, thought))
    content = message.get("content")
    parts: list[dict[str, Any]] = []
    if type(content) is str:
        if content:
            parts.append(text_part(content, logprobs))
    elif isinstance(content, list):  # some servers answer in parts
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if text:
            parts.append(text_part(text))
    refusal = message.get("refusal")
    if refusal:
        parts.append(refusal_part(refusal))
    if parts:
        out.append(message_item("msg_" + suffix, parts, "completed"))
    calls = message.get("tool_calls")
    if calls:
        for i, call in enumerate(calls):
            fn = call.get("function") or {}
            out.append(
                function_item(
                    f"fc_{suffix}_{i}",
                    call.get("id") or new_id("call"),
                    fn.get("name") or "",
                    fn.get("arguments") or "",
                    "completed",
                )
            )
    return out


def completion_fields(
    result: dict[str, Any],
    response_id: str,
    created_at: float,
    echo: dict[str, Any],
    instructions: str | None = None,
    previous_response_id: str | None = None,
    store: bool = True,
) -> dict[str, Any]:
    """A whole chat.completion as a Response's fields (response_fields)."""
    choices = result.get("choices")
    choice = choices[0] if choices else {}
    logprobs = token_logprobs(choice) if choice.get("logprobs") else None
    output = output_items(choice.get("message") or {}, logprobs, response_id.partition("_")[2])
    return response_fields(
        response_id,
        created_at,
        echo,
        "completed",
        output,
        usage_of(result.get("usage")),
        result.get("model"),
        instructions,
        previous_response_id,
        store,
        choice.get("finish_reason"),
    )


def from_completion(
    result: dict[str, Any], response_id: str, created_at: float, echo: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    """A whole chat.completion as a Response object."""
    return whole(completion_fields(result, response_id, created_at, echo, **kw))


def as_chat_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Response output items as the chat messages a follow-up request carries (what
    previous_response_id prepends): one assistant message with its text and tool calls."""
    text = "".join(
        part.get("text") or part.get("refusal") or ""
        for item in output
        if item["type"] == "message"
        for part in item["content"]
    )
    calls = [
        {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        for item in output
        if item["type"] == "function_call"
    ]
    if not text and not calls:
        return []
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        msg["tool_calls"] = calls
    return [msg]


def answer_text(output: list[dict[str, Any]]) -> str:
    return "".join(
        part.get("text", "")
        for item in output
        if item["type"] == "message"
        for part in item["content"]
    )


def sse(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + _encode(event) + b"\n\n"
