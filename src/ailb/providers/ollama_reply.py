"""Ollama `/api/chat` answers (one JSON object, or NDJSON lines) as OpenAI chat completions.

Pure: one translator turns Ollama lines into OpenAI chunks, read as the request's `Reading`
says (a forced function's JSON content becomes its call, the answer tool's call becomes the
text ...); a whole answer is the same translation with its chunks merged, so both paths agree.
Tool calls keep the id Ollama gives them (recent versions do) or get a new random one: ids
must be unique across a conversation (clients such as openai-agents refuse a reused one).
`message.thinking` becomes `reasoning_content`, where DeepSeek- and vLLM-style clients read it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ailb.providers.base import UpstreamError, scrub
from ailb.providers.ollama_request import PLAIN, Reading

Chunk = dict[str, Any]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def to_usage(obj: dict[str, Any], prior: dict[str, int] | None = None) -> dict[str, int]:
    """Usage of a done line; `prior`: an earlier attempt of the same request, counted too."""
    prompt = int(obj.get("prompt_eval_count") or 0)
    completion = int(obj.get("eval_count") or 0)
    if prior:
        prompt += prior["prompt_tokens"]
        completion += prior["completion_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _check(obj: Any, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """`obj` as a reply line; an error line raises (its text scrubbed of `secrets`, the
    upstream's credentials)."""
    if not isinstance(obj, dict):
        raise UpstreamError("protocol", "upstream line is not a JSON object")
    if "error" in obj:
        err = scrub(str(obj["error"]), 300, secrets)
        raise UpstreamError("status", f"upstream error mid-stream: {err}", status=502)
    return obj


def _arguments(args: Any) -> str:
    if isinstance(args, str):
        return args
    return json.dumps(args if args is not None else {}, separators=(",", ":"), ensure_ascii=False)


def _token(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": entry.get("token", ""),
        "logprob": entry.get("logprob", 0.0),
        "bytes": entry.get("bytes"),
    }


def _logprobs(raw: Any) -> list[dict[str, Any]]:
    """Ollama's logprobs entries as OpenAI's `logprobs.content` entries."""
    out = []
    for entry in raw if isinstance(raw, list) else ():
        if isinstance(entry, dict):
            top = [_token(t) for t in entry.get("top_logprobs") or () if isinstance(t, dict)]
            out.append({**_token(entry), "top_logprobs": top})
    return out


class StreamTranslator:
    """Ollama NDJSON lines in, OpenAI chunks out; `done` turns true at the `done: true` line.

    With `reading.required`, nothing is released until a tool call arrives: an answer without
    one ends with `missing_call` set and no chunks, so the request can be tried again."""

    def __init__(
        self,
        model: str,
        secrets: Sequence[str] = (),
        reading: Reading = PLAIN,
        prior: dict[str, int] | None = None,
    ) -> None:
        self.secrets = secrets  # scrubbed from an error line
        self.reading = reading
        self.base = {
            "id": f"chatcmpl-ollama{time.time_ns()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self.done = False
        self.missing_call = False
        self.usage: dict[str, int] | None = None
        self._prior = prior
        self._started = False
        self._calls = 0  # tool calls released
        self._held: list[Chunk] | None = [] if reading.required else None
        self._text: list[str] = []  # content held to the end (choice and answer-tool modes)
        self._answer: str | None = None  # the answer tool's arguments

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> Chunk:
        return {
            **self.base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            ],
        }

    def feed(self, obj: Any) -> list[Chunk]:
        obj = _check(obj, self.secrets)
        out: list[Chunk] = []
        calls_before = self._calls
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        msg = obj.get("message")
        msg = msg if isinstance(msg, dict) else {}
        if msg.get("thinking"):
            out.append(self._chunk({"reasoning_content": msg["thinking"]}))
        if msg.get("content"):
            out += self._content(msg["content"], obj.get("logprobs"))
        for call in msg.get("tool_calls") or ():
            out += self._tool_call(call)
        if obj.get("done"):
            out += self._finish(obj)
        return self._release(out, self._calls > calls_before)

    def _release(self, out: list[Chunk], called: bool) -> list[Chunk]:
        if self._held is None:
            return out
        if called:
            held, self._held = self._held, None
            return held + out
        if self.done:  # ended without a call: nothing of this attempt reaches the client
            self.missing_call = True
            self._held = []
            return []
        self._held += out
        return []

    # --- content ----------------------------------------------------------------------------

    def _content(self, text: str, logprobs: Any) -> list[Chunk]:
        r = self.reading
        if r.forced is not None:  # the function's arguments, streamed as they come
            out = []
            if self._calls == 0:
                out.append(self._call_delta(r.forced, "", new_call_id(), first=True))
            out.append(self._call_delta(r.forced, text, None, first=False))
            return out
        if r.choice or r.answer_tool is not None:
            self._text.append(text)
            return []
        lp = {"content": _logprobs(logprobs), "refusal": None} if r.logprobs else None
        return [self._chunk({"content": text}, logprobs=lp)]

    # --- tool calls -------------------------------------------------------------------------

    def _tool_call(self, call: Any) -> list[Chunk]:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            return []
        name, args = fn.get("name"), _arguments(fn.get("arguments"))
        if self.reading.answer_tool is not None and name == self.reading.answer_tool:
            if self._answer is None:
                self._answer = args
            return []
        if self.reading.single and self._calls >= 1:
            return []
        upstream_id = call.get("id")
        call_id = upstream_id if isinstance(upstream_id, str) and upstream_id else new_call_id()
        return [self._call_delta(name, args, call_id, first=True)]

    def _call_delta(self, name: Any, args: str, call_id: str | None, first: bool) -> Chunk:
        """A tool call's first delta (id, name and maybe all arguments) or a further piece of
        its arguments; `function_call` deltas for the legacy API."""
        if first:
            self._calls += 1
        index = self._calls - 1
        if self.reading.legacy:
            fc: dict[str, Any] = {"name": name, "arguments": args} if first else {"arguments": args}
            return self._chunk({"function_call": fc})
        if first:
            delta: dict[str, Any] = {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
        else:
            delta = {"index": index, "function": {"arguments": args}}
        return self._chunk({"tool_calls": [delta]})

    # --- the end ----------------------------------------------------------------------------

    def _finish(self, obj: dict[str, Any]) -> list[Chunk]:
        self.done = True
        r = self.reading
        out: list[Chunk] = []
        text = "".join(self._text)
        if r.choice:
            out += self._chosen(text)
        elif r.answer_tool is not None:
            answer = self._answer if self._answer is not None and self._calls == 0 else text
            if answer:
                out.append(self._chunk({"content": answer}))
        elif r.forced is not None and self._calls == 0:  # no content at all: empty arguments
            out.append(self._call_delta(r.forced, "{}", new_call_id(), first=True))
        length = obj.get("done_reason") == "length"
        if self._calls and not (length and (r.forced or r.choice)):
            finish = "function_call" if r.legacy else "tool_calls"
        else:
            finish = "length" if length else "stop"
        self.usage = to_usage(obj, self._prior)
        out.append(self._chunk({}, finish))
        out.append({**self.base, "choices": [], "usage": self.usage})
        return out

    def _chosen(self, text: str) -> list[Chunk]:
        """The call a `{"name", "arguments"}` answer makes; none when it is not one (cut short)."""
        try:
            obj = json.loads(text)
        except ValueError:
            return []
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return []
        if not isinstance(obj.get("arguments"), dict):
            return []
        return [self._call_delta(obj["name"], _arguments(obj["arguments"]), new_call_id(), True)]


def to_completion(
    obj: Any,
    model: str,
    secrets: Sequence[str] = (),
    reading: Reading = PLAIN,
    prior: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A whole Ollama answer as an OpenAI `chat.completion`: its chunks, merged."""
    obj = _check(obj, secrets)
    if not isinstance(obj.get("message"), dict) or not obj.get("done"):
        raise UpstreamError("protocol", "upstream answer is not a finished /api/chat reply")
    # Nothing to hold back in a whole answer: whether it made the call it had to is the
    # caller's to see (and to try again).
    t = StreamTranslator(model, secrets, replace(reading, required=False), prior)
    return _merge(t.feed(obj), str(t.base["id"]), obj.get("model") or model)


def made_call(completion: dict[str, Any]) -> bool:
    message = completion["choices"][0]["message"]
    return bool(message.get("tool_calls") or message.get("function_call"))


def _merge(chunks: list[Chunk], completion_id: str, model: str) -> dict[str, Any]:
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    function_call: dict[str, Any] | None = None
    logprobs: list[dict[str, Any]] | None = None
    finish = "stop"
    usage = None
    for chunk in chunks:
        if not chunk["choices"]:
            usage = chunk.get("usage")
            continue
        choice = chunk["choices"][0]
        delta = choice["delta"]
        finish = choice["finish_reason"] or finish
        if delta.get("content"):
            content.append(delta["content"])
        if delta.get("reasoning_content"):
            reasoning.append(delta["reasoning_content"])
        if choice.get("logprobs"):
            logprobs = (logprobs or []) + choice["logprobs"]["content"]
        for d in delta.get("tool_calls") or ():
            call = calls.setdefault(
                d["index"],
                {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
            )
            if d.get("id"):
                call["id"] = d["id"]
            if d.get("function", {}).get("name") is not None:
                call["function"]["name"] = d["function"]["name"]
            call["function"]["arguments"] += d.get("function", {}).get("arguments") or ""
        if delta.get("function_call"):
            fc = delta["function_call"]
            if function_call is None:
                function_call = {"name": fc.get("name"), "arguments": ""}
            function_call["arguments"] += fc.get("arguments") or ""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [c for _, c in sorted(calls.items())]
    if function_call is not None:
        message["function_call"] = function_call
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": {"content": logprobs, "refusal": None} if logprobs else None,
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }
