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


def response_object(
    response_id: str,
    created_at: float,
    echo: dict[str, Any],
    *,
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
    """A Response: what the client asked for (echoed, as OpenAI does) and what came back."""
    reason = INCOMPLETE.get(finish_reason or "")
    if reason is not None and status == "completed":
        status = "incomplete"
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": instructions,
        "max_output_tokens": echo.get("max_output_tokens"),
        "metadata": echo.get("metadata") or {},
        "model": model or echo.get("model"),
        "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": previous_response_id,
        "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": echo.get("service_tier"),
        "store": store,
        "temperature": echo.get("temperature"),
        "text": echo.get("text") or {"format": {"type": "text"}},
        "tool_choice": echo.get("tool_choice", "auto"),
        "tools": echo.get("tools") or [],
        "top_p": echo.get("top_p"),
        "truncation": echo.get("truncation", "disabled"),
        "usage": usage,
        "user": echo.get("user"),
    }


def usage_of(chat: dict[str, Any] | None) -> dict[str, Any] | None:
    if not chat:
        return None
    prompt = int(chat.get("prompt_tokens") or 0)
    completion = int(chat.get("completion_tokens") or 0)
    cached = (chat.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (chat.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
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
    message: dict[str, Any], logprobs: list[Any] | None = None
) -> list[dict[str, Any]]:
    """A chat answer's message as Response output items: reasoning, text, function calls."""
    out: list[dict[str, Any]] = []
    thought = reasoning_text(message)
    if thought:
        out.append(reasoning_item(new_id("rs"), thought))
    content = message.get("content")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str) and content:
        parts.append(text_part(content, logprobs))
    elif isinstance(content, list):  # some servers answer in parts
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if text:
            parts.append(text_part(text))
    if message.get("refusal"):
        parts.append(refusal_part(message["refusal"]))
    if parts:
        out.append(message_item(new_id("msg"), parts, "completed"))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        out.append(
            function_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                fn.get("name") or "",
                fn.get("arguments") or "",
                "completed",
            )
        )
    return out


def from_completion(
    result: dict[str, Any], response_id: str, created_at: float, echo: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    choices = result.get("choices") or [{}]
    choice = choices[0]
    return response_object(
        response_id,
        created_at,
        echo,
        status="completed",
        output=output_items(choice.get("message") or {}, token_logprobs(choice)),
        usage=usage_of(result.get("usage")),
        model=result.get("model"),
        finish_reason=choice.get("finish_reason"),
        **kw,
    )


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
