"""An OpenAI chat-completions body as an Anthropic Messages API body, and how to read the answer.

Pure functions. Every OpenAI request field is translated, accepted as having no effect on
Anthropic, or refused with a 400 naming it: nothing is dropped silently (README, Providers,
lists each field). The choices where the two APIs differ:

- system and developer messages, wherever they appear, become the top-level `system` prompt;
- what the Messages API would refuse but has one obvious meaning is made valid rather than
  passed on to fail: a conversation that does not start with a user turn gets a `(continue)`
  user turn first, empty text is left out (and a turn left empty with it), turns of one role
  are merged, tool results go first in their turn, `image/jpg` is `image/jpeg`;
- `max_tokens` is required: the client's (`max_completion_tokens` first), else the
  deployment's `max_output_tokens`; temperatures above Anthropic's maximum of 1 are clamped;
- `response_format` json_object adds a JSON-only instruction; json_schema is a tool whose input
  schema is the client's schema, forced when nothing else is offered, else beside the client's
  tools with an instruction to answer through it; its call is the answer text;
- legacy `functions` / `function_call` are tools and tool_choice; the answer is then the legacy
  `function_call` (see `Reading`);
- `reasoning_effort` is extended thinking with a budget per level (`thinking_for`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ailb.errors import InvalidRequest
from ailb.providers.anthropic_messages import messages_of
from ailb.providers.base import UnsupportedFeature
from ailb.providers.functions import legacy_tools

PROVIDER = "anthropic"
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
SCHEMA_INSTRUCTION = (
    "When you have the final answer, give it by calling the tool `{name}` with the answer as "
    "its input, not as plain text."
)
SCHEMA_TOOL = "json_response"

# reasoning_effort -> thinking budget_tokens. Anthropic's minimum budget is 1024; `none` is no
# thinking. The client's token limit covers thinking and answer (as OpenAI's
# max_completion_tokens covers reasoning), so the budget is at most half of it. The largest
# budget plus the default max_output_tokens (4096) stays under 32,000, the smallest output
# limit of Anthropic's thinking models (Opus 4), for requests that give no limit.
THINKING_BUDGETS: dict[str, int | None] = {
    "none": None,
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 24576,
    "max": 24576,
}
MIN_THINKING_BUDGET = 1024

# Anthropic's own request fields a client may send (the openai SDK's `extra_body`): passed as
# they are, after a type check.
PASSED: dict[str, tuple[type, ...]] = {"top_k": (int,), "thinking": (dict,)}

# OpenAI fields that never change the answer: cache-routing hints for OpenAI's service, stream
# options (include_usage is the gateway's), and the stored-completion switches (Anthropic keeps
# no completions to list or distil, so there is nothing to store them in).
NO_EFFECT = frozenset(
    {
        "stream_options",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "store",
        "metadata",
    }
)

# OpenAI fields accepted only at a value that asks for nothing Anthropic lacks.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logit_bias": ({},),
    "service_tier": ("auto", "default"),
    "verbosity": ("medium",),  # OpenAI's default
    "modalities": (["text"],),
}

REFUSED = {
    "audio": "Audio output (`audio`)",
    "prediction": "Predicted outputs (`prediction`)",
    "web_search_options": "Web search (`web_search_options`)",
    "seed": "Reproducible sampling (`seed`)",
    "moderation": "Moderation (`moderation`)",
}

TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "user",
        "safety_identifier",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
    }
)


@dataclass(frozen=True, slots=True)
class Reading:
    """How to read Anthropic's answer to a translated request."""

    schema_tool: str | None = None  # a call of this tool is the answer text (json_schema)
    legacy: bool = False  # answer with `function_call`, as the legacy `functions` API does


def to_messages_request(body: dict[str, Any], max_output_tokens: int) -> dict[str, Any]:
    return translate(body, max_output_tokens)[0]


