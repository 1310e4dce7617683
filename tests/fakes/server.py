"""Scriptable fake upstreams: real aiohttp servers on 127.0.0.1, each in its own thread.

A test queues `Reply` objects (or sets a default); each request consumes the next one and is
recorded in `requests`. Provider modules (openai.py, anthropic.py, ollama.py) render a Reply in
their exact wire format; the failure modes (status, delay, hang, cut stream, garbage, dropped
connection) are shared here.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import threading
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class ToolCall:
    name: str
    arguments: str = "{}"  # JSON text, as OpenAI carries it
    id: str = "call_1"


@dataclass
class Reply:
    """What the fake does for one request."""

    text: str = "Hello from the fake upstream."
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"  # OpenAI vocabulary; fakes translate to their own
    usage: tuple[int, int] = (11, 7)  # prompt, completion
    status: int = 200
    error: Any = None  # the body sent with a non-2xx status (provider's error format)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between stream events
    cut_after: int | None = None  # stream: drop the connection after N events
    garbage: bool = False  # 200 with a body that is not JSON (or an SSE event that is not)
    drop: bool = False  # close the connection without answering
    hang: bool = False  # never answer (until the client gives up)
    stream_error: Any = None  # stream: send this provider-format error event after the events
    pieces: int = 3  # how many content deltas a streamed text is split into
    reasoning: str = ""  # thinking text, given where the provider's request asks for it
    reorder: bool = False  # embeddings: list the vectors in reverse (OpenAI's carry an index)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


Handler = Callable[["FakeServer", web.Request, Reply, Any], Awaitable[web.StreamResponse]]


EMBED_DIMENSIONS = 64  # the fakes' vector size when the request names none
_STOP_WORDS = frozenset(
    ("a", "an", "and", "are", "by", "do", "does", "for", "how", "i", "in", "is", "it", "me",
     "my", "of", "on", "or", "the", "to", "was", "what", "when", "where", "who", "you")
)  # fmt: skip


def fake_embedding(text: str, dimensions: int = EMBED_DIMENSIONS) -> list[float]:
    """A deterministic stand-in for an embedding model: a hashed, signed bag of words (stop
    words left out), so texts sharing words point the same way and unrelated ones are near
    orthogonal. Left unnormalised on purpose: the client must normalise."""
    vec = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOP_WORDS:
            continue
        h = zlib.crc32(word.encode())
        vec[h % dimensions] += 1.0 if h & 0x10000 else -1.0
    if not any(vec):  # no words: still a direction
        vec[0] = 1.0
    return vec


def split_text(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


class FakeServer:
    """An HTTP server on 127.0.0.1 with routes `{(method, path): handler}`."""

    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[Recorded] = []
        self.record = True  # False: keep no `requests` (long load runs)
        # Called for each unscripted request when set: the Reply to give it (chaos runs), with
        # the request's decoded body.
        self.chooser: Callable[[Any], Reply] | None = None
        self.models: list[str] = ["fake-model"]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._hangs: list[asyncio.Future[None]] = []
        self.port = 0
        # Set before start(): serve https (the url then names `localhost`, as the certificate).
        self.ssl_context: ssl.SSLContext | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self.ssl_context)
        await site.start()

    def stop(self) -> None:
        async def _stop() -> None:
            for f in self._hangs:
                if not f.done():
                    f.set_result(None)
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        if self.ssl_context is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    # --- scripting --------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    # --- dispatch ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if self.record:
            self.requests.append(
                Recorded(request.method, request.path, dict(request.headers), body)
            )
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response({"error": {"message": "not found"}}, status=404)
        if request.method == "GET":  # a probe (model list)
            reply = Reply()
        elif self.replies:
            reply = self.replies.popleft()
        elif self.chooser is not None:
            reply = self.chooser(body)
        else:
            reply = self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.hang:
            fut = asyncio.get_running_loop().create_future()
            self._hangs.append(fut)
            await fut
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        if reply.status >= 300:
            return web.Response(
                status=reply.status,
                body=json.dumps(reply.error if reply.error is not None else {}).encode(),
                content_type="application/json",
                headers=reply.headers,
            )
        if reply.garbage and not (isinstance(body, dict) and body.get("stream")):
            return web.Response(body=b"<html>oops</html>", content_type="application/json")
        return await handler(self, request, reply, body)

    async def stream(
        self,
        request: web.Request,
        reply: Reply,
        frames: list[bytes],
        content_type: str = "text/event-stream",
    ) -> web.StreamResponse:
        """Write stream frames (SSE events or NDJSON lines) with the reply's pacing and
        failure mode (`cut_after` drops the connection mid-way)."""
        resp = web.StreamResponse(
            headers={"Content-Type": content_type, "Cache-Control": "no-cache", **reply.headers}
        )
        await resp.prepare(request)
        for i, frame in enumerate(frames):
            if reply.cut_after is not None and i >= reply.cut_after:
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(frame)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
        await resp.write_eof()
        return resp


def sse_frame(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()
