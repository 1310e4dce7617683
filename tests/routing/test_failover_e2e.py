"""Failover through a real gateway: fake OpenAI upstreams failing in every way, the official
openai SDK as client (streamed and not), and the effect in GET /api/routing/stats and the logs.

Most tests use two deployments under the `failover` strategy: `bad` (priority 0, so every first
attempt goes there, with short timeouts) and `good` (priority 1).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply
from tests.gateway import RunningGateway

GatewayFactory = Callable[..., RunningGateway]
ClientFor = Callable[..., openai.OpenAI]

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
PROMPT_ESTIMATE = 5  # "Hi": (2 + 3) // 4 + 4 per message, what the gateway bills without usage
GOOD_TEXT = "Answer from the good deployment."
# Short limits on `bad` keep a hang or a slow first byte well under a second. A non-streamed
# answer has no first-byte limit (it comes whole when done): `total` is what bounds it.
BAD_TIMEOUTS = "{connect: 0.5, first_byte: 0.3, idle: 0.3, total: 0.5}"
GOOD_TIMEOUTS = "{connect: 1, first_byte: 2, idle: 2, total: 5}"


class Upstreams:
    """Fake OpenAI servers for one test; a test may kill one mid-run (a refused port)."""

    def __init__(self) -> None:
        self.live: list[FakeServer] = []

    def start(self) -> FakeServer:
        server = fake_openai().start()
        self.live.append(server)
        return server

    def kill(self, server: FakeServer) -> None:
        self.live.remove(server)
        server.stop()


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    ups = Upstreams()
    yield ups
    for server in ups.live:
        server.stop()


@pytest.fixture
def pair(upstreams: Upstreams) -> tuple[FakeServer, FakeServer]:
    bad, good = upstreams.start(), upstreams.start()
    good.default = Reply(text=GOOD_TEXT)
    return bad, good


def two(bad_url: str, good_url: str, model_extra: str = "") -> str:
    return f"""
deployments:
  - name: bad
    provider: openai
    base_url: {bad_url}/v1
    models: [m]
    priority: 0
    timeouts: {BAD_TIMEOUTS}
  - name: good
    provider: openai
    base_url: {good_url}/v1
    models: [m]
    priority: 1
    timeouts: {GOOD_TIMEOUTS}
models:
  m: {{strategy: failover{model_extra}}}
"""


def one(url: str) -> str:
    return f"""
deployments:
  - name: only
    provider: openai
    base_url: {url}/v1
    models: [m]
    timeouts: {GOOD_TIMEOUTS}
