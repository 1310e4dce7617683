"""An OpenAI chat-completions body as an Ollama `/api/chat` body, and how to read the answer.

Pure functions. Every OpenAI request field is translated, passed, accepted as having no effect
on Ollama, or refused with a 400 naming it: nothing is dropped silently (README, Providers,
lists each field). The choices where the APIs differ:

- sampling parameters go to `options`, over the client's own `options` (so `max_tokens`, which
  the gateway's budget reservation relies on, always wins over `options.num_predict`);
- a forced function (`tool_choice` naming one, `required` with a single tool, legacy
  `function_call`) is sent without tools, its parameters schema as Ollama's `format`: the JSON
  answer is the call's arguments (Ollama's grammar makes it valid JSON, with any model);
- `required` with several tools sends them with an instruction; a reply without a call is
  retried once with `format` constraining the answer to `{"name", "arguments"}` of one tool
  (`translate(..., retry=True)`);
- `response_format` beside tools cannot be `format` (the grammar would rule out every tool
  call): the schema becomes one more tool, whose call is the answer text;
- `reasoning_effort` -> `think` (`none` -> false, else Ollama's levels low/medium/high);
- images only as base64 data URLs: Ollama cannot fetch URLs and AILB does not fetch for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ailb.errors import InvalidRequest
from ailb.providers.base import UnsupportedFeature
from ailb.providers.functions import legacy_tools

PROVIDER = "ollama"

OPTION_NAMES = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")

# OpenAI's reasoning_effort -> Ollama's think. Ollama knows three levels; `none` turns thinking
# off. A model that takes no level (only gpt-oss does) is asked again with `think: true`.
THINK_LEVELS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}

# Ollama's own request fields a client may send (the openai SDK's `extra_body`): passed as they
# are, after a type check.
PASSED: dict[str, tuple[type, ...]] = {
    "keep_alive": (str, int, float),
    "options": (dict,),
    "think": (bool, str),
    "truncate": (bool,),
    "shift": (bool,),
}

# OpenAI fields Ollama has nothing for but that never change the answer: identifiers for
# OpenAI's abuse detection and prompt-cache routing, and stream options (include_usage is the
# gateway's; no obfuscation padding is added). `user` also goes to AILB's usage ledger.
NO_EFFECT = frozenset(
    {
        "stream_options",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
    }
)

# OpenAI fields accepted only at a value that asks for nothing Ollama lacks.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "store": (False,),  # Ollama stores nothing, which is what false asks for
    "service_tier": ("auto", "default"),
    "verbosity": ("medium",),  # OpenAI's default
    "modalities": (["text"],),
    "logit_bias": ({},),
    "metadata": ({},),  # tags for stored completions
    "n": (1,),
}

REFUSED = {
    "audio": "Audio output (`audio`)",
    "prediction": "Predicted outputs (`prediction`)",
    "web_search_options": "Web search (`web_search_options`)",
    "moderation": "Moderation (`moderation`)",
}

TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "stream",
        *OPTION_NAMES,
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
        "logprobs",
        "top_logprobs",
    }
)

ANSWER_TOOL = "final_answer"
FORCED_INSTRUCTION = (
    "Call the function `{name}` now. Reply with only its arguments: one JSON object matching "
    "this JSON Schema:\n{schema}"
)
REQUIRED_INSTRUCTION = (
    "You must call one or more of the provided tools now; do not answer in plain text."
)
CHOICE_INSTRUCTION = (
    "Call one of these functions now. Reply with only a JSON object "
    '{{"name": <the function name>, "arguments": <its arguments>}}. The functions:\n{listing}'
)
ANSWER_INSTRUCTION = (
    "When you have the final answer, give it by calling the function `{name}` with the answer "
    "as its arguments, not as plain text."
)


@dataclass(frozen=True, slots=True)
class Reading:
    """How to read Ollama's answer to a translated request."""

    forced: str | None = None  # the JSON content is this function's arguments
    choice: bool = False  # the JSON content is {"name", "arguments"}: a call of one tool
    answer_tool: str | None = None  # a call of this tool is the answer text (response_format)
    required: bool = False  # an answer without a tool call does not count
    single: bool = False  # at most one tool call (parallel_tool_calls false, legacy functions)
    legacy: bool = False  # answer with `function_call`, as the legacy `functions` API does
    logprobs: bool = False


PLAIN = Reading()


