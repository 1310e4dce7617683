"""OpenAI chat messages as Anthropic's `system` and `messages`, made valid where the meaning is
plain (pure functions; the rules are listed in `anthropic_request`'s docstring and the README).

The Messages API refuses a conversation that does not start with a user turn, empty or
whitespace-only text, a final assistant turn ending in whitespace, tool results after other
content, and media types other than its four image types; OpenAI accepts all of these. Tool
calls keep the client's ids; a legacy `function_call` (which has none) gets one from its
position, which the `function` message answering it (matched by name) reuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ailb.errors import InvalidRequest
from ailb.providers.base import UnsupportedFeature

PROVIDER = "anthropic"
CONTINUE = "(continue)"  # the user turn put before a conversation that starts otherwise
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MEDIA_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}

Block = dict[str, Any]


def messages_of(raw: Iterable[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(the system prompt's parts, Anthropic messages)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    legacy_ids: dict[str, str] = {}  # function name -> id of its latest unanswered legacy call
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise InvalidRequest("A message must be an object.", param=f"messages[{i}]")
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(text_only(m.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(messages, "user", _user_blocks(m.get("content"), i))
        elif role == "assistant":
            _append(messages, "assistant", _assistant_blocks(m, i, legacy_ids))
        elif role == "tool":
            _append(messages, "user", [_tool_result(m, i)])
        elif role == "function":
            name = m.get("name")
            call_id = legacy_ids.pop(name, None) if isinstance(name, str) else None
            if call_id is None:
                raise InvalidRequest(
                    "A function message must name a function the assistant called before it.",
                    param=f"messages[{i}].name",
                )
            _append(messages, "user", [_tool_result({**m, "tool_call_id": call_id}, i)])
        else:
            raise InvalidRequest(f"Unsupported message role {role!r}.", param=f"messages[{i}].role")
    if not messages or messages[0]["role"] != "user":
        messages.insert(0, {"role": "user", "content": [{"type": "text", "text": CONTINUE}]})
    _trim_final_assistant(messages)
    return system, messages


def _append(messages: list[dict[str, Any]], role: str, blocks: list[Block]) -> None:
    """Consecutive turns of one role are merged (Anthropic wants them alternating, and tool
    results share the user turn after the calls), with tool results first; an empty turn is
    left out."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        blocks = messages[-1]["content"] + blocks
        messages.pop()
    if role == "user":
        results = [b for b in blocks if b["type"] == "tool_result"]
        blocks = results + [b for b in blocks if b["type"] != "tool_result"]
    messages.append({"role": role, "content": blocks})


def _trim_final_assistant(messages: list[dict[str, Any]]) -> None:
    """A final assistant turn (a prefill) may not end in whitespace."""
    last = messages[-1]
    if last["role"] != "assistant" or last["content"][-1]["type"] != "text":
        return
    text = last["content"][-1]["text"].rstrip()
    if text:
        last["content"][-1] = {**last["content"][-1], "text": text}
        return
    last["content"].pop()
    if not last["content"]:
        messages.pop()


def text_only(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text":
                parts.append(str(p.get("text") or ""))
            elif kind == "refusal":
                parts.append(str(p.get("refusal") or ""))
            else:
                raise InvalidRequest("Only text parts are allowed here.", param=param)
        return "".join(parts)
    if content is None:
        return ""
    raise InvalidRequest("Message content must be a string or a list of parts.", param=param)


def _text(text: str) -> list[Block]:
    return [{"type": "text", "text": text}] if text.strip() else []


def _user_blocks(content: Any, i: int) -> list[Block]:
    if isinstance(content, str) or content is None:
        return _text(content or "")
    if not isinstance(content, list):
        raise InvalidRequest(
            "Message content must be a string or a list of parts.", param=f"messages[{i}].content"
        )
    blocks: list[Block] = []
    for j, part in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks += _text(str(part.get("text") or ""))
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), param))
        elif kind == "file":
            blocks.append(_document_block(part.get("file"), param))
        else:
            raise UnsupportedFeature(PROVIDER, f"Content part type {kind!r}", param)
    return blocks


