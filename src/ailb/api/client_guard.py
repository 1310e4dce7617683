"""Slow and oversized clients, stopped where ASGI cannot see them: in the server's protocol.

uvicorn's httptools protocol has no limit on a request head (httptools buffers a header of any
length) and no deadline for reading a request: a client that opens a connection and sends
nothing, sends its headers a byte at a time (slowloris), or never finishes its body holds the
connection -- and a file descriptor, and buffers -- for as long as it likes. This subclass adds:

- a request head (request line and headers) larger than MAX_HEAD_BYTES gets 431 and the
  connection is closed -- as soon as that much is buffered (give or take one read of the
  socket, up to 256 KiB), and checked exactly once the head is complete;
- a request whose head and body are not fully received within `read_timeout` seconds of its
  first byte gets 408 and the connection is closed; a new connection that sends nothing for
  that long is closed without an answer. Waiting for the application (a long stream, an
  upstream) never counts, nor does a body the application is not reading yet, and idle
  keep-alive connections are uvicorn's own `timeout_keep_alive`;
- a request answered before its body was read (a refused key, a 413): uvicorn keeps reading the
  rest to discard it, so the connection can serve the next request. That rest too must arrive
  within `read_timeout`, or the connection is closed (nginx too discards such a body under a
  read timeout before it keeps the connection); once it has, the connection idles under
  uvicorn's keep-alive timeout again.

Cost on the hot path: a few attribute reads and a dict lookup per `data_received` (about
65 ns), a call and two attribute reads per request's end; the deadlines are checked by one
timer per server, once a second at most, only while connections are open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from ailb.api.response_head import OnePassHeadCycle
from ailb.errors import APIError

log = logging.getLogger("ailb.http")

MAX_HEAD_BYTES = 64 * 1024  # request line plus headers; nginx's default allows 32 KiB
_NEW = "new connection"  # what a connection that has sent nothing yet waits for
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def guarded_protocol(base: type[Any], read_timeout: float) -> type[asyncio.Protocol]:
    """`base` (uvicorn's httptools protocol or a subclass of it) with the limits above. One
    class per application: its timer and its connections belong to that server alone."""
    if not issubclass(base, HttpToolsProtocol):
        raise TypeError(f"{base.__name__} is not uvicorn's httptools protocol")
    tick = max(0.05, min(1.0, read_timeout / 4))

    class GuardedHttpToolsProtocol(base):  # type: ignore[misc]
        _sweeper: ClassVar[asyncio.TimerHandle | None] = None
        _head_scope: Any = None  # the scope whose head is being counted
        _head_bytes = 0
        _waiting_for: Any = None  # what the deadline is running for (identity)
        _since = 0.0
        timeout_keep_alive_task: asyncio.TimerHandle | None  # uvicorn's

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            # uvicorn makes the cycle inline; its head is then written in one pass
            # (response_head.py). Same layout, no state of its own: only `send` differs.
            if type(cycle) is RequestResponseCycle:
                cycle.__class__ = OnePassHeadCycle
            super()._start_asgi_task(cycle, app)

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            cls = type(self)
            if cls._sweeper is None:
                cls._sweeper = self.loop.call_later(tick, cls._sweep, self.loop, self.connections)

        def data_received(self, data: bytes, _feed: Any = base.data_received) -> None:
            _feed(self, data)  # the base class's, bound once (cheaper than super() per read)
            scope = self.scope
            if scope is not None and "method" not in scope:  # a request head, incomplete
                if self._head_scope is scope:
                    self._head_bytes += len(data)
                else:  # began in this read (which may also hold the previous request's end)
                    self._head_scope, self._head_bytes = scope, 0
                if self._head_bytes > MAX_HEAD_BYTES:  # stop buffering it
                    self._head_scope = None
                    self._refuse(431, "request_head_too_large", None)
            elif self._head_scope is not None:  # a head that took several reads, complete now
                if self._head_scope is scope and self._head_size() > MAX_HEAD_BYTES:
                    self._refuse(431, "request_head_too_large", self.cycle)
                self._head_scope = None
            elif (
                len(data) > MAX_HEAD_BYTES
                and scope is not None
                and self._head_size() > MAX_HEAD_BYTES
            ):  # a whole head in one large read (uvloop reads up to 256 KiB)
                self._refuse(431, "request_head_too_large", self.cycle)

        def on_message_complete(self, _complete: Any = base.on_message_complete) -> None:
            _complete(self)
            cycle = self.cycle
            if cycle is not None and cycle.response_complete and cycle.more_body:
                # The end of a body discarded after its answer: uvicorn leaves `more_body` set,
                # and the reads cancelled its keep-alive timer (set again in `_check`: here the
                # next request may already follow in the same read).
                cycle.more_body = False

        def _head_size(self) -> int:
            return len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)

        @classmethod
        def _sweep(cls, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
            now = loop.time()
            ours = [c for c in connections if isinstance(c, cls)]
            for conn in ours:
                conn._check(now)
            cls._sweeper = loop.call_later(tick, cls._sweep, loop, connections) if ours else None

        def _check(self, now: float) -> None:
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            scope, cycle = self.scope, self.cycle
            waiting: Any
            if scope is None:
                waiting = _NEW
            elif "method" not in scope:
                waiting = scope  # the rest of the head
            elif (
                cycle is not None
                and cycle.more_body
                and not cycle.response_started
                and not self.flow.read_paused  # paused: the application is not reading yet
            ):
                waiting = cycle  # the rest of the body
            elif cycle is not None and cycle.response_complete and cycle.more_body:
                waiting = cycle  # the rest of a body answered early, read to be discarded
            else:
                self._waiting_for = None  # the application's turn, or an idle keep-alive
                if (
                    cycle is not None
                    and cycle.response_complete
                    and self.timeout_keep_alive_task is None
                    and not self.pipeline
                ):  # idle after a discarded body, with no keep-alive timer (see above)
                    self.timeout_keep_alive_task = self.loop.call_later(
                        self.timeout_keep_alive, self.timeout_keep_alive_handler
                    )
                return
            if waiting is not self._waiting_for:
                self._waiting_for, self._since = waiting, now
            elif now - self._since >= read_timeout:
                if waiting is _NEW:
                    log.info("client_timeout", extra={"waiting_for": "request"})
                    transport.close()
                elif waiting is scope:
                    self._refuse(408, "client_timeout_head", None)
                elif cycle.response_complete:  # answered: nothing more to say
                    log.info("client_timeout", extra={"waiting_for": "discarded body"})
                    transport.close()
                else:
                    self._refuse(408, "client_timeout_body", cycle)

        def _refuse(self, status: int, event: str, request: Any) -> None:
            """Answer `status` and close the connection. `request`: the refused request's
            cycle when its head was complete (its application then sees a disconnect and sends
            nothing); None for a head still incomplete."""
            transport = self.transport
            if transport.is_closing():
                return
            log.info(event, extra={"status": status})
            if request is None:  # unless the previous answer is still being written
                answer = self.cycle is None or self.cycle.response_complete
            else:
                answer = not request.response_started
                request.response_started = True
                request.disconnected = True
                request.message_event.set()
            if answer:
                reason = _REASONS[status]
                body = APIError(
                    f"{reason.decode()}.", status=status, type="invalid_request_error", code=event
                ).body()
                transport.write(
                    b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                    % (status, reason, len(body), body)
                )
            transport.close()

    return GuardedHttpToolsProtocol
