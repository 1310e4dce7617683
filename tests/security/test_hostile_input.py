"""Hostile and malformed requests against a real `ailb serve` process: oversized bodies (with
and without a Content-Length), deep JSON, huge message counts, invalid UTF-8, oversized
headers, slow clients (slowloris heads, bodies that never finish, connections that send
nothing). Each ends in a clean 4xx or a closed connection, within bounded time and memory
(the process's peak resident size, VmHWM, is measured around each attack).

The limits are set low so the tests are quick: a 1 MiB body limit, a 1 s client timeout.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.fakes.ollama import fake_ollama
from tests.fakes.server import FakeServer
from tests.processes import GatewayProcess
from tests.security.rawhttp import (
    connect,
    memory_mb,
    open_fds,
    peak_rss_reset,
    read_answer,
    request_head,
    send_request,
)

MASTER = "master-key-hostile-input-0123"
AUTH = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}
LIMIT = 1024 * 1024
TIMEOUT = 1.0
CONFIG = """
deployments:
  - name: fast
    provider: mock
    models: [mock]
  - name: slow
    provider: mock
    models: [slow]
    mock: {latency_ms: 2000, chunks: 4}
"""
CHAT = "/v1/chat/completions"
# Body-reading endpoints of each kind: the chat hot path (raw ASGI) and the JSON API
# (Starlette), with authentication on.
BODY_ENDPOINTS = [
    CHAT,
    "/api/keys",
    "/api/rag/collections",
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "ailb.yaml").write_text(CONFIG)
    proc = GatewayProcess(
        {
            "AILB_CONFIG": str(tmp / "ailb.yaml"),
            "AILB_DATA_DIR": str(tmp / "data"),
            "AILB_MASTER_KEY": MASTER,
            "AILB_MAX_BODY_BYTES": str(LIMIT),
            "AILB_CLIENT_TIMEOUT": str(TIMEOUT),
            "ENABLE_RAG": "true",
            "ENABLE_MEMORY": "false",
            "ENABLE_GRPC": "false",
        },
        tmp / "gateway.log",
    ).start()
    # Warm up what the attacks touch, so their memory figures are theirs alone.
    for path, body in ((CHAT, chat_body("warm up")), ("/api/keys", b'{"name": "warm"}')):
        assert send_request(proc.port, "POST", path, body, AUTH).status == 200
    yield proc
    proc.stop()
    # No request in this module may have produced an unhandled error anywhere.
    log = proc.log()
    assert "unhandled_error" not in log and "Traceback" not in log, log[-5000:]


def chat_body(text: str = "hi", **extra: Any) -> bytes:
    body = {"model": "mock", "messages": [{"role": "user", "content": text}], **extra}
    return json.dumps(body).encode()


def error_of(answer: Any) -> dict[str, Any]:
    return json.loads(answer.body)["error"]  # type: ignore[no-any-return]


class PeakMemory:
    """The gateway's peak resident memory growth (MiB) over a `with` block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.growth = 0.0

    def __enter__(self) -> PeakMemory:
        peak_rss_reset(self.pid)
        self.before = memory_mb(self.pid)["VmRSS"]
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = memory_mb(self.pid)["VmHWM"] - self.before


def pid(gw: GatewayProcess) -> int:
    assert gw.proc is not None
    return gw.proc.pid


# --- oversized bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_a_declared_oversized_body_is_413_at_once_and_the_connection_closed(
    gw: GatewayProcess, path: str
) -> None:
    with connect(gw.port) as s:
        started = time.monotonic()
        # Only the head: the answer must not wait for a body of 50 MB.
        s.sendall(request_head("POST", path, AUTH, **{"Content-Length": str(50 * LIMIT)}))
        answer = read_answer(s, started)
    assert answer.status == 413, answer
    assert error_of(answer)["code"] == "request_too_large"
    assert answer.closed and answer.header(b"connection") == b"close"
    assert answer.seconds < 2


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_a_chunked_body_without_end_is_refused_past_the_limit_with_bounded_memory(
    gw: GatewayProcess, path: str
) -> None:
    """64 MiB sent chunked (no Content-Length) as fast as loopback allows: the gateway stops
    at 1 MiB with a 413 and closes; it never holds the body it refused."""
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    sent = 0
    with PeakMemory(pid(gw)) as mem, connect(gw.port) as s:
        started = time.monotonic()
        s.sendall(request_head("POST", path, AUTH, **{"Transfer-Encoding": "chunked"}))
        try:
            while sent < 64 * LIMIT:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway closed: what it answered before is read below
        answer = read_answer(s, started)
    assert sent < 64 * LIMIT, "the gateway took 64 MiB without closing"
    # The 413 may be lost to the reset of a connection closed with unread data in it.
    assert answer.status in (413, None) and answer.closed, answer
    assert answer.seconds < 5
    assert mem.growth < 16, f"peak RSS grew {mem.growth:.1f} MiB"
    print(f"{path}: closed after {sent / LIMIT:.1f} MiB sent; peak RSS +{mem.growth:.1f} MiB")


# --- malformed JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_400(gw: GatewayProcess, depth: int) -> None:
    """Where the chat schema takes any JSON (a field passed through to the upstream), and as
    the whole body of every body-reading endpoint."""
    nested = b"[" * depth + b"]" * depth
    body = b'{"model": "mock", "messages": [{"role": "user", "content": "hi"}], "x": %s}' % nested
    answer = send_request(gw.port, "POST", CHAT, body, AUTH)
    assert answer.status == 400, answer
    assert error_of(answer)["code"] == "invalid_json"
    assert "nested too deeply" in error_of(answer)["message"]
    assert answer.seconds < 2
    for path in BODY_ENDPOINTS:
        answer = send_request(gw.port, "POST", path, nested, AUTH)
        assert answer.status == 400, (path, answer)
        assert error_of(answer)["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "mock", "name": "\xff\xfe", "messages": [{"role": "user", "content": "\xc3"}]}',
        b'{"model": "mock\xed\xa0\x80", "name": "x", "messages": []}',  # a UTF-16 surrogate
        b"\xff" * 64,
        b"4\n\xff",
    ],
    ids=["in-strings", "surrogate", "garbage", "scalar-then-garbage"],
)
def test_invalid_utf8_is_400(gw: GatewayProcess, path: str, body: bytes) -> None:
    answer = send_request(gw.port, "POST", path, body, AUTH)
    assert answer.status == 400, answer
    assert error_of(answer)["type"] == "invalid_request_error"


def test_invalid_bytes_in_the_request_line_and_headers_are_4xx(gw: GatewayProcess) -> None:
    with connect(gw.port) as s:
        s.sendall(b"GET /v1/models\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s).status == 400
    for value in (b"Bearer \xff\xfe", b"\xff", b"Bearer " + MASTER.encode() + b"\xc3"):
        with connect(gw.port) as s:
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n" % value)
            answer = read_answer(s)
        assert answer.status == 401, (value, answer)
    answer = send_request(gw.port, "GET", "/api/usage?key_id=%FF%FE&model=%C3", b"", AUTH)
    assert answer.status == 200, answer
    answer = send_request(gw.port, "GET", "/api/usage?limit=%C2%B2", b"", AUTH)  # "²" is a digit
    assert answer.status == 400, answer


@pytest.mark.parametrize(
    "path",
    ["/healthz/", "/livez/", "/openapi.json/", "/metrics/", "/api/keys/", "/api/routing/stats/",
     "/api/usage/", "/v1/models/", "/api/rag/collections/"],
)  # fmt: skip
def test_no_redirect_is_built_from_the_host_header(gw: GatewayProcess, path: str) -> None:
    """Starlette redirects a path with a stray slash to the one without, to an absolute URL
    built from the client's Host header: an open redirect anyone could aim with a forged Host
    (and a cache in front would keep it). A path with a slash too many is an unknown path."""
    with connect(gw.port) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n"
            f"Authorization: Bearer {MASTER}\r\n\r\n".encode()
        )
        answer = read_answer(s)
    assert answer.header(b"location") is None, answer
    assert answer.status == 404, answer
    assert error_of(answer)["type"] == "invalid_request_error"