def _image_block(image: Any, param: str) -> Block:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest("image_url.url must be a string.", param=param)
    if url.startswith("data:"):
        media_type, data = _data_url(url, param, "data:image/png;base64,...")
        media_type = MEDIA_ALIASES.get(media_type, media_type)
        if media_type not in IMAGE_TYPES:
            raise UnsupportedFeature(
                PROVIDER, f"Image type {media_type!r} (JPEG, PNG, GIF or WebP)", param
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("image_url.url must be an http(s) URL or a data URL.", param=param)


def _document_block(file: Any, param: str) -> Block:
    """A PDF `file` part as a document block; files by id live in OpenAI's Files store, which
    Anthropic cannot read."""
    if not isinstance(file, dict):
        raise InvalidRequest("A file part needs a `file` object.", param=param)
    if file.get("file_id") is not None:
        raise UnsupportedFeature(
            PROVIDER, "Files by `file_id` (send the PDF as `file_data`)", f"{param}.file.file_id"
        )
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        raise InvalidRequest("A file part needs `file_data`.", param=f"{param}.file.file_data")
    media_type = "application/pdf"
    if data.startswith("data:"):
        media_type, data = _data_url(data, f"{param}.file.file_data", "data:application/pdf;...")
    if media_type != "application/pdf":
        raise UnsupportedFeature(PROVIDER, f"File type {media_type!r} (PDF only)", param)
    block: Block = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _data_url(url: str, param: str, example: str) -> tuple[str, str]:
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise InvalidRequest(f"Data URLs must look like {example}.", param=param)
    return media_type.lower(), data


def _assistant_blocks(m: dict[str, Any], i: int, legacy_ids: dict[str, str]) -> list[Block]:
    blocks = _thinking_blocks(m.get("thinking_blocks"), i)
    text = text_only(m.get("content"), f"messages[{i}].content")
    if not text.strip() and isinstance(m.get("refusal"), str):
        text = m["refusal"]
    blocks += _text(text)
    for j, call in enumerate(m.get("tool_calls") or ()):
        param = f"messages[{i}].tool_calls[{j}]"
        kind = call.get("type", "function") if isinstance(call, dict) else None
        if kind != "function":
            raise UnsupportedFeature(PROVIDER, f"Tool call type {kind!r}", f"{param}.type")
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest("A tool call needs its `id`.", param=f"{param}.id")
        blocks.append(_tool_use(call_id, fn, f"{param}.function"))
    legacy = m.get("function_call")
    if isinstance(legacy, dict):
        call_id = f"call_legacy_{i}"
        blocks.append(_tool_use(call_id, legacy, f"messages[{i}].function_call"))
        if isinstance(legacy.get("name"), str):
            legacy_ids[legacy["name"]] = call_id
    return blocks


def _tool_use(call_id: str, fn: dict[str, Any], param: str) -> Block:
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("A tool call needs the function's `name`.", param=f"{param}.name")
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except (TypeError, ValueError):
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest(
            "Tool call arguments must be a JSON object.", param=f"{param}.arguments"
        )
    return {"type": "tool_use", "id": call_id, "name": name, "input": args}


def _thinking_blocks(raw: Any, i: int) -> list[Block]:
    """Signed thinking sent back (`thinking_blocks`, as the answer carried it): Anthropic needs
    it to continue a tool-use turn with thinking on. Text without a signature cannot be sent."""
    if raw is None:
        return []
    param = f"messages[{i}].thinking_blocks"
    if not isinstance(raw, list):
        raise InvalidRequest("`thinking_blocks` must be a list.", param=param)
    out: list[Block] = []
    for j, b in enumerate(raw):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "thinking" and all(isinstance(b.get(k), str) for k in ("thinking", "signature")):
            out.append({"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]})
        elif kind == "redacted_thinking" and isinstance(b.get("data"), str):
            out.append({"type": "redacted_thinking", "data": b["data"]})
        else:
            raise InvalidRequest(
                "A thinking block needs `thinking` and `signature` (or is redacted_thinking "
                "with `data`).",
                param=f"{param}[{j}]",
            )
    return out


def _tool_result(m: dict[str, Any], i: int) -> Block:
    call_id = m.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            "Tool messages need the tool_call_id they answer.", param=f"messages[{i}].tool_call_id"
        )
    block: Block = {"type": "tool_result", "tool_use_id": call_id}
    text = text_only(m.get("content"), f"messages[{i}].content")
    if text.strip():  # an empty result is a result without content
        block["content"] = text
    return block
