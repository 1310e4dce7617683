"""Relay an upstream stream to the client. Upstream events are OpenAI chat chunks whatever the
provider; a face's `StreamEncoder` turns each into its own wire format. The status line is
already decided (200): from here a failure is the face's explicit error event and never its
end-of-stream marker, so a cut answer never looks whole."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from ailb.asgi import Receive, Send
from ailb.pipeline.accounting import Ledger, account
from ailb.pipeline.call import Call, Headers
from ailb.pipeline.exchange import overhead
from ailb.providers.base import UpstreamError
from ailb.routing.failover import OpenStream
from ailb.runtime import Runtime

log = logging.getLogger("ailb.stream")


class StreamEncoder(Protocol):
    headers: Headers  # the response's content type and cache headers

    def encode(self, chunk: dict[str, Any]) -> bytes | None:
        """The frames for one chat chunk, or None for nothing to send."""

    def done(self) -> bytes:
        """The frames that end a complete answer."""

    def error(self, message: str, code: str) -> bytes:
        """The frames that end a broken one."""


async def relay(
    runtime: Runtime,
    ledger: Ledger,
    call: Call,
    opened: OpenStream,
    receive: Receive,
    send: Send,
    encoder: StreamEncoder,
    collect: bool = False,
) -> str | None:
    """With `collect`, returns the assembled answer of a stream that completed."""
    ex, needs = call.ex, call.needs
    assert needs is not None
    dep = opened.deployment
    # The status line and first frames leave now: the first byte's time and overhead.
    ex.ttft = time.perf_counter() - ex.started
    headers = [*encoder.headers, *call.headers, overhead(ex, ex.ttft)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    main = asyncio.current_task()
    state = {"finished": False, "disconnected": False}

    def on_receive(task: asyncio.Future[Any]) -> None:
        # The only thing a client can send now is a disconnect: stop the upstream at once.
        if not state["finished"] and not task.cancelled() and main is not None:
            state["disconnected"] = True
            main.cancel()

    watcher: asyncio.Future[Any] = asyncio.ensure_future(receive())
    watcher.add_done_callback(on_receive)

    encode = encoder.encode
    # A face may say its client gets no usage-only chunk (chat without include_usage): checked
    # here, where the chunk is read anyway, rather than in a call per chunk.
    skip_usage = getattr(encoder, "skip_usage", False)
    usage: dict[str, Any] | None = None
    chars = 0
    pieces: list[str] | None = [] if collect else None
    complete = False
    accounted = False
    batch = opened.first
    try:
        try:
            while True:
                frames = []
                for chunk in batch:
                    choices = chunk.get("choices")
                    if choices:
                        delta = choices[0].get("delta")
                        if delta:
                            content = delta.get("content")
                            if content:
                                chars += len(content)
                                if pieces is not None:
                                    pieces.append(content)
                    u = chunk.get("usage")
                    if u:
                        usage = u
                        if skip_usage and not choices:
                            continue
                    frame = encode(chunk)
                    if frame is not None:
                        frames.append(frame)
                if frames:
                    await send(
                        {"type": "http.response.body", "body": b"".join(frames), "more_body": True}
                    )
                batch = await anext(opened.rest)
        except StopAsyncIteration:
            state["finished"] = True
            account(ex, dep, usage, needs, None, streamed_chars=chars)
            accounted = True
            ledger.record(ex)  # durable before the stream's last frame
            final = encoder.done()
            # A face's own "before the end" (Responses: the stored response, journaled), so
            # what the last frame tells the client exists does.
            finish = getattr(encoder, "finish", None)
            if finish is not None:
                await finish()
            await send({"type": "http.response.body", "body": final})
            dep.record_success(time.perf_counter() - opened.started, opened.ttft)
            complete = True
        except UpstreamError as e:
            state["finished"] = True
            dep.record_failure(e)
            ex.error = "upstream_stream_error"
            log.warning(
                "stream_broken",
                extra={
                    "request_id": ex.request_id,
                    "deployment": dep.name,
                    "error": e.label,
                    "detail": e.message,
                },
            )
            message = "The upstream stream failed before the answer was complete."
            await send(
                {
                    "type": "http.response.body",
                    "more_body": False,
                    "body": encoder.error(message, "upstream_stream_error"),
                }
            )
        except asyncio.CancelledError:
            if runtime.draining and not state["disconnected"] and main is not None:
                # AILB_SHUTDOWN_GRACE ran out and the server cancels what is left: an
                # explicit error ends the stream (never its end marker), not a cut connection.
                main.uncancel()
                ex.error = "gateway_shutting_down"
                message = "The gateway is shutting down; the answer is incomplete."
                await send(
                    {
                        "type": "http.response.body",
                        "more_body": False,
                        "body": encoder.error(message, "gateway_shutting_down"),
                    }
                )
            elif not state["disconnected"] or main is None:
                raise
            else:
                main.uncancel()
                ex.error = "client_disconnected"
    finally:
        state["finished"] = True
        if ex.messages is not None and pieces is not None:  # AILB_LOG_CONTENT: as delivered
            ex.answer = "".join(pieces)
        dep.end()
        if not watcher.done():
            watcher.cancel()
        await opened.rest.aclose()
        if not accounted:
            account(ex, dep, usage, needs, None, streamed_chars=chars)
    return "".join(pieces) if complete and pieces is not None else None
