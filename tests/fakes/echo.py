"""A hostile upstream: every error it sends repeats the credentials it was given (the
Authorization and x-api-key headers, every header) in its message, code and param -- as some
real servers do ("Incorrect API key provided: ...").

What a request gets depends on its last message's text: `status:<code>` answers that status
(OpenAI's error shape, or Anthropic's on /v1/messages), `stream-error` streams one chunk and then
an error event, anything else a normal completion. GET /v1/models lists the models; under the
prefix /bad every request, probes included, is a 401 echo. `echoed` keeps every echo sent, so a
test can check the secrets really went out."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.openai import chat as openai_chat
from tests.fakes.openai import models as openai_models
from tests.fakes.server import FakeServer, Reply, sse_frame


def _echo(request: web.Request) -> str:
    headers = dict(request.headers)
    return (
        f"Incorrect API key provided: {headers.get('Authorization', '')} "
        f"{headers.get('x-api-key', '')}; you sent {json.dumps(headers)}"
    )


def _last_text(body: Any) -> str:
    if isinstance(body, dict):
        messages = body.get("messages") or [{}]
        content = messages[-1].get("content") if isinstance(messages[-1], dict) else ""
        return content if isinstance(content, str) else json.dumps(content)
    return ""


def _error(server: FakeServer, request: web.Request, status: int) -> web.Response:
    echo = _echo(request)
    server.echoed.append(echo)  # type: ignore[attr-defined]
    credential = request.headers.get("x-api-key") or request.headers.get("Authorization", "")
    if request.path.endswith("/messages"):  # Anthropic's error shape
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": echo}}
    else:
        body = {
            "error": {
                "message": echo,
                "type": "invalid_request_error",
                "param": credential,
                "code": credential,
            }
        }
    return web.json_response(body, status=status, headers={"x-echo-key": credential})


async def chat(server: FakeServer, request: web.Request, reply: Reply, body: Any) -> Any:
    text = _last_text(body)
    if request.path.startswith("/bad/"):
        return _error(server, request, 401)
    if text.startswith("status:"):
        return _error(server, request, int(text.split(":")[1].split()[0]))
    if "stream-error" in text and isinstance(body, dict) and body.get("stream"):
        echo = _echo(request)
        server.echoed.append(echo)  # type: ignore[attr-defined]
        error = {"error": {"message": echo, "type": "server_error", "code": None}}
        first = {
            "id": "chatcmpl-echo",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}],
        }
        # The error comes after the first chunk has reached the client (no failover then).
        paced = Reply(chunk_delay=0.3)
        return await server.stream(request, paced, [sse_frame(first), sse_frame(error)])
    if request.path.endswith("/messages"):
        return _error(server, request, 400)
    return await openai_chat(server, request, reply, body)


async def models(server: FakeServer, request: web.Request, reply: Reply, body: Any) -> Any:
    if request.path.startswith("/bad/"):
        return _error(server, request, 401)
    return await openai_models(server, request, reply, body)


def fake_echo() -> FakeServer:
    server = FakeServer(
        {
            ("POST", "/v1/chat/completions"): chat,
            ("POST", "/v1/messages"): chat,
            ("GET", "/v1/models"): models,
            ("POST", "/bad/v1/chat/completions"): chat,
            ("GET", "/bad/v1/models"): models,
        }
    )
    server.echoed = []  # type: ignore[attr-defined]
    return server