def test_a_trailing_newline_is_not_part_of_a_valid_name(gw: GatewayProcess) -> None:
    """Patterns ending in `$` (msgspec's `pattern`, re.match) accept one newline after the
    match: `docs\n` passed as a collection name, a session id, a document id ... and a newline
    in a name can start a line of its own wherever the name is written (a prompt, a log)."""
    chat = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
    tool = {"type": "function", "function": {"name": "f\n", "parameters": {}}}
    assert send_request(gw.port, "POST", "/api/rag/collections", b'{"name": "nl-docs"}',
                        AUTH).status == 200  # fmt: skip
    docs = "/api/rag/collections/nl-docs/documents"
    refused = [
        ("POST", CHAT, {**chat, "session_id": "s1\n"}),
        ("POST", CHAT, {**chat, "tools": [tool]}),
        ("POST", "/api/rag/collections", {"name": "docs\n"}),
        ("POST", docs, {"documents": [{"id": "a.md\n", "text": "x"}]}),
        ("POST", docs, {"documents": [{"id": "a.md", "text": "x", "metadata": {"k\n": "v"}}]}),
        ("POST", "/api/keys", {"name": "n", "scopes": ["admin\n"]}),
        ("POST", "/api/keys", {"name": "n", "scopes": ["collection:docs\n"]}),
        ("GET", "/api/rag/collections/nl-docs%0A", None),
        ("GET", "/api/sessions/s1%0A", None),
    ]
    for method, path, body in refused:
        raw = json.dumps(body).encode() if body is not None else b""
        answer = send_request(gw.port, method, path, raw, AUTH)
        assert answer.status == 400, (method, path, body, answer)
        assert error_of(answer)["type"] == "invalid_request_error"


def test_a_huge_message_count_is_answered_in_bounded_time_and_memory(gw: GatewayProcess) -> None:
    """As many messages as the body limit allows (about 35,000 in 1 MiB)."""
    one = b'{"role": "user", "content": "x"},'
    count = (LIMIT - 200) // len(one)
    last = b'{"role": "user", "content": "end"}]}'
    body = b'{"model": "mock", "messages": [' + one * count + last
    assert len(body) <= LIMIT
    with PeakMemory(pid(gw)) as mem:
        answer = send_request(gw.port, "POST", CHAT, body, AUTH)
    assert answer.status == 200, answer
    assert json.loads(answer.body)["choices"][0]["message"]["content"] == "end"
    assert answer.seconds < 5
    # Decoded JSON takes more room than its text: about 30 bytes per message here.
    assert mem.growth < 40 * LIMIT / 2**20, f"peak RSS grew {mem.growth:.1f} MiB"
    print(f"{count + 1} messages: {answer.seconds:.2f} s, peak RSS +{mem.growth:.1f} MiB")


def test_requests_for_an_unknown_model_leave_nothing_behind(gw: GatewayProcess) -> None:
    """150 bodies of 1 MB naming a model nobody serves: each is a 404, and none of them stays in
    memory. (An error object cached and raised again grows its traceback by the raising frames
    each time, and those frames hold the request's body and its decoded form.)"""
    text = "x" * 1_000_000
    before = memory_mb(pid(gw))["VmRSS"]
    with httpx2.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        for i in range(150):
            body = {"model": "no-such-model", "messages": [{"role": "user", "content": text}]}
            if i % 2:
                body["tools"] = [{"type": "function", "function": {"name": f"f{i}"}}]
            answer = c.post(CHAT, content=json.dumps(body))
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "model_not_found"
    growth = memory_mb(pid(gw))["VmRSS"] - before
    assert growth < 16, f"RSS grew {growth:.1f} MiB after 150 requests of 1 MB"
    print(f"150 x 1 MB unknown-model requests: RSS +{growth:.1f} MiB")


