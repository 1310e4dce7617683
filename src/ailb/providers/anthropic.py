"""Anthropic's Messages API behind the OpenAI chat-completions interface.

Translation both ways is pure functions (`to_messages_request`, `to_completion`) plus one small
stateful translator for the SSE event sequence (`StreamTranslator`). Choices made where the two
APIs differ, all documented in the README:

- system and developer messages, wherever they appear, become the top-level `system` prompt;
- `max_tokens` is required by Anthropic: the client's value, else the deployment's
  `max_output_tokens`;
- OpenAI temperatures run 0-2, Anthropic's 0-1: values above 1 are clamped to 1;
- `response_format` json_object adds a JSON-only instruction to the system prompt; json_schema
  forces a tool whose input schema is the client's schema and returns its input as the text;
- `n` > 1, logprobs, audio and non-zero penalties/logit_bias have no Anthropic equivalent and are
  refused with a 400 naming the parameter (the router tries another deployment first).
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
    error_message_from,
)
from ailb.providers.transport import SSEDecoder, Upstream, decode_json, encode, model_ids

API_VERSION = "2023-06-01"
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic's error types -> the HTTP status they travel with (used for mid-stream errors).
ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

# Parameters with no Anthropic counterpart that are harmless at their neutral value.
_NEUTRAL = {"frequency_penalty": 0, "presence_penalty": 0, "logit_bias": {}}
_REFUSED = ("logprobs", "top_logprobs", "audio", "prediction", "reasoning_effort")
_TEXT_ONLY = ("text",)


# --- OpenAI request -> Anthropic request --------------------------------------------------------


def to_messages_request(body: dict[str, Any], max_output_tokens: int) -> dict[str, Any]:
    """An OpenAI chat-completions body as an Anthropic Messages API body."""
    _refuse_unsupported(body)
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(body.get("messages") or ()):
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text_only(m.get("content"), f"messages[{i}].content"))
            continue
        if role == "user":
            blocks = _user_blocks(m.get("content"), i)
            _append(messages, "user", blocks)
        elif role == "assistant":
            _append(messages, "assistant", _assistant_blocks(m, i))
        elif role == "tool":
            _append(messages, "user", [_tool_result(m, i)])
        else:
            raise InvalidRequest(f"Unsupported message role {role!r}.", param=f"messages[{i}].role")
    out: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or max_output_tokens,
    }
    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(float(temperature), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    _add_tools(body, out)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)
    elif fmt.get("type") == "json_schema":
        _force_schema_tool(fmt.get("json_schema") or {}, out)
    if system:
        out["system"] = "\n\n".join(s for s in system if s)
    if body.get("stream"):
        out["stream"] = True
    return out


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n not in (None, 1):
        raise UnsupportedFeature("anthropic", "More than one choice (n > 1)", "n")
    for name in _REFUSED:
        if body.get(name) not in (None, False):
            raise UnsupportedFeature("anthropic", f"`{name}`", name)
    for name, neutral in _NEUTRAL.items():
        if body.get(name) not in (None, neutral):
            raise UnsupportedFeature("anthropic", f"`{name}`", name)
    modalities = body.get("modalities")
    if modalities and any(m not in _TEXT_ONLY for m in modalities):
        raise UnsupportedFeature("anthropic", "Output modalities other than text", "modalities")


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Consecutive turns of one role are merged: Anthropic wants them alternating, and tool
    results must share the user turn that follows the tool calls."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _text_only(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if not isinstance(p, dict) or p.get("type") != "text":
                raise InvalidRequest("Only text parts are allowed here.", param=param)
            parts.append(str(p.get("text", "")))
        return "".join(parts)
    if content is None:
        return ""
    raise InvalidRequest("Message content must be a string or a list of parts.", param=param)


def _user_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            "Message content must be a string or a list of parts.", param=f"messages[{i}].content"
        )
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), param))
        else:
            raise UnsupportedFeature("anthropic", f"Content part type {kind!r}", param)
    return blocks


def _image_block(image: Any, param: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest("image_url.url must be a string.", param=param)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type.startswith("image/"):
            raise InvalidRequest(
                "Image data URLs must look like data:image/png;base64,....", param=param
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("image_url.url must be an http(s) URL or a data URL.", param=param)


def _assistant_blocks(m: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text_only(m.get("content"), f"messages[{i}].content")
    if text:
        blocks.append({"type": "text", "text": text})
    for j, call in enumerate(m.get("tool_calls") or ()):
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            args = json.loads(raw)
        except (TypeError, ValueError):
            args = None
        if not isinstance(args, dict):
            raise InvalidRequest(
                "Tool call arguments must be a JSON object.",
                param=f"messages[{i}].tool_calls[{j}].function.arguments",
            )
        blocks.append(
            {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args}
        )
    if not blocks:
        # Anthropic rejects empty assistant turns; an empty text block is rejected too.
        blocks.append({"type": "text", "text": "(no content)"})
    return blocks


def _tool_result(m: dict[str, Any], i: int) -> dict[str, Any]:
    call_id = m.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            "Tool messages need the tool_call_id they answer.", param=f"messages[{i}].tool_call_id"
        )
    return {
        "type": "tool_result",
        "tool_use_id": call_id,
        "content": _text_only(m.get("content"), f"messages[{i}].content"),
    }


def _add_tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools") or ()
    if tools:
        out["tools"] = [_tool(t, j) for j, t in enumerate(tools)]
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    mapped: dict[str, Any] | None = None
    if choice == "auto" or (choice is None and tools and parallel is False):
        mapped = {"type": "auto"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise InvalidRequest("tool_choice.function.name is required.", param="tool_choice")
        mapped = {"type": "tool", "name": name}
    if mapped is not None and tools:
        if parallel is False and mapped["type"] != "none":
            mapped["disable_parallel_tool_use"] = True
        out["tool_choice"] = mapped


def _tool(t: dict[str, Any], j: int) -> dict[str, Any]:
    fn = t.get("function") if isinstance(t, dict) else None
    if t.get("type") != "function" or not isinstance(fn, dict) or not fn.get("name"):
        raise InvalidRequest("Only function tools with a name are supported.", param=f"tools[{j}]")
    tool: dict[str, Any] = {
        "name": fn["name"],
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    if fn.get("description"):
        tool["description"] = fn["description"]
    return tool


def _force_schema_tool(spec: dict[str, Any], out: dict[str, Any]) -> None:
    if out.get("tools"):
        raise UnsupportedFeature(
            "anthropic", "response_format json_schema together with tools", "response_format"
        )
    name = spec.get("name") or "json_response"
    tool: dict[str, Any] = {
        "name": name,
        "input_schema": spec.get("schema") or {"type": "object"},
    }
    if spec.get("description"):
        tool["description"] = spec["description"]
    out["tools"] = [tool]
    out["tool_choice"] = {"type": "tool", "name": name}


def schema_tool_name(body: dict[str, Any]) -> str | None:
    """The forced tool standing in for a json_schema response format, if any."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") != "json_schema":
        return None
    return str((fmt.get("json_schema") or {}).get("name") or "json_response")


