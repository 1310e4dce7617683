"""Ollama's native `/api/chat` (NDJSON streaming) behind the OpenAI chat-completions interface.

Native rather than Ollama's OpenAI-compatible endpoint because the native one reports usage on
every stream and takes the full `options` set. Choices made where the APIs differ:

- sampling parameters go to `options` (max_tokens -> num_predict, stop, seed, penalties ...);
- images must be base64 data URLs: Ollama cannot fetch URLs, and AILB does not fetch for it;
- `response_format` json_object -> `format: "json"`, json_schema -> `format: <schema>`;
- `tool_choice` "required" or a named tool cannot be enforced by Ollama and is refused (400);
  "none" sends no tools;
- tool calls get ids (`call_<n>`) because Ollama has none; a tool result is matched back to its
  tool's name through those ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from ailb.config import DeploymentConfig, Secret
from ailb.errors import InvalidRequest
from ailb.providers.base import (
    ChunkBatch,
    UnsupportedFeature,
    UpstreamError,
    message_text,
    scrub,
)
from ailb.providers.transport import NDJSONDecoder, Upstream, decode_json, encode

OPTION_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}
_REFUSED = ("logprobs", "top_logprobs", "audio", "prediction")


# --- OpenAI request -> Ollama request -----------------------------------------------------------


def to_chat_request(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    n = body.get("n")
    if n not in (None, 1):
        raise UnsupportedFeature("ollama", "More than one choice (n > 1)", "n")
    for name in _REFUSED:
        if body.get(name) not in (None, False):
            raise UnsupportedFeature("ollama", f"`{name}`", name)
    tool_names: dict[str, str] = {}  # tool call id -> function name, for tool results
    messages = [_message(m, i, tool_names) for i, m in enumerate(body.get("messages") or ())]
    out: dict[str, Any] = {"model": body["model"], "messages": messages, "stream": stream}
    options: dict[str, Any] = {
        ours: body[theirs] for theirs, ours in OPTION_NAMES.items() if body.get(theirs) is not None
    }
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        options["num_predict"] = max_tokens
    stop = body.get("stop")
    if stop:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if options:
        out["options"] = options
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools and choice != "none":
        if choice == "required" or isinstance(choice, dict):
            raise UnsupportedFeature("ollama", "Forcing a tool call (tool_choice)", "tool_choice")
        out["tools"] = tools
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        out["format"] = "json"
    elif fmt.get("type") == "json_schema":
        out["format"] = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    return out


def _message(m: dict[str, Any], i: int, tool_names: dict[str, str]) -> dict[str, Any]:
    role = m.get("role")
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant", "tool"):
        raise InvalidRequest(f"Unsupported message role {role!r}.", param=f"messages[{i}].role")
    content = m.get("content")
    out: dict[str, Any] = {"role": role, "content": message_text(content)}
    if isinstance(content, list):
        images = [_image(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content)]
        if any(images):
            out["images"] = [img for img in images if img]
    elif content is not None and not isinstance(content, str):
        raise InvalidRequest(
            "Message content must be a string or a list of parts.", param=f"messages[{i}].content"
        )
    if role == "assistant" and m.get("tool_calls"):
        out["tool_calls"] = [_tool_call(c, i, j, tool_names) for j, c in enumerate(m["tool_calls"])]
    if role == "tool":
        name = tool_names.get(m.get("tool_call_id") or "") or m.get("name")
        if name:
            out["tool_name"] = name
    return out


def _image(part: Any, param: str) -> str | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return None
    if kind != "image_url":
        raise UnsupportedFeature("ollama", f"Content part type {kind!r}", param)
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith("data:"):
        raise UnsupportedFeature("ollama", "Images by URL (send a base64 data URL)", param)
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise InvalidRequest(
            "Image data URLs must look like data:image/png;base64,....", param=param
        )
    return data


def _tool_call(call: dict[str, Any], i: int, j: int, names: dict[str, str]) -> dict[str, Any]:
    fn = call.get("function") or {}
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except (TypeError, ValueError):
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest(
            "Tool call arguments must be a JSON object.",
            param=f"messages[{i}].tool_calls[{j}].function.arguments",
        )
    if isinstance(call.get("id"), str) and isinstance(fn.get("name"), str):
        names[call["id"]] = fn["name"]
    return {"function": {"name": fn.get("name"), "arguments": args}}


# --- Ollama response -> OpenAI response ----------------------------------------------------------


def to_usage(obj: dict[str, Any]) -> dict[str, int]:
    prompt = int(obj.get("prompt_eval_count") or 0)
    completion = int(obj.get("eval_count") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _calls(raw: Any, first: int) -> list[dict[str, Any]]:
    calls = []
    for n, call in enumerate(raw or (), start=first):
        fn = call.get("function") or {}
        args = fn.get("arguments")
        calls.append(
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {
                    "name": fn.get("name"),
                    "arguments": args
                    if isinstance(args, str)
                    else json.dumps(args or {}, separators=(",", ":")),
                },
            }
        )
    return calls


def _finish(obj: dict[str, Any], had_calls: bool) -> str:
    if had_calls:
        return "tool_calls"
    return "length" if obj.get("done_reason") == "length" else "stop"


def _check(obj: Any, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """`obj` as a reply line; an error line raises (its text scrubbed of `secrets`, the
    upstream's credentials)."""
    if not isinstance(obj, dict):
        raise UpstreamError("protocol", "upstream line is not a JSON object")
    if "error" in obj:
        err = scrub(str(obj["error"]), 300, secrets)
        raise UpstreamError("status", f"upstream error mid-stream: {err}", status=502)
    return obj


def to_completion(obj: Any, model: str, secrets: Sequence[str] = ()) -> dict[str, Any]:
    obj = _check(obj, secrets)
    msg = obj.get("message")
    if not isinstance(msg, dict) or not obj.get("done"):
        raise UpstreamError("protocol", "upstream answer is not a finished /api/chat reply")
    calls = _calls(msg.get("tool_calls"), 0)
    message: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-ollama{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": obj.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish(obj, bool(calls)),
            }
        ],
        "usage": to_usage(obj),
    }


