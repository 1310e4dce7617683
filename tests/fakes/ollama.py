"""A fake Ollama server: POST /api/chat (JSON or NDJSON stream), POST /api/embed, GET /api/tags.

Ollama streams unless the request says "stream": false, so the default is NDJSON.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.server import EMBED_DIMENSIONS, FakeServer, Reply, fake_embedding, split_text

CREATED_AT = "2025-01-01T00:00:00.000000Z"
NDJSON = "application/x-ndjson"


def ollama_error(message: str) -> dict[str, str]:
    return {"error": message}


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    # Ollama carries arguments as an object, not as JSON text like OpenAI.
    return [
        {"function": {"name": t.name, "arguments": json.loads(t.arguments)}}
        for t in reply.tool_calls
    ]


def _final(model: str, reply: Reply, content: str, with_tools: bool) -> dict[str, Any]:
    p, c = reply.usage
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if with_tools and reply.tool_calls:
        msg["tool_calls"] = _tool_calls(reply)
    return {
        "model": model,
        "created_at": CREATED_AT,
        "message": msg,
        "done": True,
        "done_reason": "length" if reply.finish_reason == "length" else "stop",
        "total_duration": 5_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": p,
        "prompt_eval_duration": 1_000_000,
        "eval_count": c,
        "eval_duration": 3_000_000,
    }


def _line(data: Any) -> bytes:
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


def lines(model: str, reply: Reply) -> list[bytes]:
    """NDJSON stream: text pieces, tool calls whole in one line, then the done line."""

    def chunk(msg: dict[str, Any]) -> bytes:
        full = {"role": "assistant", **msg}
        return _line({"model": model, "created_at": CREATED_AT, "message": full, "done": False})

    out = [chunk({"content": piece}) for piece in split_text(reply.text, reply.pieces)]
    if reply.tool_calls:
        out.append(chunk({"content": "", "tool_calls": _tool_calls(reply)}))
    if reply.stream_error is not None:
        out.append(_line(reply.stream_error))
        return out
    out.append(_line(_final(model, reply, "", with_tools=False)))
    return out


async def chat(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    body = body if isinstance(body, dict) else {}
    model = body.get("model", "?")
    if body.get("stream", True) is False:
        payload = _final(model, reply, reply.text, with_tools=True)
        return web.json_response(payload, headers=reply.headers)
    frames = lines(model, reply)
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


def fake_ollama() -> FakeServer:
    server = FakeServer(
        {("POST", "/api/chat"): chat, ("POST", "/api/embed"): embed, ("GET", "/api/tags"): tags}
    )
    server.models = ["llama3.2:latest", "qwen2.5:7b"]
    return server
