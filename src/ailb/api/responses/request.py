"""A Responses API request in chat-completions terms: pure functions, no I/O.

The pipeline and every provider speak OpenAI chat, so a Responses body becomes a chat body
(input items → messages, flat function tools → nested ones, `text.format` → response_format);
what chat cannot express (hosted tools, server-side conversations, background runs) is refused
with a 400 naming the field, never dropped.
"""

from __future__ import annotations

from typing import Any

from ailb.api.responses.reply import ECHOED
from ailb.errors import InvalidRequest

# Tools OpenAI runs on its own side: nothing here can run them on another provider.
HOSTED_TOOLS = frozenset(
    (
        "web_search", "web_search_preview", "web_search_2025_08_26",
        "web_search_preview_2025_03_11", "file_search", "computer", "computer_use_preview",
        "computer_use", "code_interpreter", "image_generation", "mcp", "local_shell", "shell",
        "apply_patch", "custom", "tool_search",
    )
)  # fmt: skip

# Fields read here; anything else is refused by name (a client relying on it must know).
ACCEPTED = frozenset(
    (
        "model", "input", "instructions", "tools", "tool_choice", "text", "max_output_tokens",
        "reasoning", "temperature", "top_p", "user", "metadata", "parallel_tool_calls",
        "store", "stream", "previous_response_id", "include", "truncation", "stream_options",
        "service_tier", "prompt_cache_key", "prompt_cache_retention", "safety_identifier",
        "top_logprobs", "background", "conversation", "prompt", "max_tool_calls",
        "session_id", "rag_collection", "rag_top_k",
    )
)  # fmt: skip

# Accepted and not acted on: they change nothing a translated answer could honour, and
# refusing them would break clients that always send them (openai-agents sends `include`).
IGNORED = ("include", "truncation", "stream_options", "prompt_cache_retention")

# Passed to the chat body unchanged (chat has the same field with the same meaning).
SAME_NAME = (
    "model", "temperature", "top_p", "user", "parallel_tool_calls", "stream", "service_tier",
    "prompt_cache_key", "safety_identifier", "session_id", "rag_collection", "rag_top_k",
)  # fmt: skip


class Decoded:
    """`params`: the chat body's fields but its messages; `messages`: this request's input as
    chat messages (without the instructions, which a follow-up does not inherit); `echo`: what
    the Response object repeats."""

    __slots__ = (
        "echo",
        "instructions",
        "messages",
        "params",
        "previous_response_id",
        "store",
        "stream",
    )

    def __init__(
        self,
        params: dict[str, Any],
        messages: list[dict[str, Any]],
        instructions: str | None = None,
        previous_response_id: str | None = None,
        store: bool = True,
        stream: bool = False,
        echo: dict[str, Any] | None = None,
    ) -> None:
        self.params = params
        self.messages = messages
        self.instructions = instructions
        self.previous_response_id = previous_response_id
        self.store = store
        self.stream = stream
        self.echo = {} if echo is None else echo

    def chat_body(self, earlier: list[dict[str, Any]]) -> dict[str, Any]:
        """The chat request: instructions, then the stored conversation, then this input."""
        system = [] if self.instructions is None else [system_message(self.instructions)]
        return {**self.params, "messages": [*system, *earlier, *self.messages]}


