"""The per-request access-log line and the event lines around it (failovers, auth failures),
from a running gateway: the fields are there, secrets and message content are not -- unless
AILB_LOG_CONTENT asks for the content."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply
from tests.gateway import RunningGateway

GatewayFactory = Callable[..., RunningGateway]
ClientFor = Callable[..., openai.OpenAI]
MASTER = "master-SECRET-key-0451"
UPSTREAM_KEY = "sk-upstream-SECRET-9f8e7d6c5b4a"
WRONG_KEY = "sk-wrong-SECRET-1234"
CONTENT = "The launch code is swordfish"
ANSWER = "Noted: a fish."
REQUEST_FIELDS = {
    "request_id",
    "key_id",
    "model",
    "provider",
    "deployment",
    "status",
    "error",
    "stream",
    "latency_ms",
    "overhead_ms",
    "ttft_ms",
    "attempts",
    "reason",
    "candidates",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
}


def config(primary: str, backup: str) -> str:
    return f"""
deployments:
  - name: primary
    provider: openai
    base_url: {primary}/v1
    api_key_env: UPSTREAM_KEY
    models: [m]
    priority: 0
  - name: backup
    provider: openai
    base_url: {backup}/v1
    api_key_env: UPSTREAM_KEY
    models: [m]
    priority: 1
"""


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeServer, FakeServer]]:
    primary, backup = fake_openai().start(), fake_openai().start()
    primary.default = backup.default = Reply(text=ANSWER)
    yield primary, backup
    primary.stop()
    backup.stop()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    # Before the gateway starts: the access log decides once whether it is on.
    for name in ("ailb.access", "ailb.routing", "ailb.audit"):
        caplog.set_level(logging.INFO, logger=name)
    return caplog


def request_lines(capsys: pytest.CaptureFixture[str], ids: list[str]) -> tuple[dict[str, Any], str]:
    """The access-log lines of these requests (flushed in batches), and all stderr read."""
    seen: dict[str, Any] = {}
    text = ""
    deadline = time.monotonic() + 3
    while len(seen) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
        err = capsys.readouterr().err
        text += err
        for line in err.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == "request" and entry.get("request_id") in ids:
                    seen[entry["request_id"]] = entry
    assert set(seen) == set(ids), (ids, text)
    return seen, text


def traffic(gw: RunningGateway, client_for: ClientFor, primary: FakeServer) -> list[str]:
    chat = client_for(gw, api_key=MASTER).chat.completions
    messages: Any = [{"role": "user", "content": CONTENT}]
    ids = []
    raw = chat.with_raw_response.create(model="m", messages=messages, user="end-user-7")
    ids.append(raw.headers["x-request-id"])
    stream = chat.with_raw_response.create(model="m", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices) == ANSWER
    ids.append(stream.headers["x-request-id"])
    primary.script(Reply(status=503, error={"error": {"message": "overloaded"}}))
    raw = chat.with_raw_response.create(model="m", messages=messages)
    ids.append(raw.headers["x-request-id"])
    with pytest.raises(openai.AuthenticationError):
        client_for(gw, api_key=WRONG_KEY).chat.completions.create(model="m", messages=messages)
    return ids


def test_request_lines_have_the_facts_and_no_secret_or_content(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    logged: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    primary, backup = upstreams
    gw = gateway_factory(
        config(primary.url, backup.url),
        {"AILB_MASTER_KEY": MASTER, "UPSTREAM_KEY": UPSTREAM_KEY, "ROUTING_STRATEGY": "failover"},
    )
    plain, streamed, failed_over = ids = traffic(gw, client_for, primary)
    lines, stderr = request_lines(capsys, ids)
    for entry in lines.values():
        assert set(entry) >= REQUEST_FIELDS, REQUEST_FIELDS - set(entry)
        assert "messages" not in entry and "answer" not in entry
        assert (entry["logger"], entry["key_id"]) == ("ailb.access", "master")
        assert (entry["model"], entry["provider"], entry["status"]) == ("m", "openai", 200)
        assert entry["candidates"] == ["primary", "backup"] and entry["reason"] == "failover"
        assert 0 <= entry["overhead_ms"] < entry["latency_ms"]
        assert (entry["prompt_tokens"], entry["completion_tokens"]) == (11, 7)
    assert lines[plain]["deployment"] == "primary" and lines[plain]["ttft_ms"] is None
    assert lines[streamed]["stream"] is True and lines[streamed]["ttft_ms"] > 0
    assert (lines[failed_over]["deployment"], lines[failed_over]["attempts"]) == ("backup", 2)

    # The failed attempt and the move, each a line naming the request.
    events = {r.getMessage(): r for r in logged.records if getattr(r, "request_id", None)}
    failure: Any = events["upstream_failure"]
    assert (failure.request_id, failure.deployment, failure.error) == (
        failed_over,
        "primary",
        "http_5xx",
    )
    move: Any = events["failover"]
    assert (move.request_id, getattr(move, "from"), move.to) == (failed_over, "primary", "backup")
    # The refused key: an audit line with the reason, never the key.
    (audit,) = [r for r in logged.records if r.name == "ailb.audit"]
    assert (audit.getMessage(), audit.reason) == ("auth_failed", "malformed_key")

    everything = stderr + "\n".join(json.dumps(r.__dict__, default=str) for r in logged.records)
    for secret in (MASTER, UPSTREAM_KEY, WRONG_KEY, CONTENT, "swordfish", ANSWER):
        assert secret not in everything, secret


def test_log_content_setting_adds_messages_and_answer(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    logged: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    primary, backup = upstreams
    gw = gateway_factory(
        config(primary.url, backup.url),
        {
            "AILB_MASTER_KEY": MASTER,
            "UPSTREAM_KEY": UPSTREAM_KEY,
            "ROUTING_STRATEGY": "failover",
            "AILB_LOG_CONTENT": "true",
        },
    )
    ids = traffic(gw, client_for, primary)
    lines, stderr = request_lines(capsys, ids)
    for entry in lines.values():
        assert entry["messages"] == [{"role": "user", "content": CONTENT}]
        assert entry["answer"] == ANSWER  # streamed answers assembled
    for secret in (MASTER, UPSTREAM_KEY, WRONG_KEY):  # content only: still no credential
        assert secret not in stderr
