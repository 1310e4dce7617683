"""A deterministic stand-in for a model, good enough for agent frameworks: it reads the
conversation a fake upstream received and decides what a cooperative model would answer.

`attach(server, provider)` makes a fake (openai.py, anthropic.py, ollama.py) answer every
unscripted request with it; the fake renders the `Reply` in its exact wire format, streamed or
not, so the brain works on one neutral form: the request as OpenAI chat-completions fields
(`to_neutral`). What it does, in order:

1. A task (the last user message) that names offered tools plans calls of them: all at once
   (parallel calls), or one per round when it says "then" (a chain: each call's string
   arguments are the previous tool's result). Arguments are generated from the tool's schema;
   strings get the task's last word ("... for Paris" -> "Paris").
2. When the plan is done (or there is none), the answer: a forced function is called; a
   function the system prompt names (an instruction to answer with it) is called; `required`
   calls the tool the task did not name (an output tool); a json_schema gets JSON generated
   from the schema; a json_object (or a prompt that asks for JSON) gets JSON for a schema
   found in the prompt, else `{"answer": ...}`; otherwise text: the tool results, the images
   and documents counted, or the task echoed.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from tests.fakes.server import FakeServer, Reply, ToolCall

ANTHROPIC_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
DEFAULT_HINT = "text"


# --- the provider's request as OpenAI fields ----------------------------------------------------


def to_neutral(provider: str, body: Any) -> dict[str, Any]:
    """`messages`, `tools`, `tool_choice` and `response_format` in OpenAI's terms."""
    body = body if isinstance(body, dict) else {}
    if provider == "anthropic":
        return _from_anthropic(body)
    if provider == "ollama":
        return _from_ollama(body)
    if body.get("functions") is not None:  # the legacy form of tools
        call = body.get("function_call")
        return {
            **body,
            "tools": [{"type": "function", "function": f} for f in body["functions"]],
            "tool_choice": {"type": "function", "function": call}
            if isinstance(call, dict)
            else call,
        }
    return body


def _from_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _anthropic_text(system)})
    for m in body.get("messages") or ():
        blocks = m.get("content")
        blocks = [{"type": "text", "text": blocks}] if isinstance(blocks, str) else blocks or []
        if m.get("role") == "assistant":
            calls = [
                {
                    "id": b["id"],
                    "type": "function",
                    "function": {"name": b["name"], "arguments": json.dumps(b.get("input"))},
                }
                for b in blocks
                if b.get("type") == "tool_use"
            ]
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
            messages.append({"role": "assistant", "content": text, "tool_calls": calls})
            continue
        results = [b for b in blocks if b.get("type") == "tool_result"]
        for r in results:  # text beside tool results is not a new task
            content = _anthropic_text(r.get("content") or "")
            messages.append({"role": "tool", "tool_call_id": r["tool_use_id"], "content": content})
        if not results:
            parts: list[dict[str, Any]] = []
            for b in blocks:
                if b.get("type") == "text":
                    parts.append({"type": "text", "text": b.get("text", "")})
                elif b.get("type") == "image":
                    parts.append({"type": "image_url", "image_url": {"url": "anthropic-image"}})
                elif b.get("type") == "document":
                    parts.append({"type": "file", "file": {"filename": "anthropic-document"}})
            messages.append({"role": "user", "content": parts})
    tools = [
        {
            "type": "function",
            "function": {"name": t["name"], "parameters": t.get("input_schema") or {}},
        }
        for t in body.get("tools") or ()
        if "input_schema" in t
    ]
    choice = body.get("tool_choice") or {}
    tool_choice: Any = ANTHROPIC_TOOL_CHOICE.get(choice.get("type"))
    if choice.get("type") == "tool":
        tool_choice = {"type": "function", "function": {"name": choice.get("name")}}
    return {"messages": messages, "tools": tools, "tool_choice": tool_choice}


def _anthropic_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def _from_ollama(body: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for m in body.get("messages") or ():
        out: dict[str, Any] = {"role": m.get("role"), "content": m.get("content") or ""}
        if m.get("images"):
            out["content"] = [
                {"type": "text", "text": out["content"]},
                *({"type": "image_url", "image_url": {"url": "ollama-image"}} for _ in m["images"]),
            ]
        if m.get("tool_calls"):
            out["tool_calls"] = [
                {
                    "id": c.get("id") or "",
                    "type": "function",
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.dumps(c["function"].get("arguments")),
                    },
                }
                for c in m["tool_calls"]
            ]
        messages.append(out)
    fmt = body.get("format")
    response_format: Any = None
    if fmt == "json":
        response_format = {"type": "json_object"}
    elif isinstance(fmt, dict):
        response_format = {"type": "json_schema", "json_schema": {"name": "f", "schema": fmt}}
    return {
        "messages": messages,
        "tools": body.get("tools") or [],
        "response_format": response_format,
    }


# --- deciding ----------------------------------------------------------------------------------


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def images_in(content: Any, kind: str = "image_url") -> int:
    """How many parts of a kind (image_url, file) a message's content has."""
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") == kind)


