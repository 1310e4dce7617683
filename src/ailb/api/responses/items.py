"""GET /v1/responses/{id}/input_items: a stored response's input, as Responses API items.

What is stored is the input in chat terms (request.py translated it); these pure functions turn
it back into the items the official SDK's `responses.input_items.list` pages through: messages
(text, images, files as input parts; an assistant's text as output_text), function calls and
their outputs. Item ids are derived from the response's and the item's place, so they are
stable across reads and a cursor (`after`, `before`) finds its place again.
"""

from __future__ import annotations

from typing import Any

from ailb.errors import InvalidRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def content_parts(content: Any, role: str) -> list[dict[str, Any]]:
    text_kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        return [{"type": text_kind, "text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": text_kind, "text": part.get("text") or ""})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            parts.append(
                {
                    "type": "input_image",
                    "image_url": image.get("url"),
                    "detail": image.get("detail") or "auto",
                }
            )
        elif kind == "file":
            file = part.get("file") or {}
            parts.append({"type": "input_file", **file})
    return parts


def input_items(messages: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """Chat messages as input items, in the order they were sent."""
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role") or "user"
        if role == "tool":
            content = message.get("content")
            output = content if isinstance(content, str) else ""
            if isinstance(content, list):
                output = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
            items.append(
                {
                    "id": f"fco_{suffix}_{i}",
                    "type": "function_call_output",
                    "call_id": message.get("tool_call_id") or "",
                    "output": output,
                    "status": "completed",
                }
            )
            continue
        parts = content_parts(message.get("content"), role)
        if parts:
            items.append(
                {
                    "id": f"msg_{suffix}_{i}",
                    "type": "message",
                    "role": role,
                    "status": "completed",
                    "content": parts,
                }
            )
        for j, call in enumerate(message.get("tool_calls") or ()):
            fn = call.get("function") or {}
            items.append(
                {
                    "id": f"fc_{suffix}_{i}_{j}",
                    "type": "function_call",
                    "call_id": call.get("id") or "",
                    "name": fn.get("name") or "",
                    "arguments": fn.get("arguments") or "",
                    "status": "completed",
                }
            )
    return items


def page_params(query: dict[str, str]) -> tuple[int, str, str | None, str | None]:
    """(limit, order, after, before) from the query string, as OpenAI takes them."""
    raw = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(
                f"Invalid value for 'limit': expected an integer from 1 to {MAX_LIMIT}.",
                param="limit",
                code="invalid_value",
            )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            "Invalid value for 'order': expected 'asc' or 'desc'.",
            param="order",
            code="invalid_value",
        )
    return limit, order, query.get("after"), query.get("before")


def page(
    items: list[dict[str, Any]], limit: int, order: str, after: str | None, before: str | None
) -> dict[str, Any]:
    """One page of a list object: items after `after` and before `before` (ids, in `order`)."""
    ordered = items if order == "asc" else items[::-1]
    ids = [item["id"] for item in ordered]
    start, end = 0, len(ordered)
    for cursor, name in ((after, "after"), (before, "before")):
        if cursor is None:
            continue
        if cursor not in ids:
            raise InvalidRequest(
                f"Invalid value for '{name}': no input item '{cursor}' in this response.",
                param=name,
                code="invalid_value",
            )
        if name == "after":
            start = ids.index(cursor) + 1
        else:
            end = ids.index(cursor)
    window = ordered[start:end]
    data = window[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(window) > limit,
    }