def translate(body: dict[str, Any], max_output_tokens: int) -> tuple[dict[str, Any], Reading]:
    """(the Messages API body, how to read its answer)."""
    _audit_fields(body)
    system, messages = messages_of(body.get("messages") or ())
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    out: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": limit or max_output_tokens,
    }
    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(float(temperature), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    for name in PASSED:
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}

    legacy = body.get("functions") is not None or body.get("function_call") is not None
    tools, choice = _tools_and_choice(body, legacy)
    parallel = False if legacy else body.get("parallel_tool_calls")
    reading = Reading(legacy=legacy)
    fmt = body.get("response_format")
    kind = _format_kind(fmt)
    if kind == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)
    elif kind == "json_schema":
        assert isinstance(fmt, dict)
        name, tool = _schema_tool(fmt, tools)
        reading = Reading(schema_tool=name, legacy=legacy)
        if not tools or (choice is not None and choice["type"] == "none"):
            # Nothing else may be called: the schema tool is the answer, forced.
            choice = {"type": "tool", "name": name}
        else:
            system.append(SCHEMA_INSTRUCTION.format(name=name))
        tools = [*tools, tool]
    if tools:
        out["tools"] = tools
        if choice is None and parallel is False:
            choice = {"type": "auto"}
        if choice is not None:
            if parallel is False and choice["type"] != "none":
                choice = {**choice, "disable_parallel_tool_use": True}
            out["tool_choice"] = choice

    thinking = thinking_for(body.get("reasoning_effort"), limit, max_output_tokens)
    if thinking is not None:
        out["thinking"] = thinking
        if not limit:  # no limit from the client or the gateway: room for both
            out["max_tokens"] = max_output_tokens + thinking["budget_tokens"]
    _fit_thinking(out, system, reading)
    prompt = "\n\n".join(s for s in system if s.strip())
    if prompt:  # an empty system prompt is left out, as empty text is everywhere
        out["system"] = prompt
    if body.get("stream"):
        out["stream"] = True
    return out, reading


# --- request fields ------------------------------------------------------------------------------


def _audit_fields(body: dict[str, Any]) -> None:
    for name, value in body.items():
        if value is None or name in TRANSLATED or name in NO_EFFECT:
            continue
        if name in PASSED:
            if not isinstance(value, PASSED[name]) or isinstance(value, bool):
                raise InvalidRequest(f"Invalid type for `{name}`.", param=name)
            continue
        if name in NEUTRAL:
            if value not in NEUTRAL[name] or isinstance(value, bool) != isinstance(
                NEUTRAL[name][0], bool
            ):
                only = " or ".join(json.dumps(v) for v in NEUTRAL[name])
                raise UnsupportedFeature(PROVIDER, f"`{name}` other than {only}", name)
            continue
        if name in REFUSED:
            raise UnsupportedFeature(PROVIDER, REFUSED[name], name)
        # Unsupported rather than invalid: a deployment of another kind may take it.
        raise UnsupportedFeature(
            PROVIDER,
            f"The parameter `{name}` (AILB passes Anthropic's own top_k and thinking)",
            name,
        )
    if body.get("thinking") is not None and body.get("reasoning_effort") is not None:
        raise InvalidRequest(
            "Give either `reasoning_effort` or Anthropic's `thinking`, not both.", param="thinking"
        )


def _format_kind(fmt: Any) -> str | None:
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind in ("json_object", "json_schema"):
        return str(kind)
    raise UnsupportedFeature(PROVIDER, f"Response format {kind!r}", "response_format.type")


# --- thinking ------------------------------------------------------------------------------------