def decide(req: dict[str, Any], id_prefix: str = "call_") -> Reply:
    """The reply to a request in OpenAI's terms."""
    messages = [m for m in req.get("messages") or () if isinstance(m, dict)]
    tools = {
        t["function"]["name"]: t["function"]
        for t in req.get("tools") or ()
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    }
    choice = req.get("tool_choice")
    system = "\n".join(
        text_of(m.get("content")) for m in messages if m["role"] in ("system", "developer")
    )
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    task = text_of(messages[last_user]["content"]) if last_user >= 0 else ""
    after = messages[last_user + 1 :]
    rounds = sum(1 for m in after if m["role"] == "assistant" and m.get("tool_calls"))
    results = [text_of(m.get("content")) for m in after if m["role"] == "tool"]
    words = re.findall(r"[A-Za-z0-9][\w-]*", task)
    hint = words[-1] if words else DEFAULT_HINT

    def call(name: str, arg_hint: str) -> ToolCall:
        schema = tools[name].get("parameters") or {"type": "object", "properties": {}}
        args = json.dumps(example(schema, arg_hint))
        return ToolCall(name=name, arguments=args, id=id_prefix + secrets.token_hex(8))

    def calls(*names_hints: tuple[str, str]) -> Reply:
        made = [call(n, h) for n, h in names_hints]
        return Reply(text="", tool_calls=made, finish_reason="tool_calls", usage=_usage(req))

    # Tools the task names, in the order it names them.
    found = sorted(
        (m.start(), name)
        for name in tools
        if (m := re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", task))
    )
    plan = [name for _, name in found]
    chain = re.search(r"\bthen\b", task) is not None

    if isinstance(choice, dict) and (choice.get("function") or {}).get("name") in tools:
        return calls((choice["function"]["name"], hint))
    if choice != "none" and plan:
        if chain and rounds < len(plan):
            return calls((plan[rounds], results[-1] if results else hint))
        if not chain and rounds == 0:
            return calls(*((name, hint) for name in plan))

    # The plan is done: the answer.
    if choice != "none":
        # A tool the system prompt names (a gateway's instruction to answer through it).
        named = [n for n in tools if n not in plan and re.search(rf"\b{re.escape(n)}\b", system)]
        if named:
            return calls((named[0], hint))
        required = choice == "required" or "must call" in system
        if required and tools:
            unplanned = [name for name in tools if name not in plan]
            return calls(((unplanned or list(tools))[0], hint))
    content = messages[last_user]["content"] if last_user >= 0 else None
    if results:
        answer = "Tool results: " + "; ".join(results)
    elif images_in(content) or images_in(content, "file"):
        seen = [(images_in(content), "image(s)"), (images_in(content, "file"), "document(s)")]
        answer = "I see " + " and ".join(f"{n} {what}" for n, what in seen if n) + "."
    else:
        answer = f"Echo: {task}"
    fmt = req.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        return Reply(text=json.dumps(example(schema, hint)), usage=_usage(req))
    if fmt.get("type") == "json_object" or "JSON" in system or "JSON" in task:
        schema = schema_in(system + "\n" + task)
        value = example(schema, hint) if schema is not None else {"answer": answer}
        return Reply(text=json.dumps(value), usage=_usage(req))
    return Reply(text=answer, usage=_usage(req))


def _usage(req: dict[str, Any]) -> tuple[int, int]:
    return (10 + len(req.get("messages") or ()), 7)


def schema_in(text: str) -> dict[str, Any] | None:
    """The first JSON Schema object (one with `properties`) written in a prompt."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("properties"), dict):
            return value
    return None


# --- values from a JSON Schema -----------------------------------------------------------------

_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "12:00:00",
    "email": "ada@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example(schema: Any, hint: str = DEFAULT_HINT, root: Any = None, depth: int = 0) -> Any:
    """A value valid for `schema`: every property filled (strict schemas require all),
    enums' first value, bounds respected, strings `hint`."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 12:
        return hint
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return example(target, hint, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = [b for b in schema.get(key) or () if b.get("type") != "null"]
        if branches:
            return example(branches[0], hint, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: example(v, hint, root, depth + 1) for k, v in props.items()}
    if kind == "array":
        prefix = schema.get("prefixItems")
        if prefix:
            return [example(s, hint, root, depth + 1) for s in prefix]
        count = max(1, int(schema.get("minItems") or 1))
        return [example(schema.get("items") or {}, hint, root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(1, low + 1 if "exclusiveMinimum" in schema else low)
        high = schema.get("maximum")
        value = min(value, high) if high is not None else value
        return int(value) if kind == "integer" else float(value) + 0.5 * (high is None)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    text = hint.ljust(int(schema.get("minLength") or 0), "x")
    return text[: schema["maxLength"]] if schema.get("maxLength") else text


# --- wiring -----------------------------------------------------------------------------------

_ID_PREFIXES = {"openai": "call_", "anthropic": "toolu_", "ollama": "call_"}


def attach(server: FakeServer, provider: str) -> FakeServer:
    """Makes `server` (a fake of `provider`) answer unscripted requests with the brain."""
    prefix = _ID_PREFIXES[provider]
    server.chooser = lambda body: decide(to_neutral(provider, body), prefix)
    return server
