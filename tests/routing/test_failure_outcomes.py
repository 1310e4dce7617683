"""Every upstream failure kind, with the client's outcome asserted (official openai SDK)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx2
import openai
import pytest

from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def bad() -> Iterator[FakeServer]:
    server = fake_openai().start()
    yield server
    server.stop()


def two(bad_url: str, good_url: str, extra: str = "") -> str:
    # `bad` has priority: with the failover strategy every first attempt goes there.
    return f"""
deployments:
  - name: bad
    provider: openai
    base_url: {bad_url}/v1
    models: [m]
    priority: 0
    timeouts: {{connect: 1, first_byte: 0.5, idle: 0.5, total: 0.8}}
  - name: good
    provider: openai
    base_url: {good_url}/v1
    models: [m]
    priority: 1
    timeouts: {{connect: 1, first_byte: 2, idle: 2, total: 5}}
models:
  m: {{strategy: failover{extra}}}
"""


def stats(gw) -> dict:
    return httpx2.get(f"{gw.url}/api/routing/stats").json()["deployments"]


FAILURES = [
    (Reply(hang=True), "timeout"),
    # Streamed: a first byte past the 0.5 s first_byte; not streamed: past the 0.8 s total.
    (Reply(delay=1.0), "timeout"),
    (Reply(status=500, error={"error": {"message": "boom"}}), "http_5xx"),
    (Reply(status=401, error={"error": {"message": "invalid key sk-abcdefgh1234"}}), "http_401"),
    (Reply(garbage=True), "protocol"),
    (Reply(drop=True), "connect"),  # reset before any response byte
    (
        Reply(status=429, headers={"Retry-After": "30"}, error={"error": {"message": "slow"}}),
        "http_429",
    ),
]


CASES = [
    pytest.param(reply, label, stream, id=f"{label}{i}-{'sse' if stream else 'json'}")
    for i, (reply, label) in enumerate(FAILURES)
    for stream in (False, True)
    # A garbage event inside a stream may follow bytes already sent: covered by the stream tests.
    if not (reply.garbage and stream)
]


@pytest.mark.parametrize(("reply", "label", "stream"), CASES)
def test_failure_on_one_deployment_is_invisible_to_the_client(
    bad, openai_upstream, gateway_factory, client_for, reply, label, stream
):
    bad.default = reply
    gw = gateway_factory(two(bad.url, openai_upstream.url))
    client = client_for(gw)
    resp = client.chat.completions.create(model="m", messages=MESSAGES, stream=stream)
    text = (
        "".join(c.choices[0].delta.content or "" for c in resp if c.choices)
        if stream
        else resp.choices[0].message.content
    )
    assert text == "Hello from the fake upstream."
    s = stats(gw)
    assert s["bad"]["errors"].get(label, 0) >= 1, s["bad"]["errors"]
    assert s["good"]["successes"] == 1
    if label == "http_401":
        assert s["bad"]["health"] == "ejected"  # bad credentials: out at once
    if label == "http_429":
        assert s["bad"]["health"] == "cooling_down"
        assert s["bad"]["cooldown_for_s"] > 25


def test_429_with_no_other_deployment_is_waited_out_when_it_fits(
    openai_upstream, gateway_factory, client_for
):
    openai_upstream.script(
        Reply(status=429, headers={"Retry-After": "1"}, error={"error": {"message": "rl"}})
    )
    gw = gateway_factory(
        f"""
deployments:
  - name: only
    provider: openai
    base_url: {openai_upstream.url}/v1
    models: [m]
"""
    )
    started = time.monotonic()
    resp = client_for(gw).chat.completions.create(model="m", messages=MESSAGES)
    assert resp.choices[0].message.content
    assert 0.9 <= time.monotonic() - started < 5


def test_429_that_does_not_fit_the_deadline_reaches_the_client(
    openai_upstream, gateway_factory, client_for
):
    openai_upstream.default = Reply(
        status=429, headers={"Retry-After": "120"}, error={"error": {"message": "rl"}}
    )
    gw = gateway_factory(
        f"""
deployments:
  - name: only
    provider: openai
    base_url: {openai_upstream.url}/v1
    models: [m]
""",
        {"AILB_REQUEST_TIMEOUT": "10"},
    )
    with pytest.raises(openai.RateLimitError) as info:
        client_for(gw).chat.completions.create(model="m", messages=MESSAGES)
    assert int(info.value.response.headers["retry-after"]) >= 100


def test_every_deployment_down_is_a_clean_502(bad, gateway_factory, client_for):
    bad.default = Reply(status=500, error={"error": {"message": "boom at http://10.0.0.1"}})
    gw = gateway_factory(two(bad.url, bad.url))
    with pytest.raises(openai.APIStatusError) as info:
        client_for(gw).chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == 502
    assert "10.0.0.1" not in info.value.response.text


def test_hedging_answers_from_the_fast_deployment(
    bad, openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(
        two(bad.url, openai_upstream.url, ", hedging: true").replace(
            "first_byte: 0.5", "first_byte: 10"
        )
    )
    client = client_for(gw)
    for _ in range(20):  # warm up: gives `bad` a recent p95 of a few ms (20 samples needed)
        client.chat.completions.create(model="m", messages=MESSAGES)
    bad.default = Reply(delay=3.0)
    started = time.monotonic()
    resp = client.chat.completions.create(model="m", messages=MESSAGES)
    took = time.monotonic() - started
    assert resp.choices[0].message.content
    assert took < 1.5, took
    s = stats(gw)
    assert s["good"]["requests"] >= 1  # the hedge went out ...
    assert s["bad"]["requests"] == 21  # ... while the slow attempt was counted too


def test_active_probe_marks_an_unreachable_deployment_down(openai_upstream, gateway_factory):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    gw = gateway_factory(two(f"http://127.0.0.1:{port}", openai_upstream.url))
    deadline = time.monotonic() + 5
    health = {}
    while time.monotonic() < deadline:
        health = httpx2.get(f"{gw.url}/healthz").json()
        if health["providers"]["bad"]["status"] == "down":
            break
        time.sleep(0.05)
    assert health["providers"]["bad"]["status"] == "down"
    assert health["providers"]["good"]["status"] == "up"
    assert health["status"] == "degraded"
    assert openai_upstream.calls("/v1/models")  # the probe is the model list, never a completion
    assert not openai_upstream.calls("/v1/chat/completions")
