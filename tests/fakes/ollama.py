"""A fake Ollama server: POST /api/chat (JSON or NDJSON stream), POST /api/embed, GET /api/tags.

Ollama streams unless the request says "stream": false, so the default is NDJSON. A `Reply` is
scripted in OpenAI's terms (text, tool calls, reasoning); the fake answers what Ollama does with
the request it gets:

- tool calls only when the request has `tools`, each with a fresh random id (`call_` and eight
  characters, as Ollama's own) -- none with `tool_call_ids = False`, as Ollama before 0.12.10;
- `format` constrains the answer to JSON (a grammar, from the first token): the content is the
  scripted tool call's arguments (`{"name", "arguments"}` when the schema is a choice of
  functions), else the text when it is JSON, else the smallest value of the schema; no tool call
  can be made; an answer cut by `length` is cut JSON;
- `think`: the scripted reasoning comes as `thinking` only when thinking is asked for; a level
  (low/medium/high) is refused with Ollama's 400 unless the model is a gpt-oss;
- `logprobs`: one entry per streamed piece, with `top_logprobs` alternatives.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from aiohttp import web

from tests.fakes.server import EMBED_DIMENSIONS, FakeServer, Reply, fake_embedding, split_text

CREATED_AT = "2025-01-01T00:00:00.000000Z"
NDJSON = "application/x-ndjson"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def ollama_error(message: str) -> dict[str, str]:
    return {"error": message}


class FakeOllama(FakeServer):
    tool_call_ids = True  # False: answer like Ollama before 0.12.10, whose tool calls had no id


def _call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _tool_calls(server: FakeServer, reply: Reply) -> list[dict[str, Any]]:
    # Ollama carries arguments as an object, not as JSON text like OpenAI.
    out = []
    for i, t in enumerate(reply.tool_calls):
        call: dict[str, Any] = {
            "function": {"index": i, "name": t.name, "arguments": json.loads(t.arguments)}
        }
        if getattr(server, "tool_call_ids", False):
            call = {"id": _call_id(), **call}
        out.append(call)
    return out


def smallest(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """The simplest value a grammar built from `schema` lets a model write."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 8:
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return smallest(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return smallest(schema[key][0], root, depth + 1)
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "array":
        return [smallest(schema.get("items"), root, depth + 1)]
    simple = {"string": "text", "integer": 1, "number": 1.5, "boolean": True, "null": None}
    if kind in simple:
        return simple[kind]
    props = schema.get("properties") or {}
    return {k: smallest(v, root, depth + 1) for k, v in props.items()}


def _json_text(reply: Reply, fmt: Any) -> str:
    """What a model held to `format` writes for this scripted reply."""
    if reply.tool_calls:
        call = reply.tool_calls[0]
        branches = fmt.get("anyOf") if isinstance(fmt, dict) else None
        if branches and all("name" in (b.get("properties") or {}) for b in branches):
            return json.dumps({"name": call.name, "arguments": json.loads(call.arguments)})
        return call.arguments
    try:
        json.loads(reply.text)
        return reply.text
    except ValueError:
        pass
    value = {"text": reply.text} if fmt == "json" else smallest(fmt)
    return json.dumps(value)


class Answer:
    """One request's answer: thinking, content, tool calls and logprobs, as Ollama gives them."""

    def __init__(self, server: FakeServer, reply: Reply, body: dict[str, Any]) -> None:
        self.reply = reply
        think = body.get("think")
        self.thinking = reply.reasoning if think not in (None, False) else ""
        fmt = body.get("format")
        self.content = reply.text if fmt is None else _json_text(reply, fmt)
        if fmt is not None and reply.finish_reason == "length":
            self.content = self.content[: len(self.content) // 2]
        with_tools = bool(body.get("tools")) and fmt is None
        self.tool_calls = _tool_calls(server, reply) if with_tools else []
        self.top = int(body.get("top_logprobs") or 0) if body.get("logprobs") else -1

    def logprobs(self, piece: str) -> list[dict[str, Any]]:
        token = {"token": piece, "logprob": -0.5, "bytes": list(piece.encode())}
        alts = [{"token": f"{piece}~{i}", "logprob": -1.0 - i} for i in range(self.top)]
        return [{**token, "top_logprobs": [token, *alts][: self.top]}]

    def final(self, model: str, whole: bool) -> dict[str, Any]:
        p, c = self.reply.usage
        msg: dict[str, Any] = {"role": "assistant", "content": self.content if whole else ""}
        if whole and self.thinking:
            msg["thinking"] = self.thinking
        if whole and self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        out: dict[str, Any] = {
            "model": model,
            "created_at": CREATED_AT,
            "message": msg,
            "done": True,
            "done_reason": "length" if self.reply.finish_reason == "length" else "stop",
            "total_duration": 5_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": p,
            "prompt_eval_duration": 1_000_000,
            "eval_count": c,
            "eval_duration": 3_000_000,
        }
        if whole and self.top >= 0 and self.content:
            out["logprobs"] = [
                e
                for piece in split_text(self.content, self.reply.pieces)
                for e in self.logprobs(piece)
            ]
        return out

    def lines(self, model: str) -> list[bytes]:
        """NDJSON stream: thinking pieces, text pieces, tool calls whole in one line, then the
        done line."""

        def chunk(msg: dict[str, Any], **extra: Any) -> bytes:
            full = {"role": "assistant", "content": "", **msg}
            row = {"model": model, "created_at": CREATED_AT, "message": full, "done": False}
            return _line({**row, **extra})

        pieces = self.reply.pieces
        out = [chunk({"thinking": piece}) for piece in split_text(self.thinking, pieces)]
        for piece in split_text(self.content, pieces):
            extra = {"logprobs": self.logprobs(piece)} if self.top >= 0 else {}
            out.append(chunk({"content": piece}, **extra))
        if self.tool_calls:
            out.append(chunk({"tool_calls": self.tool_calls}))
        if self.reply.stream_error is not None:
            out.append(_line(self.reply.stream_error))
            return out
        out.append(_line(self.final(model, whole=False)))
        return out


def _line(data: Any) -> bytes:
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


async def chat(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    body = body if isinstance(body, dict) else {}
    model = body.get("model", "?")
    think = body.get("think")
    if isinstance(think, str) and not model.startswith("gpt-oss"):
        if reply is not server.default:  # refused before generating: the script stays
            server.replies.appendleft(reply)
        error = ollama_error(f'think value "{think}" is not supported for this model')
        return web.json_response(error, status=400)
    answer = Answer(server, reply, body)
    if body.get("stream", True) is False:
        return web.json_response(answer.final(model, whole=True), headers=reply.headers)
    frames = answer.lines(model)
    if reply.garbage:
        frames.insert(1, b"{not json\n")
    return await server.stream(request, reply, frames, content_type=NDJSON)


async def tags(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    return web.json_response(
        {
            "models": [
                {
                    "name": m,
                    "model": m,
                    "modified_at": CREATED_AT,
                    "size": 1,
                    "digest": "sha256:0",
                    "details": {},
                }
                for m in server.models
            ]
        }
    )


async def embed(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    """Ollama's /api/embed answer with `fake_embedding` vectors (real Ollama normalises them;
    the fake does not, so the client's own normalisation is what tests see)."""
    body = body if isinstance(body, dict) else {}
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not body.get("model"):
        return web.json_response(ollama_error("model is required"), status=400)
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return web.json_response(ollama_error("invalid input type"), status=400)
    dims = body.get("dimensions") or EMBED_DIMENSIONS
    return web.json_response(
        {
            "model": body["model"],
            "embeddings": [fake_embedding(t, dims) for t in texts],
            "total_duration": 5_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": sum(len(t.split()) for t in texts),
        },
        headers=reply.headers,
    )


def fake_ollama() -> FakeOllama:
    server = FakeOllama(
        {("POST", "/api/chat"): chat, ("POST", "/api/embed"): embed, ("GET", "/api/tags"): tags}
    )
    server.models = ["llama3.2:latest", "qwen2.5:7b"]
    return server