# --- oversized and slow heads ---------------------------------------------------------------


@pytest.mark.parametrize("size", [70 * 1024, 1024 * 1024])
def test_an_oversized_request_head_is_431_and_closed(gw: GatewayProcess, size: int) -> None:
    """Over 64 KiB of request line and headers, whether it arrives in one read or many."""
    with connect(gw.port) as s:
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        answer = read_answer(s)
    assert answer.status == 431 and answer.closed, answer
    assert error_of(answer)["code"] == "request_head_too_large"
    with connect(gw.port) as s:  # a long URL counts too (httptools refuses one over 64 KiB)
        s.sendall(b"GET /livez?" + b"q" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s).status in (400, 431)
    with connect(gw.port) as s:  # and so do many small headers
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(size // 10))
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert read_answer(s).status == 431
    assert send_request(gw.port, "GET", "/livez", headers={"X-Fine": "a" * 32 * 1024}).status == 200


def test_an_endless_header_is_cut_off_with_bounded_memory(gw: GatewayProcess) -> None:
    sent = 0
    with PeakMemory(pid(gw)) as mem, connect(gw.port) as s:
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        try:
            while sent < 64 * LIMIT:
                s.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(s)
    # What was sent before the close includes the socket buffers' few MiB, not only what the
    # gateway read; its memory says what it kept.
    assert sent < 64 * LIMIT, "the gateway read 64 MiB of one header without closing"
    assert answer.closed and answer.status in (431, None)
    assert mem.growth < 8, f"peak RSS grew {mem.growth:.1f} MiB"
    print(
        f"endless header: closed after {sent / 2**20:.1f} MiB sent; peak RSS +{mem.growth:.1f} MiB"
    )


def test_a_head_sent_byte_by_byte_gets_408_after_the_client_timeout(gw: GatewayProcess) -> None:
    with connect(gw.port) as s:
        started = time.monotonic()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        try:
            for _ in range(100):  # 10 s at most
                s.send(b"a")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(s, started)
    assert answer.status == 408 and answer.closed, answer
    assert error_of(answer)["code"] == "client_timeout_head"
    assert TIMEOUT <= answer.seconds < TIMEOUT + 1.5


def test_a_connection_that_sends_nothing_is_closed(gw: GatewayProcess) -> None:
    with connect(gw.port) as s:
        answer = read_answer(s)
    assert answer.status is None and answer.closed and answer.head == b""
    assert TIMEOUT <= answer.seconds < TIMEOUT + 1.5


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_that_never_finishes_gets_408(gw: GatewayProcess, framing: str) -> None:
    extra = {"Content-Length": "1000"} if framing == "content-length" else {}
    if framing == "chunked":
        extra = {"Transfer-Encoding": "chunked"}
    start = b'{"model": "mock"' if framing == "content-length" else b'10\r\n{"model": "mock"'
    for path in (CHAT, "/api/keys"):
        with connect(gw.port) as s:
            started = time.monotonic()
            s.sendall(request_head("POST", path, AUTH, **extra) + start)
            answer = read_answer(s, started)
        assert answer.status == 408 and answer.closed, (path, answer)
        assert error_of(answer)["code"] == "client_timeout_body"
        assert TIMEOUT <= answer.seconds < TIMEOUT + 1.5


def test_many_slow_clients_do_not_hold_the_gateway(gw: GatewayProcess) -> None:
    """50 slowloris connections at once: a normal request is answered meanwhile, all 50 are
    closed within the timeout, and the gateway's file descriptors come back down."""
    fds_before = open_fds(pid(gw))
    slow = [connect(gw.port) for _ in range(50)]
    stop = threading.Event()

    def drip() -> None:
        for s in slow:
            s.sendall(b"GET /livez HTTP/1.1\r\nX-Slow: ")
        while not stop.wait(0.1):
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"a")

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        time.sleep(0.3)
        t = time.monotonic()
        r = httpx2.get(f"{gw.url}/v1/models", headers=AUTH, timeout=5)
        assert r.status_code == 200 and time.monotonic() - t < 0.5
        answers = [read_answer(s) for s in slow]
    finally:
        stop.set()
        dripper.join(5)
        for s in slow:
            s.close()
    assert all(a.status == 408 and a.closed for a in answers)
    time.sleep(0.3)
    assert open_fds(pid(gw)) <= fds_before + 2


