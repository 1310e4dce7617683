"""POST /v1/chat/completions: the chat face of the pipeline (ailb.pipeline), as a plain ASGI
endpoint.

Kept out of FastAPI's per-route machinery (DESIGN §1: ~40 % faster); its schema is still in the
OpenAPI document, generated from the same msgspec types that validate it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ailb.api.face import refuse
from ailb.api.schemas import parse_chat_request
from ailb.asgi import ClientDisconnected, Receive, Scope, Send, read_body, send_bytes, send_error
from ailb.errors import APIError
from ailb.pipeline.core import Pipeline
from ailb.pipeline.exchange import overhead
from ailb.pipeline.stream import relay

_encode = msgspec.json.Encoder().encode

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
DONE_FRAME = b"data: [DONE]\n\n"


def stream_error_frame(message: str, code: str) -> bytes:
    payload = {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
    return b"data: " + _encode(payload) + b"\n\n"


class ChatStream:
    """Chat chunks as SSE `data:` frames, ending with `[DONE]`. Upstream streams always carry
    usage (billing needs it); its chunk reaches only a client that asked for it (`skip_usage`:
    the relay leaves it out)."""

    __slots__ = ("skip_usage",)
    headers = SSE_HEADERS

    def __init__(self, include_usage: bool) -> None:
        self.skip_usage = not include_usage

    def encode(self, chunk: dict[str, Any]) -> bytes:
        return b"data: " + _encode(chunk) + b"\n\n"

    def done(self) -> bytes:
        return DONE_FRAME

    def error(self, message: str, code: str) -> bytes:
        return stream_error_frame(message, code)


def answer_text(result: dict[str, Any]) -> str:
    choices = result.get("choices") or ()
    content = (choices[0].get("message") or {}).get("content") if choices else None
    return content if isinstance(content, str) else ""


class ChatCompletionsEndpoint:
    def __init__(self, pipeline: Pipeline, max_body_bytes: int) -> None:
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self.pipeline
        call = pipeline.begin(scope)
        ex = call.ex
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
            req, raw = parse_chat_request(body)
            pipeline.accept(call, req, raw, len(body))
            await pipeline.prepare(call)
            if req.stream:
                opened = await pipeline.open_stream(call)
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                collect = call.owner is not None or ex.messages is not None
                answer = await relay(
                    pipeline.runtime,
                    pipeline.ledger,
                    call,
                    opened,
                    receive,
                    send,
                    ChatStream(include_usage),
                    collect,
                )
                if answer is not None:
                    pipeline.remember(call, answer)
                return
            result = await pipeline.complete(call)
            await send_bytes(send, 200, _encode(result), [*call.headers, overhead(ex)])
            if ex.messages is not None or call.owner is not None:
                text = answer_text(result)
                if ex.messages is not None:
                    ex.answer = text
                pipeline.remember(call, text)
        except (APIError, RecursionError) as exc:
            # Answered from another frame: a local naming the exception here would make a cycle
            # (its traceback holds this frame), keeping the request's body until the collector
            # runs.
            await refuse(self.pipeline, send, exc, call)
        except ClientDisconnected:
            ex.status, ex.error = 499, "client_disconnected"
        except Exception:
            pipeline.crashed(call)
            await send_error(
                send,
                APIError("The gateway failed to process the request."),
                [*call.headers, overhead(ex)],
            )
        finally:
            pipeline.end(call)
