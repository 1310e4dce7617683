"""AILB's HTTP/1.1 upstream client (ailb.upstream.http) against raw asyncio servers on
127.0.0.1, so every test controls the exact bytes on the wire: framing, keep-alive, stale
sockets, timeouts and the pool limit."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import socket
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

import pytest

from ailb.providers.base import UpstreamError
from ailb.upstream.http import Pool, Response


@dataclass
class Request:
    conn: int  # which server-side connection carried it (1-based, in accept order)
    line: bytes
    headers: dict[str, str]
    body: bytes
    raw: bytes


Handler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@dataclass
class RawServer:
    """asyncio.start_server on 127.0.0.1:0; `handler(server, reader, writer, conn_id)` owns
    each connection and decides byte by byte what the client sees."""

    handler: Handler
    host: str = "127.0.0.1"
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        # Handlers that stall on purpose (hang, mid-body stall) are ended here.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.handler(self, reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader, conn: int) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head[:-4].split(b"\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(": ")
            headers[k.lower()] = v
        n = int(headers.get("content-length", "0"))
        body = await reader.readexactly(n) if n else b""
        req = Request(conn, lines[0], headers, body, head + body)
        self.requests.append(req)
        return req


def response(body: bytes = b"hello", status: str = "200 OK", *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def keepalive(reply: Callable[[Request], bytes] = lambda r: response()) -> Handler:
    """Answers every request on the connection with `reply(request)`."""

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        while (req := await srv.read_request(reader, conn)) is not None:
            writer.write(reply(req))
            await writer.drain()

    return handle


def scripted(*writes: bytes, pause: float = 0.01, close: bool = True) -> Handler:
    """Reads one request, then sends `writes` one at a time with a pause between them, so the
    client sees them in separate reads; then closes (or stalls forever)."""

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        await srv.read_request(reader, conn)
        for i, data in enumerate(writes):
            if i:
                await asyncio.sleep(pause)
            writer.write(data)
            await writer.drain()
        if not close:
            await asyncio.Event().wait()

    return handle


async def fetch(pool: Pool, path: str = "/x", body: bytes = b"", **timeouts: float) -> bytes:
    resp = await send(pool, path, body, **timeouts)
    try:
        return await resp.read()
    finally:
        resp.release()


async def send(pool: Pool, path: str = "/x", body: bytes = b"", **timeouts: float) -> Response:
    t = {"first_byte": 0.5, "idle": 0.5, "total": 2.0, **timeouts}
    head = pool.head("POST" if body else "GET", path, {})
    return await pool.request(head, body, **t)


async def collect(resp: Response) -> list[bytes]:
    return [chunk async for chunk in resp.iter_chunks()]


async def raises(aw: Awaitable[object]) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        await aw
    return info.value


# --- request bytes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("http://example.com", b"example.com"),
        ("http://example.com:80/v1", b"example.com"),
        ("http://example.com:8080/v1/", b"example.com:8080"),
        ("https://api.example.com/v1", b"api.example.com"),
        ("https://api.example.com:443", b"api.example.com"),
        ("https://api.example.com:8443", b"api.example.com:8443"),
        ("http://[::1]:8080/v1", b"[::1]:8080"),
        ("http://[2001:db8::7]/v1", b"[2001:db8::7]"),
    ],
)
def test_head_carries_host_and_base_path(base_url: str, host: bytes) -> None:
    pool = Pool(base_url, name="d")
    path = base_url.split("/", 3)[3].rstrip("/") if base_url.count("/") > 2 else ""
    prefix = f"/{path}" if path else ""
    assert pool.head("GET", "/models", {"X-A": "1", "Authorization": "Bearer t"}) == (
        f"GET {prefix}/models HTTP/1.1\r\n".encode()
        + b"Host: "
        + host
        + b"\r\nX-A: 1\r\nAuthorization: Bearer t\r\n"
    )


def test_request_bytes_on_the_wire_with_and_without_body() -> None:
    async def main() -> None:
        async with RawServer(keepalive()) as srv:
            pool = Pool(srv.url + "/v1/", name="d")
            head = pool.head("POST", "/chat", {"X-A": "1"})
            resp = await pool.request(head, b'{"a":1}', first_byte=0.5, idle=0.5, total=2)
            assert await resp.read() == b"hello"
            resp.release()
            resp = await pool.request(
                pool.head("GET", "/models", {}), b"", first_byte=0.5, idle=0.5, total=2
            )
            assert await resp.read() == b"hello"
            resp.release()
            await pool.close()
        host = f"Host: 127.0.0.1:{srv.port}".encode()
        assert [r.raw for r in srv.requests] == [
            b"POST /v1/chat HTTP/1.1\r\n"
            + host
            + b'\r\nX-A: 1\r\nContent-Length: 7\r\n\r\n{"a":1}',
            b"GET /v1/models HTTP/1.1\r\n" + host + b"\r\n\r\n",
        ]

    asyncio.run(main())


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_an_ipv6_upstream_gets_a_bracketed_host() -> None:
    async def main() -> None:
        async with RawServer(keepalive(), host="::1") as srv:
            pool = Pool(srv.url + "/v1", name="d")
            resp = await pool.request(
                pool.head("GET", "/models", {}), b"", first_byte=0.5, idle=0.5, total=2
            )
            assert await resp.read() == b"hello"
            resp.release()
            await pool.close()
        assert srv.requests[0].raw == (
            f"GET /v1/models HTTP/1.1\r\nHost: [::1]:{srv.port}\r\n\r\n".encode()
        )

    asyncio.run(main())


# --- response framing -----------------------------------------------------------------------


def test_content_length_body_status_and_headers() -> None:
    async def main() -> None:
        reply = response(b'{"ok":true}', "201 Created", "X-Thing: a", "x-thing: b", "Foo: Bar")
        async with RawServer(keepalive(lambda r: reply)) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            assert resp.status == 201
            assert resp.headers == {"content-length": "11", "x-thing": "a, b", "foo": "Bar"}
            assert await resp.read() == b'{"ok":true}'
            resp.release()
            await pool.close()

    asyncio.run(main())


def test_response_written_one_byte_at_a_time() -> None:
    raw = response(b"0123456789", "200 OK", "Content-Type: application/json")

    async def main() -> None:
        async with RawServer(scripted(*(raw[i : i + 1] for i in range(len(raw))), pause=0)) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            assert (resp.status, resp.headers["content-type"]) == (200, "application/json")
            assert b"".join(await collect(resp)) == b"0123456789"
            resp.release()
            await pool.close()

    asyncio.run(main())


def test_chunked_body_split_across_writes_streams_and_keeps_connection() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    # Chunk boundaries deliberately fall inside chunk sizes, data and CRLFs.
    writes = [head + b"5\r\nhel", b"lo\r\n6\r", b"\n world\r\n", b"1", b"\r\n!\r\n0\r\n\r\n"]

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        await scripted(*writes, close=False)(srv, reader, writer, conn) if conn < 0 else None
        while await srv.read_request(reader, conn) is not None:
            for i, data in enumerate(writes):
                if i:
                    await asyncio.sleep(0.01)
                writer.write(data)
                await writer.drain()

    async def main() -> None:
        async with RawServer(handle) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            assert resp.status == 200
            chunks = await collect(resp)
            assert b"".join(chunks) == b"hello world!"
            assert len(chunks) > 1  # delivered as it arrived, not buffered to the end
            resp.release()
            assert await fetch(pool) == b"hello world!"
            await pool.close()
        assert srv.connections == 1
        assert [r.conn for r in srv.requests] == [1, 1]

    asyncio.run(main())


def test_body_delimited_by_connection_close() -> None:
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n"

    async def main() -> None:
        async with RawServer(scripted(head + b"first ", b"second ", b"third")) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            assert resp.status == 200
            assert await resp.read() == b"first second third"
            resp.release()
            assert await fetch(pool) == b"first second third"
            await pool.close()
        # The connection ended with the body, so the second request needed a new one.
        assert srv.connections == 2
        assert [r.conn for r in srv.requests] == [1, 2]

    asyncio.run(main())


def test_body_delimited_by_close_streams_with_iter_chunks() -> None:
    head = b"HTTP/1.1 200 OK\r\n\r\n"

    async def main() -> None:
        async with RawServer(scripted(head + b"a", b"b", b"c")) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            assert await collect(resp) == [b"a", b"b", b"c"]
            resp.release()
            await pool.close()

    asyncio.run(main())


def test_gzip_content_length_body() -> None:
    text = b'{"choices":[{"text":"' + b"compressible " * 200 + b'"}]}'
    packed = gzip.compress(text)

    async def main() -> None:
        reply = response(packed, "200 OK", "Content-Encoding: gzip")
        async with RawServer(keepalive(lambda r: reply)) as srv:
            pool = Pool(srv.url, name="d")
            assert await fetch(pool) == text
            assert await fetch(pool) == text  # decoder state is per response
            await pool.close()
        assert srv.connections == 1

    asyncio.run(main())


def test_gzip_chunked_body_split_across_writes() -> None:
    text = b"data: " + bytes(range(256)) * 8 + b"\n\n"
    packed = gzip.compress(text)
    cut = [0, 5, 11, 300, len(packed)]  # the 10-byte gzip header is split too
    pieces = [packed[a:b] for a, b in itertools.pairwise(cut)]
    writes = [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"]
    writes += [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]

    async def main() -> None:
        async with RawServer(scripted(*writes, close=False)) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            assert b"".join(await collect(resp)) == text
            resp.release()
            await pool.close()

    asyncio.run(main())


def test_deflate_zlib_body() -> None:
    text = b"deflated " * 100

    async def main() -> None:
        reply = response(zlib.compress(text), "200 OK", "Content-Encoding: deflate")
        async with RawServer(keepalive(lambda r: reply)) as srv:
            pool = Pool(srv.url, name="d")
            assert await fetch(pool) == text
            await pool.close()

    asyncio.run(main())


def test_corrupt_gzip_body_is_a_protocol_error() -> None:
    async def main() -> None:
        reply = response(b"this is not gzip data", "200 OK", "Content-Encoding: gzip")
        async with RawServer(keepalive(lambda r: reply)) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            err = await raises(resp.read())
            resp.release()
            assert (err.kind, err.message) == ("protocol", "corrupt compressed body")
            await pool.close()

    asyncio.run(main())


def test_unsupported_content_encoding_is_a_protocol_error() -> None:
    async def main() -> None:
        reply = response(b"xx", "200 OK", "Content-Encoding: br")
        async with RawServer(keepalive(lambda r: reply)) as srv:
            pool = Pool(srv.url, name="d")
            err = await raises(send(pool))
            assert (err.kind, err.message) == ("protocol", "unsupported content-encoding 'br'")
            await pool.close()

    asyncio.run(main())


def test_malformed_status_line_is_a_protocol_error() -> None:
    async def main() -> None:
        async with RawServer(scripted(b"HTPP/1.1 200 OK\r\n\r\n")) as srv:
            pool = Pool(srv.url, name="d")
            err = await raises(send(pool))
            assert err.kind == "protocol"
            assert err.message.startswith("malformed HTTP response: ")
            await pool.close()

    asyncio.run(main())


def test_interim_100_continue_is_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n" + response(b"real", "200 OK", "X-B: 2")

    async def main() -> None:
        async with RawServer(keepalive(lambda r: raw)) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            assert (resp.status, resp.headers) == (200, {"content-length": "4", "x-b": "2"})
            assert await resp.read() == b"real"
            resp.release()
            assert await fetch(pool) == b"real"
            await pool.close()
        assert srv.connections == 1

    asyncio.run(main())


def test_connection_closed_mid_body_is_a_protocol_error_after_partial_data() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"

    async def main() -> None:
        async with RawServer(scripted(head + b"abc", b"de")) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            got: list[bytes] = []
            with pytest.raises(UpstreamError) as info:
                async for chunk in resp.iter_chunks():
                    got.append(chunk)
            resp.release()
            assert b"".join(got) == b"abcde"
            assert (info.value.kind, info.value.message) == (
                "protocol",
                "connection closed mid-response",
            )
            await pool.close()

    asyncio.run(main())


def test_connection_closed_mid_chunked_body_is_a_protocol_error() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def main() -> None:
        async with RawServer(scripted(head + b"3\r\nabc\r\n")) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            err = await raises(resp.read())
            resp.release()
            assert (err.kind, err.message) == ("protocol", "connection closed mid-response")
            await pool.close()

    asyncio.run(main())


def test_large_body_streamed_through_flow_control() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, four times the client's high-water mark

    async def main() -> None:
        async with RawServer(keepalive(lambda r: response(body))) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            assert b"".join(await collect(resp)) == body
            resp.release()
            await pool.close()

    asyncio.run(main())


def test_large_body_read_whole() -> None:
    body = bytes(range(256)) * 2048  # 512 KiB, e.g. a batch of embeddings

    async def main() -> None:
        async with RawServer(keepalive(lambda r: response(body))) as srv:
            pool = Pool(srv.url, name="d")
            try:
                assert await fetch(pool, idle=0.3) == body
            finally:
                await pool.close()

    asyncio.run(main())


# --- keep-alive and stale connections ---------------------------------------------------------


def test_keep_alive_reuses_one_server_connection() -> None:
    async def main() -> None:
        async with RawServer(keepalive(lambda r: response(r.line))) as srv:
            pool = Pool(srv.url, name="d")
            assert await fetch(pool, "/a") == b"GET /a HTTP/1.1"
            assert await fetch(pool, "/b", b"x") == b"POST /b HTTP/1.1"
            assert await fetch(pool, "/c") == b"GET /c HTTP/1.1"
            await pool.close()
        assert srv.connections == 1
        assert [(r.conn, r.line) for r in srv.requests] == [
            (1, b"GET /a HTTP/1.1"),
            (1, b"POST /b HTTP/1.1"),
            (1, b"GET /c HTTP/1.1"),
        ]

    asyncio.run(main())


def test_http_1_0_response_is_not_reused() -> None:
    async def main() -> None:
        reply = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
        async with RawServer(keepalive(lambda r: reply)) as srv:
            pool = Pool(srv.url, name="d")
            assert await fetch(pool) == b"ok"
            assert await fetch(pool) == b"ok"
            await pool.close()
        assert [r.conn for r in srv.requests] == [1, 2]

    asyncio.run(main())


def test_response_released_unread_is_not_reused() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        while await srv.read_request(reader, conn) is not None:
            writer.write(head + b"partial" if conn == 1 else response())
            await writer.drain()

    async def main() -> None:
        async with RawServer(handle) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool)
            resp.release()  # 93 bytes of body never read: the connection cannot carry more
            assert await fetch(pool) == b"hello"
            await pool.close()
        assert [r.conn for r in srv.requests] == [1, 2]

    asyncio.run(main())


def test_keepalive_expiry_opens_a_new_connection() -> None:
    async def main() -> None:
        async with RawServer(keepalive()) as srv:
            pool = Pool(srv.url, name="d", keepalive=0.05)
            assert await fetch(pool) == b"hello"
            await asyncio.sleep(0.08)
            assert await fetch(pool) == b"hello"
            await pool.close()
        assert [r.conn for r in srv.requests] == [1, 2]

    asyncio.run(main())


def test_idle_connection_closed_by_server_is_not_used() -> None:
    """The upstream closes a kept-alive connection and the client notices before reuse."""

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        await srv.read_request(reader, conn)
        writer.write(response())
        await writer.drain()

    async def main() -> None:
        async with RawServer(handle) as srv:
            pool = Pool(srv.url, name="d")
            assert await fetch(pool) == b"hello"
            await asyncio.sleep(0.05)  # the FIN arrives while the connection is idle
            assert await fetch(pool) == b"hello"
            await pool.close()
        assert [r.conn for r in srv.requests] == [1, 2]

    asyncio.run(main())


def stale_after_first(fresh: Callable[[int], bool]) -> Handler:
    """Connection 1 answers one request, then drops the next one unanswered (a kept-alive
    socket the upstream timed out just as the client reused it). Later connections answer
    when `fresh(conn)` and otherwise drop the request too."""

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        served = 0
        while (req := await srv.read_request(reader, conn)) is not None:
            if (conn == 1 and served == 1) or (conn > 1 and not fresh(conn)):
                return
            writer.write(response(b"%d:%s" % (conn, req.body)))
            await writer.drain()
            served += 1

    return handle


def test_stale_kept_alive_connection_is_retried_once_transparently() -> None:
    async def main() -> None:
        async with RawServer(stale_after_first(lambda conn: True)) as srv:
            pool = Pool(srv.url, name="d")
            assert await fetch(pool, body=b"one") == b"1:one"
            assert await fetch(pool, body=b"two") == b"2:two"
            assert await fetch(pool, body=b"three") == b"2:three"
            await pool.close()
        assert srv.connections == 2
        assert [(r.conn, r.body) for r in srv.requests] == [
            (1, b"one"),
            (1, b"two"),  # the stale socket swallowed it
            (2, b"two"),  # the same bytes again on a fresh connection
            (2, b"three"),
        ]

    asyncio.run(main())


def test_stale_retry_happens_only_once() -> None:
    async def main() -> None:
        async with RawServer(stale_after_first(lambda conn: False)) as srv:
            pool = Pool(srv.url, name="d")
            assert await fetch(pool, body=b"one") == b"1:one"
            err = await raises(fetch(pool, body=b"two"))
            assert (err.kind, err.message) == ("connect", "connection closed by upstream")
            await pool.close()
        assert [(r.conn, r.body) for r in srv.requests] == [(1, b"one"), (1, b"two"), (2, b"two")]

    asyncio.run(main())


def test_fresh_connection_closed_without_answer_is_not_retried() -> None:
    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        await srv.read_request(reader, conn)

    async def main() -> None:
        async with RawServer(handle) as srv:
            pool = Pool(srv.url, name="d")
            err = await raises(fetch(pool, body=b"x"))
            assert (err.kind, err.message) == ("connect", "connection closed by upstream")
            await pool.close()
        assert srv.connections == 1

    asyncio.run(main())


def test_reused_connection_closed_after_partial_answer_is_not_retried() -> None:
    """Bytes came back, so the upstream may have acted on the request: no replay."""

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        await srv.read_request(reader, conn)
        writer.write(response())
        await srv.read_request(reader, conn)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
        await writer.drain()

    async def main() -> None:
        async with RawServer(handle) as srv:
            pool = Pool(srv.url, name="d")
            assert await fetch(pool) == b"hello"
            err = await raises(fetch(pool))
            assert (err.kind, err.message) == ("protocol", "connection closed mid-response")
            await pool.close()
        assert srv.connections == 1
        assert len(srv.requests) == 2

    asyncio.run(main())


# --- connect failures and timeouts ------------------------------------------------------------


def test_connect_refused() -> None:
    async def main() -> None:
        # Bound but not listening: the port stays ours and every connect is refused.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            pool = Pool(f"http://127.0.0.1:{sock.getsockname()[1]}", name="d")
            err = await raises(send(pool))
            await pool.close()
        assert (err.kind, err.message) == ("connect", "cannot connect: Connection refused")
        assert err.status is None
        assert err.label == "connect"

    asyncio.run(main())


def test_first_byte_timeout_when_server_never_answers() -> None:
    async def main() -> None:
        async with RawServer(scripted(close=False)) as srv:
            pool = Pool(srv.url, name="d")
            t0 = time.monotonic()
            err = await raises(send(pool, first_byte=0.2))
            elapsed = time.monotonic() - t0
            await pool.close()
        assert (err.kind, err.message) == ("timeout", "no response within 0.2s")
        assert 0.2 <= elapsed < 1.0
        assert len(srv.requests) == 1  # timed out, not retried

    asyncio.run(main())


def test_first_byte_timeout_after_headers_started() -> None:
    """Part of the status line is not the headers: the first-byte bound still applies."""

    async def main() -> None:
        async with RawServer(scripted(b"HTTP/1.1 200 OK\r\n", close=False)) as srv:
            pool = Pool(srv.url, name="d")
            err = await raises(send(pool, first_byte=0.2))
            await pool.close()
        assert (err.kind, err.message) == ("timeout", "no response within 0.2s")

    asyncio.run(main())


def test_idle_timeout_when_server_stalls_mid_body() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"

    async def main() -> None:
        async with RawServer(scripted(head + b"abc", close=False)) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool, idle=0.2)
            t0 = time.monotonic()
            err = await raises(resp.read())
            elapsed = time.monotonic() - t0
            resp.release()
            await pool.close()
        assert (err.kind, err.message) == ("timeout", "no body data within 0.2s")
        assert 0.2 <= elapsed < 1.0

    asyncio.run(main())


def test_idle_timeout_while_streaming_keeps_data_already_received() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def main() -> None:
        async with RawServer(scripted(head + b"3\r\nabc\r\n", close=False)) as srv:
            pool = Pool(srv.url, name="d")
            resp = await send(pool, idle=0.2)
            got: list[bytes] = []
            with pytest.raises(UpstreamError) as info:
                async for chunk in resp.iter_chunks():
                    got.append(chunk)
            resp.release()
            await pool.close()
        assert got == [b"abc"]
        assert (info.value.kind, info.value.message) == ("timeout", "no stream data within 0.2s")

    asyncio.run(main())


def test_total_timeout_bounds_a_trickling_body() -> None:
    """Each byte arrives well inside the idle bound; the total bound still ends the read."""

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        await srv.read_request(reader, conn)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.02)

    async def main() -> None:
        async with RawServer(handle) as srv:
            pool = Pool(srv.url, name="d")
            t0 = time.monotonic()
            resp = await send(pool, idle=0.3, total=0.4)
            err = await raises(collect(resp))
            elapsed = time.monotonic() - t0
            resp.release()
            await pool.close()
        assert err.kind == "timeout"
        assert 0.4 <= elapsed < 0.8

    asyncio.run(main())


def test_total_timeout_bounds_the_wait_for_headers() -> None:
    async def main() -> None:
        async with RawServer(scripted(close=False)) as srv:
            pool = Pool(srv.url, name="d")
            t0 = time.monotonic()
            err = await raises(send(pool, first_byte=5.0, total=0.2))
            elapsed = time.monotonic() - t0
            await pool.close()
        assert err.kind == "timeout"
        assert err.message.startswith("no response within 0.")
        assert 0.19 <= elapsed < 0.6

    asyncio.run(main())


# --- pool limit -------------------------------------------------------------------------------


def test_max_connections_respected_under_concurrency() -> None:
    active = 0
    peak = 0

    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        nonlocal active, peak
        while (req := await srv.read_request(reader, conn)) is not None:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
            writer.write(response(req.body))
            await writer.drain()

    async def main() -> None:
        async with RawServer(handle) as srv:
            pool = Pool(srv.url, name="d", max_connections=2)
            bodies = [b"r%d" % i for i in range(8)]
            got = await asyncio.gather(*(fetch(pool, body=b) for b in bodies))
            assert got == bodies
            await pool.close()
        assert srv.connections == 2
        assert peak == 2
        assert len(srv.requests) == 8

    asyncio.run(main())


def test_waiting_for_a_free_connection_times_out() -> None:
    async def main() -> None:
        async with RawServer(keepalive()) as srv:
            pool = Pool(srv.url, name="d", max_connections=1, connect_timeout=0.2)
            held = await send(pool)
            t0 = time.monotonic()
            err = await raises(send(pool))
            elapsed = time.monotonic() - t0
            assert (err.kind, err.message) == ("timeout", "no free upstream connection in time")
            assert 0.2 <= elapsed < 1.0
            assert await held.read() == b"hello"
            held.release()
            assert await fetch(pool) == b"hello"  # the slot is free again
            await pool.close()
        assert srv.connections == 1

    asyncio.run(main())


def test_waiter_gets_a_new_connection_when_the_busy_one_is_discarded() -> None:
    async def handle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> None:
        while (req := await srv.read_request(reader, conn)) is not None:
            if conn == 1:  # headers and a body that never finishes
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nxx")
            else:
                writer.write(response(req.body))
            await writer.drain()

    async def main() -> None:
        async with RawServer(handle) as srv:
            pool = Pool(srv.url, name="d", max_connections=1)
            held = await send(pool)
            waiter = asyncio.create_task(fetch(pool, body=b"queued"))
            await asyncio.sleep(0.02)
            assert not waiter.done()  # the only slot is taken
            held.release()
            assert await waiter == b"queued"
            await pool.close()
        assert [r.conn for r in srv.requests] == [1, 2]

    asyncio.run(main())