def to_chat_request(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    return translate(body, stream)[0]


def translate(
    body: dict[str, Any], stream: bool, *, retry: bool = False
) -> tuple[dict[str, Any], Reading]:
    """(the Ollama request, how to read its answer). `retry`: the second attempt of a
    `tool_choice: required` request, constrained to one call by `format`."""
    _audit_fields(body)
    messages = _messages(body.get("messages") or ())
    out: dict[str, Any] = {"model": body["model"], "messages": messages, "stream": stream}
    for name in PASSED:
        if body.get(name) is not None:
            out[name] = body[name]
    options = {**(body.get("options") or {}), **_options(body)}
    if options:
        out["options"] = options
    think = _think(body)
    if think is not None:
        out["think"] = think
    logprobs = bool(body.get("logprobs"))
    if body.get("top_logprobs") and not logprobs:
        raise InvalidRequest("`top_logprobs` needs `logprobs: true`.", param="top_logprobs")
    if logprobs:
        out["logprobs"] = True
        if body.get("top_logprobs"):
            out["top_logprobs"] = body["top_logprobs"]

    legacy = body.get("functions") is not None or body.get("function_call") is not None
    tools, choice, forced_name = _tools_and_choice(body, legacy)
    single = legacy or body.get("parallel_tool_calls") is False
    base = Reading(single=single, legacy=legacy, logprobs=logprobs)
    fmt = _format(body.get("response_format"))

    if choice == "none" or not tools:
        if fmt is not None:
            out["format"] = fmt
        return out, base
    if forced_name is not None:
        forced = _find(tools, forced_name)
        out["format"] = _parameters(forced)
        _instruct(messages, _forced_instruction(forced))
        return out, Reading(forced=forced_name, single=True, legacy=legacy)
    if choice == "required":
        if retry:
            out["format"] = {"anyOf": [_choice_branch(t) for t in tools]}
            _instruct(messages, CHOICE_INSTRUCTION.format(listing=_listing(tools)))
            return out, Reading(choice=True, required=True, single=True, legacy=legacy)
        out["tools"] = tools
        _instruct(messages, REQUIRED_INSTRUCTION)
        return out, Reading(required=True, single=single, legacy=legacy, logprobs=logprobs)
    out["tools"] = tools
    if fmt is None:
        return out, base
    answer = _answer_tool_name(tools)
    schema = fmt if isinstance(fmt, dict) else {"type": "object"}
    out["tools"] = [*tools, _function(answer, schema, "Gives the final answer.")]
    _instruct(messages, ANSWER_INSTRUCTION.format(name=answer))
    return out, Reading(answer_tool=answer, single=single, legacy=legacy, logprobs=logprobs)


# --- request fields ------------------------------------------------------------------------------


def _audit_fields(body: dict[str, Any]) -> None:
    for name, value in body.items():
        if value is None or name in TRANSLATED or name in NO_EFFECT:
            continue
        if name in PASSED:
            if not isinstance(value, PASSED[name]):
                raise InvalidRequest(f"Invalid type for `{name}`.", param=name)
            continue
        if name in NEUTRAL:
            if value not in NEUTRAL[name]:
                only = " or ".join(json.dumps(v) for v in NEUTRAL[name])
                raise UnsupportedFeature(PROVIDER, f"`{name}` other than {only}", name)
            continue
        if name in REFUSED:
            raise UnsupportedFeature(PROVIDER, REFUSED[name], name)
        # Unsupported rather than invalid: a deployment of another kind may take it.
        raise UnsupportedFeature(
            PROVIDER,
            f"The parameter `{name}` (AILB passes Ollama's own keep_alive, options, think, "
            "truncate and shift; Ollama's model options such as num_ctx or top_k go in "
            "`options`)",
            name,
        )
    options = body.get("options")
    if isinstance(options, dict) and not all(isinstance(k, str) for k in options):
        raise InvalidRequest("`options` must be an object.", param="options")
    if body.get("think") is not None and body.get("reasoning_effort") is not None:
        raise InvalidRequest(
            "Give either `reasoning_effort` or Ollama's `think`, not both.", param="think"
        )


def _options(body: dict[str, Any]) -> dict[str, Any]:
    out = {name: body[name] for name in OPTION_NAMES if body.get(name) is not None}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        out["num_predict"] = max_tokens
    stop = body.get("stop")
    if stop:
        out["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return out


def _think(body: dict[str, Any]) -> bool | str | None:
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in THINK_LEVELS:
            raise InvalidRequest(
                f"Invalid value for `reasoning_effort`: {effort!r}.", param="reasoning_effort"
            )
        return THINK_LEVELS[effort]
    think = body.get("think")
    if isinstance(think, str) and think not in ("low", "medium", "high"):
        raise InvalidRequest("`think` is true, false, low, medium or high.", param="think")
    return None  # a `think` of the client's own is passed with the other Ollama fields


def _format(fmt: Any) -> str | dict[str, Any] | None:
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidRequest(
                "`response_format.json_schema` must be an object.",
                param="response_format.json_schema",
            )
        schema = spec.get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    raise UnsupportedFeature(PROVIDER, f"Response format {kind!r}", "response_format.type")


# --- tools ---------------------------------------------------------------------------------------


def _tools_and_choice(
    body: dict[str, Any], legacy: bool
) -> tuple[list[dict[str, Any]], str, str | None]:
    """(the function tools offered, the choice: none, auto or required, the name of the one
    function forced or None)."""
    if legacy:
        tools, raw_choice = legacy_tools(body)
        param = "function_call"
    else:
        tools = list(body.get("tools") or ())
        raw_choice = body.get("tool_choice")
        param = "tool_choice"
    prefix = "functions" if legacy else "tools"
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise UnsupportedFeature(PROVIDER, f"Tool type {kind!r}", f"tools[{i}].type")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest("A function needs a `name`.", param=f"{prefix}[{i}].name")
    names = {t["function"]["name"] for t in tools}
    forced: str | None = None
    if raw_choice is None or raw_choice in ("none", "auto", "required"):
        choice = raw_choice or "auto"
    elif isinstance(raw_choice, dict) and raw_choice.get("type") == "function":
        fn = raw_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if name not in names:
            raise InvalidRequest(
                f"The forced function {name!r} is not among the tools.",
                param=f"{param}.function.name" if not legacy else f"{param}.name",
            )
        choice, forced = "required", name
    elif isinstance(raw_choice, dict) and raw_choice.get("type") == "allowed_tools":
        tools, choice = _allowed(tools, raw_choice.get("allowed_tools"))
    elif isinstance(raw_choice, dict) and raw_choice.get("type") == "custom":
        raise UnsupportedFeature(PROVIDER, "Custom tools", param)
    else:
        raise InvalidRequest(f"Invalid value for `{param}`.", param=param)
    if choice == "required" and not tools:
        raise InvalidRequest(f"`{param}` forces a tool call but no tools are given.", param=param)
    if choice == "required" and len(tools) == 1:
        forced = tools[0]["function"]["name"]  # one way to comply: that function, forced
    return tools, choice, forced


def _allowed(tools: list[dict[str, Any]], spec: Any) -> tuple[list[dict[str, Any]], str]:
    param = "tool_choice.allowed_tools"
    if not isinstance(spec, dict) or spec.get("mode") not in ("auto", "required"):
        raise InvalidRequest("`allowed_tools` needs a `mode` of auto or required.", param=param)
    wanted = []
    for i, ref in enumerate(spec.get("tools") or ()):
        fn = ref.get("function") if isinstance(ref, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not any(t["function"]["name"] == name for t in tools):
            raise InvalidRequest(
                "An allowed tool must name one of the function tools.",
                param=f"{param}.tools[{i}]",
            )
        wanted.append(name)
    return [t for t in tools if t["function"]["name"] in wanted], spec["mode"]


def _find(tools: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(t["function"] for t in tools if t["function"]["name"] == name)


def _parameters(fn: dict[str, Any]) -> dict[str, Any]:
    params = fn.get("parameters")
    return params if isinstance(params, dict) else {"type": "object", "properties": {}}


def _forced_instruction(fn: dict[str, Any]) -> str:
    text = FORCED_INSTRUCTION.format(name=fn["name"], schema=_compact(_parameters(fn)))
    description = fn.get("description")
    return f"{text}\nThe function: {description}" if description else text


def _choice_branch(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool["function"]
    return {
        "type": "object",
        "properties": {"name": {"enum": [fn["name"]]}, "arguments": _parameters(fn)},
        "required": ["name", "arguments"],
    }


def _listing(tools: list[dict[str, Any]]) -> str:
    lines = []
    for t in tools:
        fn = t["function"]
        about = f": {fn['description']}" if fn.get("description") else ""
        lines.append(f"- {fn['name']}{about} Arguments schema: {_compact(_parameters(fn))}")
    return "\n".join(lines)


def _answer_tool_name(tools: list[dict[str, Any]]) -> str:
    taken = {t["function"]["name"] for t in tools}
    name = ANSWER_TOOL
    while name in taken:
        name += "_"
    return name


def _function(name: str, parameters: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _instruct(messages: list[dict[str, Any]], text: str) -> None:
    """Adds `text` to the system prompt: to the first message when it is a system message
    (some chat templates render only that one), else as a new first message."""
    if messages and messages[0]["role"] == "system":
        first = messages[0]
        messages[0] = {**first, "content": f"{first['content']}\n\n{text}".lstrip()}
    else:
        messages.insert(0, {"role": "system", "content": text})


# --- messages ------------------------------------------------------------------------------------


def _messages(raw: Any) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool call id -> function name, for tool results
    return [_message(m, i, names) for i, m in enumerate(raw)]


def _message(m: Any, i: int, names: dict[str, str]) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise InvalidRequest("A message must be an object.", param=f"messages[{i}]")
    role = m.get("role")
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant", "tool", "function"):
        raise InvalidRequest(f"Unsupported message role {role!r}.", param=f"messages[{i}].role")
    text, images = _content(m.get("content"), i)
    if role == "function":  # a legacy function result: a tool result named by its function
        out: dict[str, Any] = {"role": "tool", "content": text}
        if isinstance(m.get("name"), str):
            out["tool_name"] = m["name"]
        return out
    out = {"role": role, "content": text}
    if images:
        out["images"] = images
    if role == "assistant":
        if m.get("audio") is not None:
            raise UnsupportedFeature(PROVIDER, "Audio in messages", f"messages[{i}].audio")
        if not text and isinstance(m.get("refusal"), str):
            out["content"] = m["refusal"]
        reasoning = m.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out["thinking"] = reasoning
        calls = [_tool_call(c, i, j, names) for j, c in enumerate(m.get("tool_calls") or ())]
        legacy = m.get("function_call")
        if isinstance(legacy, dict):
            calls.append(_call(legacy, None, f"messages[{i}].function_call.arguments", names))
        if calls:
            out["tool_calls"] = calls
    if role == "tool":
        call_id = m.get("tool_call_id")
        name = names.get(call_id) if isinstance(call_id, str) else None
        name = name or m.get("name")
        if name:
            out["tool_name"] = name
        if isinstance(call_id, str):
            out["tool_call_id"] = call_id
    return out


def _content(content: Any, i: int) -> tuple[str, list[str]]:
    """(text, base64 images) of a message's content."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidRequest(
            "Message content must be a string or a list of parts.", param=f"messages[{i}].content"
        )
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text") or ""))
        elif kind == "refusal":
            texts.append(str(part.get("refusal") or ""))
        elif kind == "image_url":
            images.append(_image(part, param))
        else:
            raise UnsupportedFeature(PROVIDER, f"Content part type {kind!r}", param)
    return "".join(texts), images


def _image(part: dict[str, Any], param: str) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith("data:"):
        raise UnsupportedFeature(PROVIDER, "Images by URL (send a base64 data URL)", param)
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise InvalidRequest(
            "Image data URLs must look like data:image/png;base64,....", param=param
        )
    return data


def _tool_call(call: Any, i: int, j: int, names: dict[str, str]) -> dict[str, Any]:
    param = f"messages[{i}].tool_calls[{j}]"
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        kind = call.get("type") if isinstance(call, dict) else None
        raise UnsupportedFeature(PROVIDER, f"Tool call type {kind!r}", f"{param}.type")
    fn = call.get("function")
    call_id = call.get("id")
    return _call(fn if isinstance(fn, dict) else {}, call_id, f"{param}.function.arguments", names)


def _call(fn: dict[str, Any], call_id: Any, param: str, names: dict[str, str]) -> dict[str, Any]:
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except (TypeError, ValueError):
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest("Tool call arguments must be a JSON object.", param=param)
    out: dict[str, Any] = {"function": {"name": fn.get("name"), "arguments": args}}
    if isinstance(call_id, str):
        out["id"] = call_id
        if isinstance(fn.get("name"), str):
            names[call_id] = fn["name"]
    return out