EARLY = 1_000_000  # a body the gateway answers before reading (a refused key)
WRONG_KEY = {"Authorization": "Bearer not-a-key", "Content-Type": "application/json"}


def early_answer(s: Any, path: str = CHAT) -> Any:
    """A request with a 1,000,000-byte body whose head alone is refused (401): the answer comes
    while the body is still unsent, on a connection kept alive."""
    s.sendall(request_head("POST", path, WRONG_KEY, **{"Content-Length": str(EARLY)}))
    answer = read_answer(s)
    assert answer.status == 401 and not answer.closed, answer
    return answer


@pytest.mark.parametrize("path", [CHAT, "/api/keys"])
def test_an_unread_body_that_stalls_after_an_early_answer_is_closed(
    gw: GatewayProcess, path: str
) -> None:
    """After the answer, uvicorn keeps reading (and discarding) the body so the connection can
    serve the next request; a client that sends one more byte and then nothing held it open
    forever. The rest of the body must arrive within the client timeout of the answer."""
    with connect(gw.port) as s:
        early_answer(s, path)
        s.sendall(b"x")
        started = time.monotonic()
        answer = read_answer(s, started)
    assert answer.status is None and answer.closed and answer.head == b"", answer
    assert answer.seconds < TIMEOUT + 1.5


def test_many_stalled_bodies_after_early_answers_release_their_connections(
    gw: GatewayProcess,
) -> None:
    fds_before = open_fds(pid(gw))
    stalled = [connect(gw.port) for _ in range(50)]
    try:
        for s in stalled:
            early_answer(s)
            s.sendall(b"x" * 1000)
        time.sleep(TIMEOUT + 1.5)
        assert all(read_answer(s).closed for s in stalled)
    finally:
        for s in stalled:
            s.close()
    time.sleep(0.3)
    assert open_fds(pid(gw)) <= fds_before + 2


