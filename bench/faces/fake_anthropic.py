#!/usr/bin/env python3
"""A tiny, fast fake Anthropic Messages API upstream for the faces benchmark (the Anthropic
twin of ../shared/bench/fake_upstream.py): raw asyncio + httptools (+ uvloop), keep-alive,
loopback only.

  POST /v1/messages -> a fixed `message` (or its SSE event sequence when "stream": true)
  GET  /v1/models   -> one model
  GET  /health      -> ok
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import httptools

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

TEXT = "Hello! This is a fixed reply from the fake upstream."
USAGE = {"input_tokens": 12, "output_tokens": 11}


def message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake0001",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": USAGE,
    }


def events(model: str) -> bytes:
    start = {**message(model), "content": [], "stop_reason": None,
             "usage": {"input_tokens": 12, "output_tokens": 1}}  # fmt: skip
    seq = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        *(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": w + " "}})
          for w in TEXT.split(" ")),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 11},
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    frames = b"".join(
        b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(data).encode())
        for name, data in seq
    )
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(frames), frames)


def response(status: bytes, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + ctype
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: keep-alive\r\n\r\n"
        + body
    )


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
)
MODELS = b'{"data":[{"type":"model","id":"claude-fake","display_name":"fake"}],"has_more":false}'


class Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.cache: dict[tuple[str, bool], bytes] = {}

    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.t.write(response(b"400 Bad Request", b'{"type":"error"}'))
            self.t.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        if method == b"POST" and path == b"/v1/messages":
            try:
                req = json.loads(b"".join(self.body))
            except ValueError:
                req = {}
            model, stream = str(req.get("model") or "claude-fake"), bool(req.get("stream"))
            out = self.cache.get((model, stream))
            if out is None:
                out = self.cache[(model, stream)] = (
                    SSE_HEAD + events(model)
                    if stream
                    else response(b"200 OK", json.dumps(message(model)).encode())
                )
            self.t.write(out)
        elif method == b"GET" and path == b"/v1/models":
            self.t.write(response(b"200 OK", MODELS))
        elif method == b"GET" and path == b"/health":
            self.t.write(response(b"200 OK", b"ok", b"text/plain"))
        else:
            self.t.write(response(b"404 Not Found", b'{"type":"error"}'))
        if not self.parser.should_keep_alive():
            self.t.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9201)
    a = ap.parse_args()
    if uvloop is not None:
        uvloop.install()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Proto, a.host, a.port))
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