def thinking_for(effort: Any, limit: int | None, max_output_tokens: int) -> dict[str, Any] | None:
    """Extended thinking for a reasoning_effort, or None (no thinking). `limit`: the client's
    (or the gateway's) token limit, which the budget must leave half of for the answer; with
    no limit, the request's max_tokens is raised by the budget instead."""
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        raise InvalidRequest(
            f"Invalid value for `reasoning_effort`: {effort!r}.", param="reasoning_effort"
        )
    budget = THINKING_BUDGETS[effort]
    if budget is None:
        return None
    if limit:
        budget = min(budget, limit // 2)
        if budget < MIN_THINKING_BUDGET:
            return None  # no room for Anthropic's minimum budget and an answer
    return {"type": "enabled", "budget_tokens": budget}


def _fit_thinking(out: dict[str, Any], system: list[str], reading: Reading) -> None:
    """What Anthropic refuses beside thinking, settled: sampling parameters other than their
    defaults are left out; a forced tool turns thinking off (it cannot be forced while
    thinking), except the json_schema tool, which is then offered with an instruction; a tool
    loop whose assistant turn came back without its signed thinking block continues without
    thinking (Anthropic requires that block to continue it)."""
    thinking = out.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return
    choice = out.get("tool_choice") or {}
    if choice.get("type") == "tool" and choice.get("name") == reading.schema_tool:
        out["tool_choice"] = {
            k: v for k, v in choice.items() if k == "disable_parallel_tool_use"
        } | {"type": "auto"}
        system.append(SCHEMA_INSTRUCTION.format(name=reading.schema_tool))
    elif choice.get("type") in ("tool", "any") or _unsigned_tool_turn(out["messages"]):
        del out["thinking"]
        return
    for name in ("temperature", "top_p", "top_k"):
        out.pop(name, None)


def _unsigned_tool_turn(messages: list[dict[str, Any]]) -> bool:
    """The conversation continues a tool call whose assistant turn has no thinking block."""
    last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if last is None or messages[-1]["role"] != "user":
        return False
    if not any(b.get("type") == "tool_result" for b in messages[-1]["content"]):
        return False
    first = last["content"][0] if last["content"] else {}
    return first.get("type") not in ("thinking", "redacted_thinking")


# --- tools ---------------------------------------------------------------------------------------


def _tools_and_choice(
    body: dict[str, Any], legacy: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(Anthropic tools, Anthropic tool_choice or None for the default)."""
    if legacy:
        raw, raw_choice = legacy_tools(body)
        param, prefix = "function_call", "functions"
    else:
        raw = list(body.get("tools") or ())
        raw_choice = body.get("tool_choice")
        param, prefix = "tool_choice", "tools"
    tools = [_tool(t, i, prefix, legacy) for i, t in enumerate(raw)]
    names = {t["name"] for t in tools}
    if raw_choice is None:
        return tools, None
    if raw_choice == "auto":
        return tools, {"type": "auto"}
    if raw_choice == "none":
        return tools, {"type": "none"}
    if raw_choice == "required":
        if not tools:
            raise InvalidRequest(
                f"`{param}` forces a tool call but no tools are given.", param=param
            )
        return tools, {"type": "any"}
    kind = raw_choice.get("type") if isinstance(raw_choice, dict) else None
    if kind == "function":
        fn = raw_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if name not in names:
            where = f"{param}.name" if legacy else f"{param}.function.name"
            raise InvalidRequest(
                f"The forced function {name!r} is not among the tools.", param=where
            )
        return tools, {"type": "tool", "name": name}
    if kind == "allowed_tools":
        return _allowed(tools, raw_choice.get("allowed_tools"))
    if kind == "custom":
        raise UnsupportedFeature(PROVIDER, "Custom tools", param)
    raise InvalidRequest(f"Invalid value for `{param}`.", param=param)


def _allowed(tools: list[dict[str, Any]], spec: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    param = "tool_choice.allowed_tools"
    if not isinstance(spec, dict) or spec.get("mode") not in ("auto", "required"):
        raise InvalidRequest("`allowed_tools` needs a `mode` of auto or required.", param=param)
    wanted = []
    for i, ref in enumerate(spec.get("tools") or ()):
        fn = ref.get("function") if isinstance(ref, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not any(t["name"] == name for t in tools):
            raise InvalidRequest(
                "An allowed tool must name one of the function tools.",
                param=f"{param}.tools[{i}]",
            )
        wanted.append(name)
    kept = [t for t in tools if t["name"] in wanted]
    return kept, {"type": "any" if spec["mode"] == "required" else "auto"}


def _tool(t: Any, i: int, prefix: str, legacy: bool) -> dict[str, Any]:
    kind = t.get("type") if isinstance(t, dict) else None
    if kind != "function":
        raise UnsupportedFeature(PROVIDER, f"Tool type {kind!r}", f"tools[{i}].type")
    fn = t.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        where = f"{prefix}[{i}].name" if legacy else f"{prefix}[{i}].function.name"
        raise InvalidRequest("A function needs a `name`.", param=where)
    params = fn.get("parameters")
    tool: dict[str, Any] = {
        "name": fn["name"],
        "input_schema": params
        if isinstance(params, dict)
        else {"type": "object", "properties": {}},
    }
    if fn.get("description"):
        tool["description"] = fn["description"]
    return tool


def _schema_tool(fmt: dict[str, Any], tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The tool standing in for a json_schema response format: named after the schema (a name
    no client tool has)."""
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest(
            "`response_format.json_schema` must be an object.", param="response_format.json_schema"
        )
    name = spec.get("name") if isinstance(spec.get("name"), str) else None
    name = name or SCHEMA_TOOL
    taken = {t["name"] for t in tools}
    while name in taken:
        name += "_"
    schema = spec.get("schema")
    tool: dict[str, Any] = {
        "name": name,
        "input_schema": schema if isinstance(schema, dict) else {"type": "object"},
    }
    tool["description"] = spec.get("description") or "Gives the final answer."
    return name, tool