"""


def stats(gw: RunningGateway) -> dict[str, Any]:
    r = httpx2.get(f"{gw.url}/api/routing/stats")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def ask(client: openai.OpenAI, stream: bool) -> str:
    if not stream:
        choice = client.chat.completions.create(model="m", messages=MESSAGES).choices[0]
        assert choice.message.content is not None
        return choice.message.content
    chunks = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def chat_calls(server: FakeServer) -> int:
    return len(server.calls("/v1/chat/completions"))


def wait_for_health(gw: RunningGateway, name: str, state: str) -> None:
    deadline = time.monotonic() + 2
    while stats(gw)["deployments"][name]["health"] != state:
        assert time.monotonic() < deadline, stats(gw)["deployments"][name]
        time.sleep(0.02)


# --- one failure: the client never notices, the stats do ----------------------------------------


def error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": None}}


HTTP_500 = Reply(status=500, error=error_body("boom"))
HTTP_503 = Reply(status=503, error=error_body("overloaded"))
HTTP_401 = Reply(status=401, error=error_body("bad key"))
HTTP_403 = Reply(status=403, error=error_body("denied"))
RATE_LIMITED = Reply(status=429, headers={"Retry-After": "30"}, error=error_body("slow down"))
NOT_SSE = {"Content-Type": "application/json"}  # a stream whose body is not events but junk

# id, reply to a non-streamed request, reply to a streamed one (None: not applicable),
# error label in stats, bad's health afterwards, bad's ejections afterwards
FAILURES = [
    ("dropped", Reply(drop=True), Reply(drop=True), "connect", "up", 0),
    ("hang", Reply(hang=True), Reply(hang=True), "timeout", "up", 0),
    ("slow-first-byte", Reply(delay=0.6), Reply(delay=0.6), "timeout", "up", 0),
    ("500", HTTP_500, HTTP_500, "http_5xx", "up", 0),
    ("503", HTTP_503, HTTP_503, "http_5xx", "up", 0),
    ("garbage", Reply(garbage=True), Reply(garbage=True, headers=NOT_SSE), "protocol", "up", 0),
    ("cut-before-first-byte", None, Reply(cut_after=0), "protocol", "up", 0),
    ("401", HTTP_401, HTTP_401, "http_401", "ejected", 1),
    ("403", HTTP_403, HTTP_403, "http_403", "ejected", 1),
    ("429", RATE_LIMITED, RATE_LIMITED, "http_429", "cooling_down", 0),
]

CASES = [
    pytest.param(reply, label, health, ejections, stream, id=f"{name}-{kind}")
    for name, json_reply, sse_reply, label, health, ejections in FAILURES
    for stream, kind, reply in ((False, "json", json_reply), (True, "sse", sse_reply))
    if reply is not None
]


@pytest.mark.parametrize(("reply", "label", "health", "ejections", "stream"), CASES)
def test_one_failure_fails_over_and_shows_in_stats(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    reply: Reply,
    label: str,
    health: str,
    ejections: int,
    stream: bool,
) -> None:
    bad, good = pair
    bad.default = reply
    gw = gateway_factory(two(bad.url, good.url))
    client = client_for(gw)

    assert ask(client, stream) == GOOD_TEXT
    s = stats(gw)
    b, g = s["deployments"]["bad"], s["deployments"]["good"]
    assert b["errors"] == {label: 1}
    assert (b["requests"], b["successes"], b["in_flight"]) == (1, 0, 0)
    assert (g["requests"], g["successes"], g["in_flight"], g["errors"]) == (1, 1, 0, {})
    assert b["health"] == health and g["health"] == "up"
    assert b["ejections"] == ejections and g["ejections"] == 0
    assert b["weights"] == g["weights"] == {"m": 1}
    assert b["tokens"] == {"prompt": 0, "completion": 0}  # a failed attempt bills nothing
    assert g["tokens"] == {"prompt": 11, "completion": 7}
    assert s["models"]["m"]["strategy"] == "failover"
    assert s["models"]["m"]["selections"] == {"bad": 1}
    # A connection closed before any answer byte may be a stale kept-alive one: the
    # transport resends once on a fresh connection, inside the same attempt.
    assert chat_calls(bad) in ((1, 2) if label == "connect" else (1,))
    assert chat_calls(good) == 1
    if health == "cooling_down":
        assert 29 < b["cooldown_for_s"] <= 30 and b["ejected_for_s"] == 0
    if health == "ejected":
        assert 4.5 < b["ejected_for_s"] <= 5


@pytest.mark.parametrize(
    ("json_reply", "sse_reply", "label"),
    [
        (Reply(status=500, error=error_body("boom")), None, "http_5xx"),
        (Reply(hang=True), None, "timeout"),
        (Reply(garbage=True), Reply(garbage=True, headers=NOT_SSE), "protocol"),
        (Reply(drop=True), None, "connect"),
    ],
    ids=["500", "hang", "garbage", "dropped"],
)
def test_three_failures_eject_and_the_next_requests_skip_the_deployment(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    json_reply: Reply,
    sse_reply: Reply | None,
    label: str,
) -> None:
    bad, good = pair
    gw = gateway_factory(two(bad.url, good.url))
    client = client_for(gw)
    for stream in (False, True, False):
        bad.default = sse_reply if stream and sse_reply is not None else json_reply
        assert ask(client, stream) == GOOD_TEXT
    b = stats(gw)["deployments"]["bad"]
    assert b["errors"] == {label: 3}
    assert b["health"] == "ejected" and b["ejections"] == 1
    assert 4 < b["ejected_for_s"] <= 5  # the base ejection time
    calls = chat_calls(bad)
    for stream in (False, True, False):
        assert ask(client, stream) == GOOD_TEXT
    assert chat_calls(bad) == calls  # ejected: not even tried
    s = stats(gw)
    assert s["deployments"]["bad"]["requests"] == 3
    assert s["deployments"]["good"]["successes"] == 6
    assert s["models"]["m"]["selections"] == {"bad": 3, "good": 3}


def test_a_deployment_killed_mid_run_refuses_and_is_ejected(
    upstreams: Upstreams, gateway_factory: GatewayFactory, client_for: ClientFor
) -> None:
    bad, good = upstreams.start(), upstreams.start()
    good.default = Reply(text=GOOD_TEXT)
    gw = gateway_factory(two(bad.url, good.url))
    client = client_for(gw)
    assert ask(client, stream=False) == "Hello from the fake upstream."
    wait_for_health(gw, "bad", "up")
    upstreams.kill(bad)  # its port now refuses connections
    for stream in (False, True, False):
        assert ask(client, stream) == GOOD_TEXT
    b = stats(gw)["deployments"]["bad"]
    assert b["errors"] == {"connect": 3}
    assert b["health"] == "ejected" and b["ejections"] == 1
    assert (b["requests"], b["successes"]) == (4, 1)
    assert ask(client, stream=True) == GOOD_TEXT
    assert stats(gw)["deployments"]["bad"]["requests"] == 4


def test_a_slow_first_byte_within_the_timeout_is_waited_for_and_measured(
    pair: tuple[FakeServer, FakeServer], gateway_factory: GatewayFactory, client_for: ClientFor
) -> None:
    bad, good = pair
    bad.default = Reply(delay=0.15, text="slow but fine")
    gw = gateway_factory(two(bad.url, good.url))
    client = client_for(gw)
    assert ask(client, stream=False) == "slow but fine"
    assert ask(client, stream=True) == "slow but fine"
    b = stats(gw)["deployments"]["bad"]
    assert b["errors"] == {} and b["successes"] == 2
    assert 150 <= b["latency_ms"]["p50"] < 1000
    assert 150 <= b["ttft_ms"]["p50"] < 1000  # the streamed one's time to first token
    assert chat_calls(good) == 0


@pytest.mark.parametrize("code", [400, 422])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_client_fault_is_passed_back_without_failover_or_penalty(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    code: int,
    stream: bool,
) -> None:
    bad, good = pair
    bad.default = Reply(
        status=code,
        error={"error": {"message": "bad temperature", "type": "invalid_request_error"}},
    )
    gw = gateway_factory(two(bad.url, good.url))
    client = client_for(gw)
    for _ in range(4):
        with pytest.raises(openai.APIStatusError) as info:
            ask(client, stream)
        assert info.value.status_code == code
    assert chat_calls(good) == 0  # another deployment would refuse it too
    b = stats(gw)["deployments"]["bad"]
    assert b["errors"] == {f"http_{code}": 4}
    assert b["health"] == "up" and b["ejections"] == 0


def test_the_attempt_budget_bounds_failover(
    pair: tuple[FakeServer, FakeServer], gateway_factory: GatewayFactory, client_for: ClientFor
) -> None:
    bad, good = pair
    bad.default = Reply(status=500, error=error_body("boom"))
    gw = gateway_factory(two(bad.url, good.url), {"AILB_MAX_ATTEMPTS": "1"})
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(gw), stream=False)
    assert (info.value.status_code, info.value.code) == (502, "upstream_error")
    assert chat_calls(good) == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_the_request_deadline_bounds_failover(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    stream: bool,
) -> None:
    bad, good = pair
    bad.default = Reply(hang=True)  # 0.3 s to its first-byte timeout
    good.default = Reply(delay=2.0, text=GOOD_TEXT)
    gw = gateway_factory(two(bad.url, good.url), {"AILB_REQUEST_TIMEOUT": "0.6"})
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(gw), stream)
    assert (info.value.status_code, info.value.code) == (504, "upstream_timeout")
    assert 0.55 <= time.monotonic() - started < 1.2
    assert chat_calls(good) == 1


# --- streams after the first byte: an explicit error, never a failover ---------------------------


def read_until_error(client: openai.OpenAI) -> tuple[str, openai.APIError]:
    text = ""
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    return text, info.value


@pytest.mark.parametrize(
    ("reply", "delivered", "label"),
    [
        (Reply(text="one two three four", pieces=4, cut_after=3), "one two th", "protocol"),
        (Reply(text="one two", chunk_delay=0.6), "", "timeout"),  # stalls past the idle limit
        (Reply(text="one two", garbage=True, chunk_delay=0.15), "", "protocol"),
    ],
    ids=["cut", "stalled", "malformed-event"],
)
def test_stream_broken_after_the_first_byte_ends_with_an_error_event(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    reply: Reply,
    delivered: str,
    label: str,
) -> None:
    bad, good = pair
    bad.default = reply
    gw = gateway_factory(two(bad.url, good.url))
    text, err = read_until_error(client_for(gw))
    assert text == delivered
    assert err.message == "The upstream stream failed before the answer was complete."
    assert chat_calls(good) == 0  # too late to fail over: the client has part of an answer
    b = stats(gw)["deployments"]["bad"]
    assert b["errors"] == {label: 1} and b["successes"] == 0 and b["in_flight"] == 0
    # Billing is what was delivered: the prompt estimate and ~4 characters a token.
    assert b["tokens"] == {"prompt": PROMPT_ESTIMATE, "completion": (len(delivered) + 3) // 4}

    with httpx2.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES, "stream": True},
    ) as r:
        body = r.read().decode()
    assert r.status_code == 200
    events = [e for e in body.split("\n\n") if e]
    assert "data: [DONE]" not in events
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "upstream_stream_error"


# --- 429 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_429_then_the_cooled_down_deployment_is_left_alone(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    stream: bool,
) -> None:
    bad, good = pair
    bad.script(RATE_LIMITED)
    gw = gateway_factory(two(bad.url, good.url))
    client = client_for(gw)
    for _ in range(4):
        assert ask(client, stream) == GOOD_TEXT
    assert chat_calls(bad) == 1
    b = stats(gw)["deployments"]["bad"]
    assert b["health"] == "cooling_down" and b["errors"] == {"http_429": 1}
    assert b["ejections"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_429_on_the_only_deployment_is_waited_out_when_it_fits(
    upstreams: Upstreams, gateway_factory: GatewayFactory, client_for: ClientFor, stream: bool
) -> None:
    only = upstreams.start()
    only.script(Reply(status=429, headers={"Retry-After": "0.6"}, error=error_body("rl")))
    gw = gateway_factory(one(only.url))
    started = time.monotonic()
    assert ask(client_for(gw), stream) == "Hello from the fake upstream."
    assert 0.55 <= time.monotonic() - started < 2
    assert chat_calls(only) == 2
    d = stats(gw)["deployments"]["only"]
    assert d["errors"] == {"http_429": 1} and d["successes"] == 1
    assert d["health"] == "up" and d["cooldown_for_s"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_429_that_does_not_fit_the_deadline_is_passed_on_with_retry_after(
    upstreams: Upstreams, gateway_factory: GatewayFactory, client_for: ClientFor, stream: bool
) -> None:
    only = upstreams.start()
    only.default = Reply(status=429, headers={"Retry-After": "120"}, error=error_body("rl"))
    gw = gateway_factory(one(only.url), {"AILB_REQUEST_TIMEOUT": "10"})
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as info:
        ask(client_for(gw), stream)
    assert time.monotonic() - started < 1  # answered at once, not after a futile wait
    assert info.value.response.headers["retry-after"] == "120"
    assert info.value.code == "upstream_rate_limited"
    assert chat_calls(only) == 1
    d = stats(gw)["deployments"]["only"]
    assert d["health"] == "cooling_down" and 119 < d["cooldown_for_s"] <= 120


def test_all_rate_limited_the_client_retries_after_the_soonest(
    pair: tuple[FakeServer, FakeServer], gateway_factory: GatewayFactory, client_for: ClientFor
) -> None:
    bad, good = pair
    bad.default = Reply(status=429, headers={"Retry-After": "45"}, error=error_body("rl"))
    good.default = Reply(status=429, headers={"Retry-After": "30"}, error=error_body("rl"))
    gw = gateway_factory(two(bad.url, good.url), {"AILB_REQUEST_TIMEOUT": "10"})
    with pytest.raises(openai.RateLimitError) as info:
        ask(client_for(gw), stream=False)
    assert info.value.response.headers["retry-after"] == "30"
    s = stats(gw)["deployments"]
    assert s["bad"]["health"] == s["good"]["health"] == "cooling_down"


# --- 401: ejected, alerted, never shown ------------------------------------------------------

LEAKY_401 = Reply(
    status=401,
    error={
        "error": {
            "message": "Incorrect API key provided: sk-proj-abcdef123456. You can find your "
            "API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    },
)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_401_everywhere_is_a_generic_502_then_panic_mode_tries_them_anyway(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="ailb.routing")
    bad, good = pair
    bad.default = good.default = LEAKY_401
    gw = gateway_factory(two(bad.url, good.url))
    client = client_for(gw)
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, stream)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_error"
    body = info.value.response.text
    for secret in ("Incorrect API key", "sk-proj", "platform.openai.com", "invalid_api_key"):
        assert secret not in body
    for name in ('"bad"', '"good"', "127.0.0.1", "401"):
        assert name not in body
    s = stats(gw)["deployments"]
    for name in ("bad", "good"):
        assert s[name]["health"] == "ejected" and s[name]["errors"] == {"http_401": 1}
    alerts: list[Any] = [
        r for r in caplog.records if r.getMessage() == "upstream_credentials_rejected"
    ]
    assert [(r.levelno, r.deployment, r.status) for r in alerts] == [
        (logging.ERROR, "bad", 401),
        (logging.ERROR, "good", 401),
    ]

    # Keys fixed, both still ejected: panic mode tries them rather than answering 503.
    bad.default = Reply(text="bad is back")
    good.default = Reply(text=GOOD_TEXT)
    assert ask(client, stream) == "bad is back"  # its ejection ends first
    assert stats(gw)["deployments"]["bad"]["successes"] == 1


# --- hedging ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_hedging_answers_from_the_fast_deployment_and_counts_both(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="ailb.routing")
    bad, good = pair
    config = two(bad.url, good.url, ", hedging: true").replace(BAD_TIMEOUTS, GOOD_TIMEOUTS)
    gw = gateway_factory(config)
    client = client_for(gw)
    for _ in range(20):  # a recent p95 needs 20 samples: a few ms each
        assert ask(client, stream) == "Hello from the fake upstream."
    bad.default = Reply(delay=3.0)
    started = time.monotonic()
    assert ask(client, stream) == GOOD_TEXT
    assert time.monotonic() - started < 1.0
    s = stats(gw)
    b, g = s["deployments"]["bad"], s["deployments"]["good"]
    assert (b["requests"], b["successes"], b["in_flight"], b["errors"]) == (21, 20, 0, {})
    assert (g["requests"], g["successes"], g["in_flight"]) == (1, 1, 0)
    # The cancelled attempt's prompt was sent, so it is billed (estimated, no usage came back).
    assert b["tokens"] == {"prompt": 20 * 11 + PROMPT_ESTIMATE, "completion": 20 * 7}
    assert g["tokens"] == {"prompt": 11, "completion": 7}
    assert s["models"]["m"]["selections"] == {"bad": 21}
    hedges: list[Any] = [r for r in caplog.records if r.getMessage() == "hedge"]
    assert [(r.slow, r.to) for r in hedges] == [("bad", "good")]


# --- weights end to end ---------------------------------------------------------------------------


def test_configured_weights_split_traffic_show_in_stats_and_change_at_run_time(
    upstreams: Upstreams, gateway_factory: GatewayFactory, client_for: ClientFor
) -> None:
    up = upstreams.start()
    deps = "".join(
        f"""
  - name: {name}
    provider: openai
    base_url: {up.url}/v1
    models: [m]
    weight: {w}
