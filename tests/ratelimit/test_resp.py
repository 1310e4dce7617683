"""The lean Redis client: its reply parser (table-driven) and its behaviour against a real Redis
and against servers that refuse or never answer."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest

from ailb.ratelimit.resp import RespClient, RespError, Script, _parse, encode


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b":42\r\n", 42),
        (b":-3\r\n", -3),
        (b"+OK\r\n", "OK"),
        (b"$5\r\nhello\r\n", "hello"),
        (b"$0\r\n\r\n", ""),
        (b"$-1\r\n", None),
        (b"*0\r\n", []),
        (b"*3\r\n$4\r\nrate\r\n:1\r\n$3\r\n0.5\r\n", ["rate", 1, "0.5"]),
        (b"*2\r\n*1\r\n:1\r\n$-1\r\n", [[1], None]),
        ("$4\r\nn\u00e9!\r\n".encode(), "n\u00e9!"),
    ],
)
def test_parse_complete_replies(wire, value):
    assert _parse(bytearray(wire), 0) == (value, len(wire))
    for cut in range(1, len(wire)):  # any prefix is "not yet"
        assert _parse(bytearray(wire[:cut]), 0) is None


def test_parse_error_reply():
    value, _ = _parse(bytearray(b"-NOSCRIPT No matching script\r\n"), 0)
    assert isinstance(value, RespError) and str(value).startswith("NOSCRIPT")


def test_encode():
    assert encode(("SET", "k", 1.5, b"\x00")) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n1.5\r\n$1\r\n\x00\r\n"
    )


def test_against_redis_pipelined_scripts_and_reload(redis_url):
    async def main():
        client = RespClient(redis_url, timeout=2)
        try:
            assert await client.call("PING") == "PONG"
            # a script Redis has never seen: EVALSHA says NOSCRIPT, the client sends it in full
            script = Script(f"-- {uuid.uuid4()}\nreturn {{KEYS[1], ARGV[1] + 1}}")
            assert await client.evalsha(script, ["a"], [41]) == ["a", 42]
            assert await client.evalsha(script, ["b"], [1]) == ["b", 2]
            # many callers at once on the one connection: each gets its own reply
            replies = await asyncio.gather(*(client.call("ECHO", str(i)) for i in range(200)))
            assert replies == [str(i) for i in range(200)]
            with pytest.raises(RespError):
                await client.call("NOSUCHCOMMAND")
            assert await client.call("PING") == "PONG"  # still usable after an error reply
        finally:
            await client.close()

    asyncio.run(main())


def test_commands_sent_in_one_loop_turn_share_one_write(redis_url):
    async def main():
        client = RespClient(redis_url, timeout=2)
        try:
            assert await client.call("PING") == "PONG"
            proto = client._proto
            writes = []
            real = proto.transport.write
            proto.transport.write = lambda data: (writes.append(data), real(data))[1]
            replies = await asyncio.gather(*(client.call("ECHO", str(i)) for i in range(50)))
            assert replies == [str(i) for i in range(50)]
            assert len(writes) == 1
            assert await client.call("PING") == "PONG"
            assert len(writes) == 2
        finally:
            await client.close()

    asyncio.run(main())


def test_a_server_that_stops_answering_fails_every_waiting_command():
    """Redis answers in order: once a reply is overdue, nothing behind it comes either."""

    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = RespClient(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout=0.25)
        first = asyncio.ensure_future(client.call("PING"))
        await asyncio.sleep(0.15)
        second = asyncio.ensure_future(client.call("PING"))  # sent later, fails with the first
        started = time.monotonic()
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert [type(r) for r in results] == [TimeoutError, TimeoutError]
        assert time.monotonic() - started < 0.5
        with pytest.raises(OSError):  # the connection is gone: a new one is tried (and refused)
            listener.close()
            await client.call("PING")
        await client.close()

    asyncio.run(main())


def test_refused_and_silent_servers_fail_fast():
    async def main():
        refused = RespClient("redis://127.0.0.1:1/0", timeout=0.25)
        started = time.monotonic()
        with pytest.raises(OSError):
            await refused.call("PING")
        assert time.monotonic() - started < 1
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts connections, never answers
        silent = RespClient(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout=0.25)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await silent.call("PING")
        assert time.monotonic() - started < 1
        await silent.close()
        listener.close()

    asyncio.run(main())
