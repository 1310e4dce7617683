"""A fake OpenAI server: POST /v1/chat/completions (JSON or SSE), POST /v1/responses (JSON or
SSE events, text answers only: the native Responses pass-through's upstream), POST
/v1/completions (the legacy API, JSON or SSE), POST /v1/embeddings, GET /v1/models."""

from __future__ import annotations

import base64
import re
import struct
import time
from typing import Any

from aiohttp import web

from tests.fakes.server import (
    EMBED_DIMENSIONS,
    FakeServer,
    Reply,
    fake_embedding,
    split_text,
    sse_frame,
)


def openai_error(message: str, param: str | None = None, code: str | None = None) -> Any:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def token_logprobs(text: str, top: int) -> dict[str, Any]:
    """A `logprobs` object for `text`, one token per word."""
    tokens = re.findall(r"\S+\s*", text)
    return {
        "content": [
            {
                "token": t,
                "logprob": -0.25,
                "bytes": list(t.encode()),
                "top_logprobs": [
                    {"token": t + "~" * k, "logprob": -0.25 - k, "bytes": list(t.encode())}
                    for k in range(top)
                ],
            }
            for t in tokens
        ],
        "refusal": None,
    }


def completion(model: str, reply: Reply, legacy: bool = False, body: Any = None) -> dict[str, Any]:
    """`legacy`: the request used `functions`, so a call is the one `function_call`. `body`:
    the request, for `n` (that many identical choices) and `logprobs`."""
    body = body if isinstance(body, dict) else {}
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    finish = reply.finish_reason
    if reply.tool_calls and legacy:
        first = reply.tool_calls[0]
        message["function_call"] = {"name": first.name, "arguments": first.arguments}
        finish = "function_call" if finish == "tool_calls" else finish
    elif reply.tool_calls:
        message["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
            for t in reply.tool_calls
        ]
    logprobs = None
    if body.get("logprobs"):
        logprobs = token_logprobs(reply.text, int(body.get("top_logprobs") or 0))
    p, c = reply.usage
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish}
            for i in range(int(body.get("n") or 1))
        ],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


def chunks(
    model: str, reply: Reply, include_usage: bool, legacy: bool = False
) -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in split_text(reply.text, reply.pieces)]
    if legacy and reply.tool_calls:
        first = reply.tool_calls[0]
        out.append(chunk({"function_call": {"name": first.name, "arguments": ""}}))
        for piece in split_text(first.arguments, 2):
            out.append(chunk({"function_call": {"arguments": piece}}))
        finish = "function_call" if reply.finish_reason == "tool_calls" else reply.finish_reason
        out.append(chunk({}, finish))
    for i, t in enumerate([] if legacy else reply.tool_calls):
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": t.id,
                            "type": "function",
                            "function": {"name": t.name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        for piece in split_text(t.arguments, 2):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    if not (legacy and reply.tool_calls):
        out.append(chunk({}, reply.finish_reason))
    if include_usage:
        p, c = reply.usage
        out.append(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            }
        )
    return out


async def chat(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    model = body.get("model", "?") if isinstance(body, dict) else "?"
    legacy = isinstance(body, dict) and body.get("functions") is not None
    if not (isinstance(body, dict) and body.get("stream")):
        return web.json_response(completion(model, reply, legacy, body), headers=reply.headers)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    frames = [sse_frame(c) for c in chunks(model, reply, include_usage, legacy)]
    if reply.garbage:
        frames.insert(1, b"data: {not json\n\n")
    if reply.stream_error is not None:
        frames.append(sse_frame(reply.stream_error))
    else:
        frames.append(b"data: [DONE]\n\n")
    return await server.stream(request, reply, frames)


async def models(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                for m in server.models
            ],
        }
    )


def _embedding_inputs(value: Any) -> list[str] | None:
    """OpenAI's four input shapes as texts (token ids as `t<id>` words); None when invalid."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(t, int) for t in value):
        value = [value]  # one input as token ids
    texts = []
    for item in value:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            texts.append(" ".join(f"t{t}" for t in item))
        else:
            return None
    return texts


async def embeddings(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    """OpenAI's create-embeddings answer with `fake_embedding` vectors, for text or token-id
    input, as floats or base64 (little-endian float32) as asked; the request errors OpenAI
    itself gives for a missing model or an empty input."""
    body = body if isinstance(body, dict) else {}
    texts = _embedding_inputs(body.get("input"))
    if not body.get("model"):
        return web.json_response(openai_error("you must provide a model parameter"), status=400)
    if texts is None:
        return web.json_response(
            openai_error("'$.input' is invalid: an input cannot be an empty string", "input"),
            status=400,
        )
    dims = body.get("dimensions") or EMBED_DIMENSIONS
    rows = [
        {"object": "embedding", "index": i, "embedding": fake_embedding(t, dims)}
        for i, t in enumerate(texts)
    ]
    if body.get("encoding_format") == "base64":
        for row in rows:
            vector = row["embedding"]
            row["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    if reply.reorder:
        rows.reverse()
    tokens = sum(len(t.split()) for t in texts)
    return web.json_response(
        {
            "object": "list",
            "data": rows,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        headers=reply.headers,
    )


def response(model: str, reply: Reply, status: str = "completed") -> dict[str, Any]:
    """OpenAI's Response object for a text reply, as its Responses API answers it."""
    p, c = reply.usage
    message = {
        "id": "msg_up1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
    }
    return {
        "id": "resp_upstream1",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "model": model,
        "output": [message] if status != "in_progress" else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": p,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": c,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": p + c,
        }
        if status == "completed"
        else None,
    }