"""
        for name, w in (("a", 3), ("b", 1), ("zero", 0))
    )
    gw = gateway_factory(f"deployments:{deps}models:\n  m: {{strategy: round_robin}}\n")
    client = client_for(gw)
    for i in range(8):
        ask(client, stream=i % 2 == 0)
    s = stats(gw)
    assert {n: d["requests"] for n, d in s["deployments"].items()} == {"a": 6, "b": 2, "zero": 0}
    assert {n: d["weights"] for n, d in s["deployments"].items()} == {
        "a": {"m": 3},
        "b": {"m": 1},
        "zero": {"m": 0},
    }
    assert s["models"]["m"]["weights"] == {"a": 3, "b": 1, "zero": 0}

    async def reweigh() -> None:
        gw.runtime.router.set_weights("m", {"a": 0, "zero": 1})

    gw.call(reweigh())
    for _ in range(4):
        ask(client, stream=False)
    s = stats(gw)
    assert {n: d["requests"] for n, d in s["deployments"].items()} == {"a": 6, "b": 4, "zero": 2}
    assert s["models"]["m"]["weights"] == {"a": 0, "b": 1, "zero": 1}
    assert s["deployments"]["a"]["weights"] == {"m": 0}


# --- logging ------------------------------------------------------------------------------------


def test_selection_and_failover_are_logged_with_the_request_id(
    pair: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="ailb.routing")
    caplog.set_level(logging.INFO, logger="ailb.access")  # before start: the access log checks once
    bad, good = pair
    bad.default = Reply(status=500, error=error_body("boom"))
    gw = gateway_factory(two(bad.url, good.url))
    raw = client_for(gw).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == GOOD_TEXT
    request_id = raw.headers["x-request-id"]

    failure = [r for r in caplog.records if r.getMessage() == "upstream_failure"]
    assert len(failure) == 1
    f: Any = failure[0]
    assert (f.levelno, f.request_id, f.deployment, f.model, f.error, f.attempt, f.ejected) == (
        logging.WARNING,
        request_id,
        "bad",
        "m",
        "http_5xx",
        1,
        False,
    )
    moves = [r for r in caplog.records if r.getMessage() == "failover"]
    assert len(moves) == 1
    m: Any = moves[0]
    assert (m.levelno, m.request_id, m.model, m.error) == (
        logging.INFO,
        request_id,
        "m",
        "http_5xx",
    )
    assert (getattr(m, "from"), m.to) == ("bad", "good")

    # The selection itself: one structured access-log line per request (flushed in batches).
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 2
    while not lines and time.monotonic() < deadline:
        time.sleep(0.05)
        err = capsys.readouterr().err
        lines = [
            json.loads(line)
            for line in err.splitlines()
            if line.startswith("{") and request_id in line
        ]
    assert len(lines) == 1, lines
    entry = lines[0]
    assert entry["event"] == "request" and entry["logger"] == "ailb.access"
    assert entry["candidates"] == ["bad", "good"]
    assert (entry["reason"], entry["deployment"], entry["attempts"], entry["status"]) == (
        "failover",
        "good",
        2,
        200,
    )