def bad(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def system_message(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


SAME = frozenset(SAME_NAME)
# Refused unless false (a client may send them off).
NOT_SUPPORTED = ("background", "conversation", "prompt", "max_tool_calls")
# Fields translated one by one (most requests send none of them but `metadata`).
TRANSLATED = frozenset(
    ("tools", "tool_choice", "text", "max_output_tokens", "reasoning", "top_logprobs")
)


def decode(raw: dict[str, Any]) -> Decoded:
    """The request's chat parameters and input messages (the body is a JSON object). Written
    for few steps per field: it runs on every request of the face."""
    body = raw if None not in raw.values() else {k: v for k, v in raw.items() if v is not None}
    names = body.keys()
    if not names <= ACCEPTED:
        name = next(n for n in body if n not in ACCEPTED)
        raise bad(name, f"Unsupported parameter: '{name}'.", "unsupported_parameter")
    if not names.isdisjoint(NOT_SUPPORTED):
        for name in NOT_SUPPORTED:
            if name in body and body[name] is not False:
                raise bad(
                    name,
                    f"'{name}' is not supported by this gateway"
                    + (" (use previous_response_id)." if name == "conversation" else "."),
                    "unsupported_parameter",
                )
    if "model" not in body:
        raise bad("model", "Missing required parameter: 'model'.", "missing_required_parameter")
    if "input" not in body:
        raise bad("input", "Missing required parameter: 'input'.", "missing_required_parameter")
    params: dict[str, Any] = {}
    echo: dict[str, Any] = {}
    for k, v in body.items():
        if k in SAME:
            params[k] = v
        if k in ECHOED and (v or not isinstance(v, dict | list)):
            echo[k] = v
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad("instructions", "Invalid value for 'instructions': expected a string.")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise bad("metadata", "Invalid value for 'metadata': expected an object.")
        if "session_id" not in params and isinstance(metadata.get("session_id"), str):
            params["session_id"] = metadata["session_id"]  # for clients that cannot add fields
    if not names.isdisjoint(TRANSLATED):
        translate_fields(body, params)
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise bad("previous_response_id", "Invalid value for 'previous_response_id'.")
    store = body.get("store", True)
    if store is not True and store is not False:
        raise bad("store", "Invalid value for 'store': expected a boolean.")
    stream = body.get("stream", False)
    if stream is not True and stream is not False:
        raise bad("stream", "Invalid value for 'stream': expected a boolean.")
    value = body["input"]
    messages = [{"role": "user", "content": value}] if type(value) is str else input_messages(value)
    return Decoded(params, messages, instructions, previous, store, stream, echo)


def translate_fields(body: dict[str, Any], params: dict[str, Any]) -> None:
    """The fields whose chat counterpart has another name or shape, into `params`."""
    if "tools" in body:
        params["tools"] = tools(body["tools"])
    if "tool_choice" in body:
        params["tool_choice"] = tool_choice(body["tool_choice"])
    if "text" in body:
        params.update(text_config(body["text"]))
    if "max_output_tokens" in body:
        params["max_completion_tokens"] = body["max_output_tokens"]
    if "reasoning" in body:
        params.update(reasoning(body["reasoning"]))
    if "top_logprobs" in body:
        params["logprobs"] = True
        params["top_logprobs"] = body["top_logprobs"]


# --- input ----------------------------------------------------------------------------------


def input_messages(value: Any) -> list[dict[str, Any]]:
    """`input` (a string, or a list of items) as chat messages. Consecutive function calls
    (and the assistant text before them) make one assistant message, as chat carries them."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise bad("input", "Invalid value for 'input': expected a string or a list of items.")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad(where, f"Invalid value for '{where}': expected an object.")
        kind = item.get("type", "message")
        if kind == "message":
            out.append(message(item, where))
        elif kind == "function_call":
            call = function_call(item, where)
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append(function_output(item, where))
        elif kind == "reasoning":
            continue  # a model's own reasoning: no provider takes another's back
        else:
            raise bad(
                f"{where}.type",
                f"Input items of type '{kind}' are not supported by this gateway.",
                "unsupported_value",
            )
    return out


ROLES = ("user", "assistant", "system", "developer")


def message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise bad(f"{where}.role", f"Invalid value for '{where}.role': {role!r}.")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise bad(f"{where}.content", f"Invalid value for '{where}.content'.")
    parts = [content_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    if role != "user" and all(p["type"] == "text" for p in parts):
        # Chat takes text parts from every role, but some servers only a string from system
        # and assistant ones: joined, the words are the same.
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def content_part(part: Any, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise bad(where, f"Invalid value for '{where}': expected an object.")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise bad(
                f"{where}.text",
                f"Missing required parameter: '{where}.text'.",
                "missing_required_parameter",
            )
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise bad(
                f"{where}.image_url",
                "Images are taken as `image_url` (a URL or a data: URL); `file_id` needs "
                "OpenAI's file store, which this gateway does not have.",
                "unsupported_value",
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
        if part.get("file_url") or not (file.get("file_data") or file.get("file_id")):
            raise bad(
                where,
                f"'{where}': files are taken as `file_data` (or an OpenAI `file_id`), not "
                "`file_url`.",
                "unsupported_value",
            )
        return {"type": "file", "file": file}
    raise bad(
        f"{where}.type",
        f"Content parts of type '{kind}' are not supported by this gateway.",
        "unsupported_value",
    )


def function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name = item.get("call_id"), item.get("name")
    arguments = item.get("arguments", "")
    for key, value in (("call_id", call_id), ("name", name), ("arguments", arguments)):
        if not isinstance(value, str):
            raise bad(
                f"{where}.{key}",
                f"Missing required parameter: '{where}.{key}'.",
                "missing_required_parameter",
            )
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def function_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise bad(
            f"{where}.call_id",
            f"Missing required parameter: '{where}.call_id'.",
            "missing_required_parameter",
        )
    if isinstance(output, list):
        parts = [content_part(p, f"{where}.output[{j}]") for j, p in enumerate(output)]
        if any(p["type"] != "text" for p in parts):
            raise bad(
                f"{where}.output",
                "Tool results are text here: chat tool messages carry no images or files.",
                "unsupported_value",
            )
        output = "".join(p["text"] for p in parts)
    if not isinstance(output, str):
        raise bad(
            f"{where}.output",
            f"Missing required parameter: '{where}.output'.",
            "missing_required_parameter",
        )
    return {"role": "tool", "tool_call_id": call_id, "content": output}


# --- tools and formats ----------------------------------------------------------------------


def tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad("tools", "Invalid value for 'tools': expected a list.")
    out = []
    for i, tool in enumerate(value):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise bad(
                f"tools[{i}].type",
                f"Tools of type '{kind}' run on OpenAI's own servers and are not available "
                "through this gateway; only function tools are."
                if isinstance(kind, str) and kind in HOSTED_TOOLS
                else f"Invalid value for 'tools[{i}].type': {kind!r}; only function tools are "
                "supported.",
                "unsupported_value",
            )
        assert isinstance(tool, dict)
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        if tool.get("strict") is None:
            fn.pop("strict", None)
        out.append({"type": "function", "function": fn})
    return out


def tool_choice(value: Any) -> Any:
    if value in ("none", "auto", "required"):
        return value
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "function" and isinstance(value.get("name"), str):
            return {"type": "function", "function": {"name": value["name"]}}
        if kind == "allowed_tools" and isinstance(value.get("tools"), list):
            chosen = []
            for t in value["tools"]:
                if not isinstance(t, dict) or t.get("type") != "function":
                    raise bad("tool_choice.tools", "Only function tools can be allowed here.")
                chosen.append({"type": "function", "function": {"name": t.get("name")}})
            return {
                "type": "allowed_tools",
                "allowed_tools": {"mode": value.get("mode", "auto"), "tools": chosen},
            }
        if isinstance(kind, str) and kind in HOSTED_TOOLS:
            raise bad(
                "tool_choice",
                f"Tools of type '{kind}' are not available through this gateway.",
                "unsupported_value",
            )
    raise bad("tool_choice", f"Invalid value for 'tool_choice': {value!r}.")


def text_config(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad("text", "Invalid value for 'text': expected an object.")
    out: dict[str, Any] = {}
    fmt = value.get("format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_schema":
            assert isinstance(fmt, dict)
            if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
                raise bad(
                    "text.format",
                    "A json_schema format needs a `name` and a `schema` object.",
                    "missing_required_parameter",
                )
            spec = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
            out["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif kind == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif kind != "text":
            raise bad("text.format.type", f"Invalid value for 'text.format.type': {kind!r}.")
    if value.get("verbosity") is not None:
        out["verbosity"] = value["verbosity"]
    return out


def reasoning(value: Any) -> dict[str, Any]:
    """`effort` is chat's `reasoning_effort`; a summary is not something chat answers carry,
    so `summary` is accepted and none is produced (the README says so)."""
    if not isinstance(value, dict):
        raise bad("reasoning", "Invalid value for 'reasoning': expected an object.")
    effort = value.get("effort")
    return {} if effort is None else {"reasoning_effort": effort}
