"""A small Redis client for the admission scripts: one pipelined connection, RESP2.

redis-py costs about 290 µs of CPU per EVALSHA here (command packing, pool bookkeeping, reply
parsing in layers), more than a whole proxied request. Admission needs only EVALSHA and a few
set-up commands, so this client does just that: commands written as they come on one connection
(Redis runs them one at a time anyway), replies matched to callers in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

Arg = str | int | float | bytes


class RespError(Exception):
    """An error reply from the server (a script error, NOSCRIPT, WRONGPASS ...)."""


class _Protocol(asyncio.Protocol):
    """One connection. Commands sent in one turn of the event loop go out in one write (the
    concurrent requests' checks and settles share a system call). A reply overdue by `timeout`
    fails every waiting command and drops the connection: Redis answers in order, so nothing
    behind an unanswered command would come back either -- one watchdog timer per connection
    instead of one per command."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.waiters: deque[tuple[asyncio.Future[Any], float]] = deque()  # (reply, sent at)
        self.outgoing: list[bytes] = []
        self.lost: Exception | None = None
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = exc or ConnectionError("connection closed by the server")
        self._fail(ConnectionError(str(self.lost)))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.waiters:
            parsed = _parse(self.buf, 0)
            if parsed is None:
                return
            value, end = parsed
            del self.buf[:end]
            fut = self.waiters.popleft()[0]
            if fut.done():  # its caller gave up: the reply is dropped, the order kept
                continue
            if isinstance(value, RespError):
                fut.set_exception(value)
            else:
                fut.set_result(value)

    def send(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        if self.transport is None or self.lost is not None:
            raise ConnectionError("not connected")
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(encode(args))
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.waiters.append((fut, self.loop.time()))
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout, self._check)
        return fut

    def _flush(self) -> None:
        data = b"".join(self.outgoing)
        self.outgoing.clear()
        if self.transport is not None and self.lost is None:
            self.transport.write(data)

    def _check(self) -> None:
        self.watchdog = None
        if not self.waiters or self.lost is not None:
            return
        overdue = self.waiters[0][1] + self.timeout
        if self.loop.time() < overdue:
            self.watchdog = self.loop.call_at(overdue, self._check)
            return
        self.lost = TimeoutError(f"no reply from Redis within {self.timeout} s")
        self._fail(self.lost)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        self.outgoing.clear()
        while self.waiters:
            fut = self.waiters.popleft()[0]
            if not fut.done():
                fut.set_exception(type(exc)(str(exc)))


def encode(args: tuple[Arg, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        t = type(a)  # exact types first: an admission sends about twenty arguments
        if t is str:
            b = cast(str, a).encode()
        elif t is int:
            b = b"%d" % cast(int, a)
        elif t is bytes:
            b = cast(bytes, a)
        else:
            b = str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def _parse(buf: bytearray, pos: int) -> tuple[Any, int] | None:
    """One reply starting at pos: (value, end), or None while it is incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    nxt = end + 2
    if kind == 0x3A:  # :integer
        return int(line), nxt
    if kind == 0x24:  # $bulk string
        n = int(line)
        if n < 0:
            return None, nxt
        if len(buf) < nxt + n + 2:
            return None
        return bytes(buf[nxt : nxt + n]).decode(), nxt + n + 2
    if kind == 0x2A:  # *array
        n = int(line)
        if n < 0:
            return None, nxt
        items = []
        for _ in range(n):
            parsed = _parse(buf, nxt)
            if parsed is None:
                return None
            item, nxt = parsed
            items.append(item)
        return items, nxt
    if kind == 0x2B:  # +simple string
        return line.decode(), nxt
    if kind == 0x2D:  # -error
        return RespError(line.decode(errors="replace")), nxt
    raise ConnectionError(f"unexpected reply from Redis: {bytes(buf[pos : pos + 20])!r}")


class RespClient:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        self.path = parts.path  # the socket of unix://
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        self.db = int(db) if db.isdigit() else 0
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def call(self, *args: Arg) -> Any:
        """One command's reply; ConnectionError or TimeoutError when Redis does not answer in
        time, RespError for an error reply."""
        proto = self._proto
        if proto is None or proto.lost is not None:
            proto = await self._connect()
        return await proto.send(args)  # the connection's watchdog bounds the wait

    async def evalsha(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except RespError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
            return await self.call("EVAL", script.text, len(keys), *keys, *args)

    async def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and self._proto.lost is None:
                return self._proto  # another caller connected meanwhile
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.timeout):
                if self.scheme == "unix":
                    _, proto = await loop.create_unix_connection(
                        lambda: _Protocol(self.timeout), self.path
                    )
                else:
                    tls = ssl.create_default_context() if self.scheme == "rediss" else None
                    _, proto = await loop.create_connection(
                        lambda: _Protocol(self.timeout), self.host, self.port, ssl=tls
                    )
                try:
                    if self.password is not None:
                        auth = (self.username, self.password) if self.username else (self.password,)
                        await proto.send(("AUTH", *auth))
                    if self.db:
                        await proto.send(("SELECT", self.db))
                except BaseException:
                    if proto.transport is not None:
                        proto.transport.close()
                    raise
            self._proto = proto
            return proto


class Script:
    """A Lua script known by its SHA1, sent in full only when the server does not have it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Redis's script id