class StreamTranslator:
    """Ollama NDJSON lines in, OpenAI chunks out; `done` turns true at the `done: true` line."""

    def __init__(self, model: str, secrets: Sequence[str] = ()) -> None:
        self.secrets = secrets  # scrubbed from an error line
        self.base = {
            "id": f"chatcmpl-ollama{time.time_ns()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self.done = False
        self._started = False
        self._calls = 0

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **self.base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def feed(self, obj: Any) -> list[dict[str, Any]]:
        obj = _check(obj, self.secrets)
        out = []
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        msg = obj.get("message") or {}
        if msg.get("content"):
            out.append(self._chunk({"content": msg["content"]}))
        calls = _calls(msg.get("tool_calls"), self._calls)
        if calls:
            deltas = [{"index": self._calls + k, **c} for k, c in enumerate(calls)]
            self._calls += len(calls)
            out.append(self._chunk({"tool_calls": deltas}))
        if obj.get("done"):
            self.done = True
            out.append(self._chunk({}, _finish(obj, self._calls > 0)))
            out.append({**self.base, "choices": [], "usage": to_usage(obj)})
        return out


# --- the provider --------------------------------------------------------------------------------


class OllamaProvider:
    def __init__(self, config: DeploymentConfig, api_key: Secret | None) -> None:
        self.config = config
        headers = {"Content-Type": "application/json"}
        if api_key:
            # Ollama itself has no keys; a proxy in front of it may want one.
            headers["Authorization"] = f"Bearer {api_key}"
        self.upstream = Upstream(config, headers)
        self._chat = self.upstream.head("POST", "/api/chat")
        self._tags = self.upstream.head("GET", "/api/tags")

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        raw = await self.upstream.fetch(self._chat, encode(to_chat_request(body, stream=False)))
        reply = decode_json(raw, "chat reply")
        return to_completion(reply, body.get("model", ""), self.upstream.secrets)

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        resp = await self.upstream.send(self._chat, encode(to_chat_request(body, stream=True)))
        translator = StreamTranslator(body.get("model", ""), self.upstream.secrets)
        try:
            decoder = NDJSONDecoder()
            async for data in resp.iter_chunks():
                batch: ChunkBatch = []
                for obj in decoder.feed(data):
                    batch.extend(translator.feed(obj))
                    if translator.done:
                        yield batch
                        return
                if batch:
                    yield batch
            for obj in decoder.finish():
                batch = translator.feed(obj)
                if translator.done:
                    yield batch
                    return
        finally:
            resp.release()
        raise UpstreamError("protocol", "stream ended before its done line")

    async def list_models(self) -> list[str]:
        obj = decode_json(await self.upstream.fetch(self._tags), "model list")
        models = obj.get("models") if isinstance(obj, dict) else None
        if not isinstance(models, list):
            raise UpstreamError("protocol", "bad model list")
        names: list[str] = []
        for m in models:
            name = (m.get("name") or m.get("model")) if isinstance(m, dict) else None
            if isinstance(name, str):
                names.append(name)
                # Clients say `llama3.2` for `llama3.2:latest`, as Ollama's own CLI allows.
                if name.endswith(":latest"):
                    names.append(name.removesuffix(":latest"))
        return names

    async def close(self) -> None:
        await self.upstream.close()