# --- Anthropic response -> OpenAI response -----------------------------------------------------


def to_usage(u: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage as OpenAI's: cache reads and writes are part of the prompt."""
    cache_read = int(u.get("cache_read_input_tokens") or 0)
    prompt = int(u.get("input_tokens") or 0) + int(u.get("cache_creation_input_tokens") or 0)
    prompt += cache_read
    completion = int(u.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def to_completion(msg: Any, schema_tool: str | None = None) -> dict[str, Any]:
    """An Anthropic `message` object as an OpenAI `chat.completion`."""
    if not isinstance(msg, dict) or msg.get("type") != "message":
        raise UpstreamError("protocol", "upstream answer is not a Messages API message")
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "tool_use" and schema_tool and block.get("name") == schema_tool:
            text.append(json.dumps(block.get("input") or {}, separators=(",", ":")))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}, separators=(",", ":")),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if calls:
        message["tool_calls"] = calls
    finish = FINISH_REASONS.get(msg.get("stop_reason") or "end_turn", "stop")
    if schema_tool and finish == "tool_calls" and not calls:
        finish = "stop"
    return {
        "id": msg.get("id") or "msg",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": msg.get("model"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": to_usage(msg.get("usage") or {}),
    }


def stream_error(payload: Any, secrets: Sequence[str] = ()) -> UpstreamError:
    """An `error` event in a stream as the UpstreamError its HTTP status would have made
    (its text scrubbed of `secrets`, the upstream's credentials)."""
    err = payload.get("error") if isinstance(payload, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    msg, code, _ = error_message_from(payload, secrets)
    status = ERROR_STATUSES.get(kind or "", 502)
    return UpstreamError(
        "status",
        f"upstream error mid-stream: {msg or kind or 'unknown'}",
        status=status,
        client_message=msg,
        code=code,
    )


class StreamTranslator:
    """Anthropic SSE events in, OpenAI chunks out. `done` turns true at `message_stop`."""

    def __init__(
        self, model: str, schema_tool: str | None = None, secrets: Sequence[str] = ()
    ) -> None:
        self.schema_tool = schema_tool
        self.secrets = secrets  # scrubbed from an error event
        self.base: dict[str, Any] = {
            "id": "msg",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self.usage: dict[str, Any] = {}
        self.done = False
        self._tool_index: dict[int, int] = {}  # content block index -> OpenAI tool call index
        self._as_text: set[int] = set()  # tool_use blocks carrying the json_schema answer
        self._finish: str | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **self.base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        obj = decode_json(data.encode(), "stream event")
        if not isinstance(obj, dict):
            raise UpstreamError("protocol", "stream event is not a JSON object")
        kind = obj.get("type") or event
        if kind == "message_start":
            msg = obj.get("message") or {}
            self.base["id"] = msg.get("id") or "msg"
            self.base["model"] = msg.get("model") or self.base["model"]
            self.usage = dict(msg.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(int(obj.get("index", 0)), obj.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(int(obj.get("index", 0)), obj.get("delta") or {})
        if kind == "message_delta":
            for key, value in (obj.get("usage") or {}).items():
                if value is not None:
                    self.usage[key] = value
            reason = (obj.get("delta") or {}).get("stop_reason")
            finish = FINISH_REASONS.get(reason or "end_turn", "stop")
            if finish == "tool_calls" and not self._tool_index:
                finish = "stop"  # the forced json_schema tool was answered as text
            self._finish = finish
            return [self._chunk({}, finish)]
        if kind == "message_stop":
            self.done = True
            out = [] if self._finish else [self._chunk({}, "stop")]
            return [*out, {**self.base, "choices": [], "usage": to_usage(self.usage)}]
        if kind == "error":
            raise stream_error(obj, self.secrets)
        return []  # ping, content_block_stop and event types added later

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind != "tool_use":
            return []
        if self.schema_tool and block.get("name") == self.schema_tool:
            self._as_text.add(index)
            return []
        n = self._tool_index.setdefault(index, len(self._tool_index))
        call = {
            "index": n,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if kind == "input_json_delta":
            piece = delta.get("partial_json", "")
            if index in self._as_text:
                return [self._chunk({"content": piece})] if piece else []
            n = self._tool_index.get(index)
            if n is None:
                raise UpstreamError("protocol", "input_json_delta for an unknown content block")
            return [self._chunk({"tool_calls": [{"index": n, "function": {"arguments": piece}}]})]
        return []  # thinking and signature deltas are not part of the OpenAI answer


# --- the provider --------------------------------------------------------------------------------


class AnthropicProvider:
    def __init__(self, config: DeploymentConfig, api_key: Secret | None) -> None:
        self.config = config
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        self.upstream = Upstream(config, headers)
        self._messages = self.upstream.head("POST", "/v1/messages")
        self._messages_stream = self.upstream.head(
            "POST", "/v1/messages", {"Accept": "text/event-stream"}
        )
        self._models = self.upstream.head("GET", "/v1/models?limit=1000")

    def _request(self, body: dict[str, Any]) -> bytes:
        return encode(to_messages_request(body, self.config.max_output_tokens))

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = self._request({**body, "stream": False})
        raw = await self.upstream.fetch(self._messages, payload)
        return to_completion(decode_json(raw, "message"), schema_tool_name(body))

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        payload = self._request({**body, "stream": True})
        resp = await self.upstream.send(self._messages_stream, payload)
        translator = StreamTranslator(
            body.get("model", ""), schema_tool_name(body), self.upstream.secrets
        )
        try:
            decoder = SSEDecoder()
            async for data in resp.iter_chunks():
                batch: ChunkBatch = []
                for event, text in decoder.feed(data):
                    batch.extend(translator.feed(event, text))
                    if translator.done:
                        yield batch
                        return
                if batch:
                    yield batch
        finally:
            resp.release()
        raise UpstreamError("protocol", "stream ended before message_stop")

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Anthropic has no embeddings API (the config refuses `embedding_models` here, so the
        router never sends one; this says why if anything else does)."""
        raise InvalidRequest(
            f"The model `{body.get('model')}` on deployment `{self.config.name}` cannot embed: "
            "Anthropic has no embeddings API.",
            param="model",
            code="unsupported_feature",
        )

    async def list_models(self) -> list[str]:
        return model_ids(decode_json(await self.upstream.fetch(self._models), "model list"))

    async def close(self) -> None:
        await self.upstream.close()
