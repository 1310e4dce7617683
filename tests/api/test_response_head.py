"""The one-pass response head writes exactly what uvicorn's cycle writes, and ends in the same
state, for every kind of head the gateway sends and the ones it never should."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from ailb.api.response_head import OnePassHeadCycle

LIMITS = [
    (b"x-ratelimit-limit-requests", b"1000000000"),
    (b"x-ratelimit-remaining-requests", b"999999987"),
    (b"x-ratelimit-reset-requests", b"1m1s"),
    (b"x-ratelimit-limit-tokens", b"1000000000"),
    (b"x-ratelimit-remaining-tokens", b"999990000"),
    (b"x-ratelimit-reset-tokens", b"1m1s"),
]
JSON = [(b"content-type", b"application/json"), (b"content-length", b"11")]


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class Flow:
    write_paused = False


def make(kind: type[RequestResponseCycle], method: str, keep_alive: bool) -> Any:
    log = logging.getLogger("test")
    return kind(
        scope={"type": "http", "method": method, "headers": []},  # type: ignore[typeddict-item]
        transport=Transport(),  # type: ignore[arg-type]
        flow=Flow(),  # type: ignore[arg-type]
        logger=log,
        access_logger=log,
        access_log=False,
        default_headers=[(b"server", b"uvicorn"), (b"date", b"Tue, 01 Dec 2026 20:00:00 GMT")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


async def answer(
    kind: type[RequestResponseCycle],
    status: int,
    headers: list[tuple[bytes, bytes]],
    method: str,
    keep_alive: bool,
) -> tuple[Any, ...]:
    cycle = make(kind, method, keep_alive)
    try:
        await cycle.send({"type": "http.response.start", "status": status, "headers": headers})
        body = b"" if method == "HEAD" or status in (204, 304) else b'{"ok":true}'
        await cycle.send({"type": "http.response.body", "body": body, "more_body": False})
    except RuntimeError as e:
        return ("refused", str(e), cycle.transport.written)
    return (
        b"".join(cycle.transport.written),
        cycle.keep_alive,
        cycle.chunked_encoding,
        cycle.expected_content_length,
        cycle.response_complete,
        cycle.transport.closed,
    )


CASES = [
    ("a limited JSON answer", 200, [*JSON, (b"x-request-id", b"req_1"), *LIMITS], "POST", True),
    ("a stream (chunked)", 200, [(b"content-type", b"text/event-stream"), *LIMITS], "POST", True),
    ("explicitly chunked", 200, [(b"transfer-encoding", b"chunked")], "POST", True),
    ("connection: close", 429, [*JSON, (b"connection", b"close")], "POST", True),
    ("a close among tokens", 200, [*JSON, (b"connection", b"keep-alive, Close")], "POST", True),
    ("an HTTP/1.0 client", 200, JSON, "POST", False),
    ("HEAD without a length", 200, [(b"content-type", b"text/plain")], "HEAD", True),
    ("204", 204, [(b"x-request-id", b"req_2")], "DELETE", True),
    ("an upper-case name", 200, [*JSON, (b"X-Request-Id", b"req_3")], "POST", True),
    ("a tab inside a value", 200, [*JSON, (b"x-note", b"a\tb")], "POST", True),
    ("no headers at all", 200, [], "GET", True),
    ("an invalid name", 200, [*JSON, (b"bad name", b"x")], "POST", True),
    ("a newline in a value", 200, [*JSON, (b"x-note", b"a\r\nx-evil: 1")], "POST", True),
    ("a NUL in a value", 200, [*JSON, (b"x-note", b"a\x00")], "POST", True),
    ("a colon in a name", 200, [*JSON, (b"x:y", b"1")], "POST", True),
    ("a length given twice", 200, [*JSON, (b"content-length", b"11")], "POST", True),
    ("a name containing content-length", 200, [(b"x-content-length", b"3")], "POST", True),
    ("that name beside a length", 200, [*JSON, (b"x-content-length", b"3")], "POST", True),
    (
        "content-length across two names",
        200,
        [(b"x-conten", b"1"), (b"t-length", b"2")],
        "POST",
        True,
    ),
    ("a name containing connection", 200, [*JSON, (b"x-connection", b"close")], "POST", False),
    ("an empty value", 200, [*JSON, (b"x-empty", b"")], "POST", True),
]


@pytest.mark.parametrize(
    ("status", "headers", "method", "keep_alive"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_same_bytes_and_state_as_uvicorn(
    status: int, headers: list[tuple[bytes, bytes]], method: str, keep_alive: bool
) -> None:
    async def both() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        theirs = await answer(RequestResponseCycle, status, headers, method, keep_alive)
        ours = await answer(OnePassHeadCycle, status, headers, method, keep_alive)
        return theirs, ours

    theirs, ours = asyncio.run(both())
    assert ours == theirs


def test_the_refusals_are_uvicorns() -> None:
    """An invalid header is refused before anything is written, by uvicorn's own check."""
    bad = [*JSON, (b"x-note", b"a\nb")]
    result = asyncio.run(answer(OnePassHeadCycle, 200, bad, "POST", True))
    assert result == ("refused", "Invalid HTTP header value.", [])


def test_every_byte_in_a_name_or_a_value_is_treated_as_uvicorn_treats_it() -> None:
    """Each of the 256 bytes, in a header name and in a value: written the same, or refused the
    same (the one-pass check must refuse exactly what uvicorn's expressions refuse)."""

    async def all_bytes() -> list[tuple[int, str, Any, Any]]:
        differ = []
        for c in range(256):
            for where, header in (
                ("name", (b"x-n" + bytes([c]) + b"te", b"1")),
                ("value", (b"x-note", b"a" + bytes([c]) + b"b")),
            ):
                heads = [*JSON, header]
                theirs = await answer(RequestResponseCycle, 200, heads, "POST", True)
                ours = await answer(OnePassHeadCycle, 200, heads, "POST", True)
                if ours != theirs:
                    differ.append((c, where, ours, theirs))
        return differ

    assert asyncio.run(all_bytes()) == []


@pytest.mark.parametrize(
    "headers",
    [[*JSON, (b"x-request-id", b"req_1"), *LIMITS], [(b"content-type", b"text/event-stream")]],
    ids=["a limited JSON answer", "a stream"],
)
def test_the_usual_heads_do_not_go_the_long_way(
    monkeypatch: pytest.MonkeyPatch, headers: list[tuple[bytes, bytes]]
) -> None:
    """Only the edge cases fall back to uvicorn's loop: the answers the gateway sends all the
    time are written by the one-pass path (else it would be correct, and slow)."""
    starts: list[Any] = []
    theirs = RequestResponseCycle.send

    async def counting(self: Any, message: Any) -> None:
        if message["type"] == "http.response.start":
            starts.append(message)
        await theirs(self, message)

    monkeypatch.setattr(RequestResponseCycle, "send", counting)
    result = asyncio.run(answer(OnePassHeadCycle, 200, headers, "POST", True))
    assert result[0].startswith(b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\n")
    assert starts == []