async def responses(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    model = body.get("model", "?") if isinstance(body, dict) else "?"
    if not (isinstance(body, dict) and body.get("stream")):
        return web.json_response(response(model, reply), headers=reply.headers)
    started = response(model, reply, "in_progress")
    item = {"id": "msg_up1", "type": "message", "role": "assistant", "status": "in_progress",
            "content": []}  # fmt: skip
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": "msg_up1", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", **where, "part": part},
        *({"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
          for piece in split_text(reply.text, reply.pieces)),
        {"type": "response.output_text.done", **where, "text": reply.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": {**part, "text": reply.text}},
        {"type": "response.output_item.done", "output_index": 0,
         "item": response(model, reply)["output"][0]},
        {"type": "response.completed", "response": response(model, reply)},
    ]  # fmt: skip
    frames = [sse_frame({**e, "sequence_number": i}, event=e["type"]) for i, e in enumerate(events)]
    return await server.stream(request, reply, frames)


def text_completion(model: str, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    """The legacy API's answer: one `text` choice per prompt (and `n`), with `echo` and
    `logprobs` as OpenAI gives them, so a pass-through test can see them arrive."""
    prompts = body.get("prompt")
    count = (
        len(prompts) if isinstance(prompts, list) and prompts and isinstance(prompts[0], str) else 1
    )
    n = body.get("n") or 1
    echo = body.get("echo") is True
    choices = []
    for i in range(count * n):
        prompt = prompts[i // n] if isinstance(prompts, list) and count > 1 else prompts
        text = (str(prompt) if echo else "") + reply.text
        choice: dict[str, Any] = {"text": text, "index": i, "logprobs": None,
                                  "finish_reason": reply.finish_reason}  # fmt: skip
        if body.get("logprobs") is not None:
            tokens = re.findall(r"\S+\s*", text)
            choice["logprobs"] = {"tokens": tokens, "token_logprobs": [-0.25] * len(tokens),
                                  "top_logprobs": None, "text_offset": []}  # fmt: skip
        choices.append(choice)
    p, c = reply.usage
    return {
        "id": "cmpl-up1",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


async def completions(
    server: FakeServer, request: web.Request, reply: Reply, body: Any
) -> web.StreamResponse:
    body = body if isinstance(body, dict) else {}
    model = body.get("model", "?")
    if body.get("prompt") is None:
        return web.json_response(openai_error("Missing prompt.", "prompt"), status=400)
    if not body.get("stream"):
        return web.json_response(text_completion(model, reply, body), headers=reply.headers)
    base = {"id": "cmpl-up1", "object": "text_completion", "created": 0, "model": model}
    frames = [
        sse_frame({**base, "choices": [{"text": piece, "index": 0, "logprobs": None,
                                        "finish_reason": None}]})
        for piece in split_text(reply.text, reply.pieces)
    ]  # fmt: skip
    frames.append(
        sse_frame({**base, "choices": [{"text": "", "index": 0, "logprobs": None,
                                        "finish_reason": reply.finish_reason}]})
    )  # fmt: skip
    if (body.get("stream_options") or {}).get("include_usage"):
        p, c = reply.usage
        usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        frames.append(sse_frame({**base, "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return await server.stream(request, reply, frames)


def fake_openai() -> FakeServer:
    return FakeServer(
        {
            ("POST", "/v1/chat/completions"): chat,
            ("POST", "/v1/responses"): responses,
            ("POST", "/v1/completions"): completions,
            ("POST", "/v1/embeddings"): embeddings,
            ("GET", "/v1/models"): models,
        }
    )


def gateway_config(url: str, context_window: int | None = 16000) -> str:
    """A gateway config with one deployment, `up`, serving model gpt-test from the fake at
    `url`; None leaves the context window unconfigured."""
    window = f"    context_window: {context_window}\n" if context_window is not None else ""
    return (
        "deployments:\n"
        "  - name: up\n"
        "    provider: openai\n"
        f"    base_url: {url}/v1\n"
        "    models: [gpt-test]\n" + window
    )