def test_a_body_sent_whole_after_an_early_answer_keeps_the_connection_usable(
    gw: GatewayProcess,
) -> None:
    """Discarding is what lets the connection live on: a client that sends its whole body
    (in pieces, within the timeout) after the 401 gets its next request answered on the same
    connection."""
    with connect(gw.port) as s:
        early_answer(s)
        for _ in range(4):
            s.sendall(b"x" * (EARLY // 4))
            time.sleep(TIMEOUT / 5)
        body = chat_body()
        s.sendall(request_head("POST", CHAT, AUTH, **{"Content-Length": str(len(body))}) + body)
        answer = read_answer(s)
    assert answer.status == 200 and not answer.closed, answer


def test_a_connection_idle_after_a_discarded_body_gets_the_keep_alive_timeout(
    gateway_factory: Any,
) -> None:
    """Any data cancels uvicorn's keep-alive timer, and the end of a body discarded after its
    answer never set it again: a client that sent its whole body and then went quiet held the
    connection forever. It is now idle like any other (uvicorn's 5 s here; the client timeout,
    30 s, is not what closes it)."""
    gw = gateway_factory(None, env={"AILB_MASTER_KEY": MASTER, "AILB_CLIENT_TIMEOUT": "30"})
    with connect(gw.port, timeout=15) as s:
        early_answer(s)
        s.sendall(b"x" * EARLY)
        started = time.monotonic()
        answer = read_answer(s, started)
    assert answer.status is None and answer.closed, answer
    assert 4 < answer.seconds < 8


# --- what the limits must not touch ---------------------------------------------------------


def test_slow_answers_and_long_streams_are_not_cut(gw: GatewayProcess) -> None:
    """Waiting for the upstream is not the client's slowness: a 2 s answer with a 1 s client
    timeout arrives whole, streamed or not."""
    body = b'{"model": "slow", "messages": [{"role": "user", "content": "take your time"}]}'
    answer = send_request(gw.port, "POST", CHAT, body, AUTH)
    assert answer.status == 200 and answer.seconds >= 2, answer
    stream = body[:-1] + b', "stream": true}'
    with httpx2.stream("POST", f"{gw.url}{CHAT}", content=stream, headers=AUTH, timeout=10) as r:
        text = "".join(r.iter_text())
    assert r.status_code == 200 and text.endswith("data: [DONE]\n\n")


def test_a_slow_but_steady_upload_within_the_timeout_is_served(gw: GatewayProcess) -> None:
    body = chat_body("steady " * 100)
    with connect(gw.port) as s:
        s.sendall(request_head("POST", CHAT, AUTH, **{"Content-Length": str(len(body))}))
        for i in range(0, len(body), len(body) // 5 + 1):  # over about 0.6 s
            time.sleep(0.12)
            s.sendall(body[i : i + len(body) // 5 + 1])
        answer = read_answer(s)
    assert answer.status == 200, answer


def test_keep_alive_connections_still_serve_many_requests(gw: GatewayProcess) -> None:
    with httpx2.Client(base_url=gw.url, headers=AUTH, timeout=5) as c:
        for _ in range(20):
            assert c.post(CHAT, content=chat_body()).status_code == 200
        time.sleep(TIMEOUT + 0.5)  # idle between requests: uvicorn's keep-alive, not ours
        assert c.post(CHAT, content=chat_body()).status_code == 200


def test_json_nested_just_below_the_decoders_limit_is_never_a_500(
    gateway_factory: Any, openai_upstream: FakeServer
) -> None:
    """msgspec accepts about 1,000 levels (less the stack already in use); a body just under
    that passes decoding but may be too deep for a provider's translation or the encoder, which
    run deeper in the stack: that is a 400 too, never a 500 (the upstream may refuse it)."""
    ollama = fake_ollama().start()
    ollama.models = ["m-ollama"]
    try:
        gw = gateway_factory(
            "deployments:\n"
            f"  - {{name: oa, provider: openai, base_url: '{openai_upstream.url}/v1', "
            "models: [m-openai]}\n"
            f"  - {{name: ol, provider: ollama, base_url: '{ollama.url}', models: [m-ollama]}}\n"
        )
        statuses = set()
        for depth in range(940, 1001, 4):
            deep = '{"a": ' * depth + "1" + "}" * depth
            tool = '[{"type": "function", "function": {"name": "f", "parameters": ' + deep + "}}]"
            for field, value in (("tools", tool), ("response_format", deep)):
                for model, stream in (("m-openai", "true"), ("m-ollama", "false")):
                    body = (
                        f'{{"model": "{model}", "stream": {stream}, "{field}": {value}, '
                        '"messages": [{"role": "user", "content": "hi"}]}'
                    )
                    r = httpx2.post(f"{gw.url}{CHAT}", content=body, timeout=20)
                    statuses.add(r.status_code)
                    # 502: the fake upstream's own JSON parser gave up (its answer was a 500).
                    assert r.status_code < 500 or r.status_code == 502, (depth, field, r.text)
        assert 400 in statuses  # the deep end really was reached
    finally:
        ollama.stop()
