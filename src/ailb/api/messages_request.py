"""An Anthropic Messages API request in the pipeline's terms (OpenAI chat), and as it goes to an
Anthropic upstream unchanged.

Pure functions. The pipeline admits, augments and routes every request as a chat one, so each
Messages request is translated; whether the translation is what goes upstream depends on the
deployment an attempt lands on: an Anthropic deployment gets the client's own body (every field,
cache_control, signed thinking, documents, server tools), any other the chat body. What the chat
side cannot express is collected as `issues` rather than refused at once: an Anthropic
deployment takes it, and an attempt on another refuses it by name (400, `UnsupportedFeature`).

The choices:
- `system` (a string or text blocks) is the first system message;
- text, image (base64 or URL) and document blocks (a base64 PDF is a chat `file` part, a text
  source is text) are content parts; `cache_control` and `citations` on them have no chat
  equivalent and no effect there;
- an assistant's `tool_use` blocks are its tool calls; a user's `tool_result` blocks are tool
  messages before the rest of the turn (`is_error` results say so in their text);
- an assistant's `thinking` is its `reasoning_content` (redacted thinking is left out);
- `max_tokens` is `max_completion_tokens`, `stop_sequences` is `stop`, `metadata.user_id` is
  `user`; `thinking` is `reasoning_effort` by its budget (`effort_for`);
- `tool_choice` auto/any/tool/none is auto/required/the function/none, and
  `disable_parallel_tool_use` is `parallel_tool_calls: false`;
- AILB's `session_id`, `rag_collection`, `rag_top_k` may be body fields, and `session_id` may
  also be `metadata.session_id` (for clients that cannot add fields): none reaches Anthropic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ailb.api.schemas import AILB_FIELDS
from ailb.errors import InvalidRequest

# Messages API fields that change nothing on a chat upstream.
NO_EFFECT = frozenset({"service_tier"})
# Messages API fields with no chat equivalent: served by Anthropic deployments only.
ANTHROPIC_ONLY = {
    "top_k": "Top-k sampling (`top_k`)",
    "container": "Code-execution containers (`container`)",
    "mcp_servers": "MCP servers (`mcp_servers`)",
    "context_management": "Context management (`context_management`)",
}
TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
    }
)
MAX_STOP = 4  # what OpenAI's `stop` takes

# thinking.budget_tokens -> reasoning_effort: the smallest level whose budget covers it, on the
# scale the Anthropic translation uses the other way (1024 low, 4096 medium, 16384 high).
EFFORTS = ((2048, "low"), (8192, "medium"))


@dataclass(slots=True)
class Translated:
    """`chat`: the request as an OpenAI chat body (AILB's fields included); `upstream`: the
    Messages body an Anthropic deployment gets (AILB's fields taken out); `issues`: (what,
    param) the chat body cannot carry."""

    chat: dict[str, Any]
    upstream: dict[str, Any]
    issues: list[tuple[str, str]] = field(default_factory=list)


def translate(body: Any, count: bool = False) -> Translated:
    """`count`: a count_tokens request, which has no `max_tokens`."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    issues: list[tuple[str, str]] = []
    upstream = {k: v for k, v in body.items() if k not in AILB_FIELDS}
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", param="model")
    chat: dict[str, Any] = {"model": model}
    limit = body.get("max_tokens")
    if not count or limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequest(
                "max_tokens: Field required (a positive integer)", param="max_tokens"
            )
        chat["max_completion_tokens"] = limit
    messages = system_messages(body.get("system"))
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    for i, m in enumerate(raw):
        messages += chat_messages(m, i, issues)
    chat["messages"] = messages or [{"role": "user", "content": ""}]

    for name, value in body.items():
        if value is None or name in TRANSLATED or name in NO_EFFECT or name in AILB_FIELDS:
            continue
        what = ANTHROPIC_ONLY.get(name, f"The parameter `{name}`")
        issues.append((what, name))
    for name in ("stream", "temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest("stop_sequences: a list of strings", param="stop_sequences")
        if len(stops) > MAX_STOP:
            issues.append((f"More than {MAX_STOP} `stop_sequences`", "stop_sequences"))
        chat["stop"] = stops[:MAX_STOP]
    metadata = body.get("metadata")
    if metadata is not None:
        _metadata(metadata, chat, upstream)
    tools = body.get("tools")
    if tools is not None:
        chat["tools"] = chat_tools(tools, issues)
    choice = body.get("tool_choice")
    if choice is not None:
        chat.update(chat_tool_choice(choice))
    effort = effort_for(body.get("thinking"))
    if effort is not None:
        chat["reasoning_effort"] = effort
    for name in AILB_FIELDS:
        if body.get(name) is not None:
            chat[name] = body[name]
    return Translated(chat, upstream, issues)


def _metadata(metadata: Any, chat: dict[str, Any], upstream: dict[str, Any]) -> None:
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata: Input should be an object", param="metadata")
    user = metadata.get("user_id")
    if isinstance(user, str) and user:
        chat["user"] = user
    session = metadata.get("session_id")
    if session is not None:
        chat.setdefault("session_id", session)
        rest = {k: v for k, v in metadata.items() if k != "session_id"}
        if rest:
            upstream["metadata"] = rest
        else:
            del upstream["metadata"]


# --- messages ------------------------------------------------------------------------------------


def system_messages(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise InvalidRequest("system: a string or a list of text blocks", param="system")
    texts = []
    for j, b in enumerate(system):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise InvalidRequest("system: only text blocks", param=f"system[{j}]")
        texts.append(b["text"])
    text = "\n\n".join(t for t in texts if t)
    return [{"role": "system", "content": text}] if text else []


def chat_messages(m: Any, i: int, issues: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One Messages API turn as chat messages (a user turn's tool results are tool messages,
    before the rest of it)."""
    if not isinstance(m, dict):
        raise InvalidRequest("A message must be an object.", param=f"messages[{i}]")
    role = m.get("role")
    content = m.get("content")
    if role not in ("user", "assistant"):
        raise InvalidRequest(
            f"messages.{i}.role: Input should be 'user' or 'assistant'", param=f"messages[{i}].role"
        )
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages.{i}.content: a string or a list of content blocks",
            param=f"messages[{i}].content",
        )
    if role == "assistant":
        return [_assistant(content, i, issues)]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, b in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "tool_result":
            tools.append(_tool_result(b, param, issues))
        else:
            part = content_part(b, param, issues)
            if part is not None:
                parts.append(part)
    out = tools
    if parts or not tools:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(blocks: list[Any], i: int, issues: list[tuple[str, str]]) -> dict[str, Any]:
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, b in enumerate(blocks):
        param = f"messages[{i}].content[{j}]"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            text.append(_str(b, "text", param))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": _str(b, "id", param),
                    "type": "function",
                    "function": {
                        "name": _str(b, "name", param),
                        "arguments": json.dumps(b.get("input") or {}, ensure_ascii=False),
                    },
                }
            )
        elif kind == "thinking":
            reasoning.append(_str(b, "thinking", param))
        elif kind == "redacted_thinking":
            continue  # encrypted for Anthropic's eyes only: nothing another model could read
        else:
            issues.append((f"Content block type {kind!r} in an assistant turn", param))
    joined = "".join(text)
    message: dict[str, Any] = {"role": "assistant", "content": joined or (None if calls else "")}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_result(b: dict[str, Any], param: str, issues: list[tuple[str, str]]) -> dict[str, Any]:
    content = b.get("content")
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(_str(part, "text", f"{param}.content[{k}]"))
            else:
                issues.append((f"{kind!r} blocks in tool results", f"{param}.content[{k}]"))
        content = "\n".join(texts)
    elif content is None:
        content = ""
    elif not isinstance(content, str):
        raise InvalidRequest("tool_result content: a string or a list of blocks", param=param)
    if b.get("is_error"):
        content = f"Error: {content}" if content else "Error"
    return {"role": "tool", "tool_call_id": _str(b, "tool_use_id", param), "content": content}


def content_part(b: Any, param: str, issues: list[tuple[str, str]]) -> dict[str, Any] | None:
    """A user's content block as a chat content part (None: nothing the chat side can carry,
    noted in `issues`)."""
    kind = b.get("type") if isinstance(b, dict) else None
    if kind == "text":
        return {"type": "text", "text": _str(b, "text", param)}
    if kind == "image":
        source = _source(b, param)
        if source.get("type") == "base64":
            url = f"data:{_str(source, 'media_type', param)};base64,{_str(source, 'data', param)}"
            return {"type": "image_url", "image_url": {"url": url}}
        if source.get("type") == "url":
            return {"type": "image_url", "image_url": {"url": _str(source, "url", param)}}
    elif kind == "document":
        source = _source(b, param)
        if source.get("type") == "text":
            return {"type": "text", "text": _str(source, "data", param)}
        if source.get("type") == "base64":
            media = _str(source, "media_type", param)
            file: dict[str, Any] = {
                "file_data": f"data:{media};base64,{_str(source, 'data', param)}"
            }
            if isinstance(b.get("title"), str) and b["title"]:
                file["filename"] = b["title"]
            return {"type": "file", "file": file}
    elif kind == "thinking" or kind == "tool_use":
        raise InvalidRequest(f"A {kind} block belongs in an assistant turn.", param=param)
    else:
        issues.append((f"Content block type {kind!r}", param))
        return None
    issues.append((f"A {kind} source of type {source.get('type')!r}", f"{param}.source"))
    return None


def _source(b: dict[str, Any], param: str) -> dict[str, Any]:
    source = b.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest("source: Field required", param=f"{param}.source")
    return source


def _str(b: dict[str, Any], name: str, param: str) -> str:
    value = b.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: Field required (a string)", param=f"{param}.{name}")
    return value


# --- tools and thinking --------------------------------------------------------------------------


def chat_tools(tools: Any, issues: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Client tools as function tools; Anthropic's server tools (web search, code execution,
    computer use ...: a `type` other than `custom`) only Anthropic runs."""
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be a list", param="tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise InvalidRequest("A tool must be an object.", param=f"tools[{i}]")
        kind = t.get("type", "custom")
        if kind != "custom":
            issues.append((f"Server tool {kind!r}", f"tools[{i}].type"))
            continue
        fn: dict[str, Any] = {"name": _str(t, "name", f"tools[{i}]")}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        schema = t.get("input_schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("input_schema: Field required", param=f"tools[{i}].input_schema")
        fn["parameters"] = schema
        out.append({"type": "function", "function": fn})
    return out


def chat_tool_choice(choice: Any) -> dict[str, Any]:
    """tool_choice (and parallel_tool_calls) for a Messages API tool_choice."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    out: dict[str, Any]
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        out = {"tool_choice": "none"}
    elif kind == "tool":
        name = _str(choice, "name", "tool_choice")
        out = {"tool_choice": {"type": "function", "function": {"name": name}}}
    else:
        raise InvalidRequest(
            "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
            param="tool_choice.type",
        )
    assert isinstance(choice, dict)
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def effort_for(thinking: Any) -> str | None:
    """Extended thinking as a reasoning_effort: none for `disabled`, `medium` for `adaptive`,
    else the smallest level whose budget covers `budget_tokens`."""
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return None
    if kind == "adaptive":
        return "medium"
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if kind != "enabled" or not isinstance(budget, int) or isinstance(budget, bool):
        raise InvalidRequest(
            "thinking: `{type: enabled, budget_tokens: <int>}`, `{type: disabled}` or "
            "`{type: adaptive}`",
            param="thinking",
        )
    for most, effort in EFFORTS:
        if budget <= most:
            return effort
    return "high"
