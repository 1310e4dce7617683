"""No secret ever leaves the gateway: not in an answer (status line, headers, body), not in a
log line, not in /metrics, /healthz or the stats.

One real `ailb serve` process, configured with every kind of secret -- provider keys (from the
environment and through `api_key_env`, shaped like OpenAI's and not), a configured header
value, the master key, the metrics token, the database password -- and a hostile upstream that
repeats the credentials it receives in every error it sends. A broad mix of traffic goes through
it: successes, streams, upstream 4xx/5xx/401 and a stream cut by an error event, all echoing
keys; authentication failures of every kind; keys created, signed, rotated, revoked. Everything
the process writes (stdout and stderr) and every answer is captured, and each secret is looked
for in its plain form, base64 (standard and URL-safe) and percent-encoding. The secrets of a
created or rotated key are shown once in that very answer, by design: exactly those answers
are left out of the search.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest

from ailb.auth.authenticator import sign
from tests.fakes.anthropic import anthropic_error, fake_anthropic
from tests.fakes.echo import fake_echo
from tests.fakes.ollama import fake_ollama, ollama_error
from tests.fakes.openai import fake_openai, openai_error
from tests.fakes.server import FakeServer, Reply
from tests.processes import GatewayProcess


def token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)


class Recorder:
    """Every answer the gateway gave, as text: status line, headers and body."""

    def __init__(self, base: str) -> None:
        self.client = httpx2.Client(base_url=base, timeout=30)
        self.answers: list[tuple[str, str]] = []  # (what was asked, the whole answer)
        self.excluded: list[str] = []  # answers that show a new key's secret by design

    def __call__(
        self, method: str, path: str, *, shows_secret: bool = False, **kw: Any
    ) -> httpx2.Response:
        r = self.client.request(method, path, **kw)
        if shows_secret:
            self.excluded.append(whole(r, r.text))
        else:
            self.answers.append((f"{method} {path}", whole(r, r.text)))
        return r

    def stream(self, path: str, **kw: Any) -> str:
        with self.client.stream("POST", path, **kw) as r:
            text = "".join(r.iter_text())
        self.answers.append((f"POST {path} (stream)", whole(r, text)))
        return text


def whole(r: httpx2.Response, body: str) -> str:
    head = "".join(f"{k}: {v}\n" for k, v in r.headers.items())
    return f"HTTP {r.status_code} {r.reason_phrase}\n{head}\n{body}"


def forms(secret: str) -> dict[str, str]:
    raw = secret.encode()
    return {
        "plain": secret,
        "base64": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "percent-encoded": quote(secret, safe=""),
        "json-escaped": json.dumps(secret)[1:-1],
        "tail": secret[-16:],  # a secret cut short still gives itself away
    }


@pytest.fixture
def echo() -> Iterator[FakeServer]:
    server = fake_echo().start()
    server.models = ["gpt-echo", "claude-echo", "vllm-echo", "broken-echo"]
    yield server
    server.stop()


def test_no_secret_in_any_answer_log_line_or_metric(
    echo: FakeServer, tmp_path: Path, postgres_dsn: str, pg_schema: str
) -> None:
    pg_password = token("pg-pass-")
    dsn = postgres_dsn.replace("postgres@", f"postgres:{pg_password}@", 1)  # trust: ignored
    assert pg_password in dsn
    provider = {
        "openai": token("sk-proj-"),  # OpenAI's shape: the generic scrubber knows it
        "anthropic": token("ant-api-"),  # other shapes: only the exact value can be redacted
        "vllm": token("vllm-"),
        "broken": token("brk-"),
        "header": token("hdr-"),
    }
    master, metrics_token = token("master-"), token("metrics-")
    (tmp_path / "ailb.yaml").write_text(
        f"""
deployments:
  - name: vllm
    provider: openai
    base_url: {echo.url}/v1
    api_key_env: VLLM_TOKEN
    models: [vllm-echo]
    headers: {{X-Custom-Auth: {provider["header"]}}}
  - name: broken
    provider: openai
    base_url: {echo.url}/bad/v1
    api_key_env: BROKEN_TOKEN
    models: [broken-echo]
"""
    )
    gw = GatewayProcess(
        {
            "AILB_CONFIG": str(tmp_path / "ailb.yaml"),
            "AILB_DATA_DIR": str(tmp_path / "data"),
            "AILB_LOG_LEVEL": "DEBUG",
            "AILB_HEALTH_INTERVAL": "0.5",
            "AILB_MASTER_KEY": master,
            "AILB_METRICS_TOKEN": metrics_token,
            "DATABASE_URL": dsn,
            "AILB_DATABASE_SCHEMA": pg_schema,
            "OPENAI_API_KEY": provider["openai"],
            "OPENAI_BASE_URL": f"{echo.url}/v1",
            "OPENAI_MODELS": "gpt-echo",
            "ANTHROPIC_API_KEY": provider["anthropic"],
            "ANTHROPIC_BASE_URL": echo.url,
            "ANTHROPIC_MODELS": "claude-echo",
            "VLLM_TOKEN": provider["vllm"],
            "BROKEN_TOKEN": provider["broken"],
            "ENABLE_MEMORY": "false",
        },
        tmp_path / "gateway.log",
    ).start()
    ask = Recorder(gw.url)
    try:
        created = drive_traffic(ask, master, metrics_token)
    finally:
        ask.client.close()
        gw.stop()
    log = gw.log()

    # The hostile upstream really did send every provider secret back.
    sent_back = "\n".join(echo.echoed)  # type: ignore[attr-defined]
    for name in ("openai", "anthropic", "vllm", "broken", "header"):
        assert provider[name] in sent_back, name
    # And the traffic reached what it meant to.
    assert "upstream_credentials_rejected" in log and "stream_broken" in log
    assert "upstream_failure" in log and "deployment_down" in log

    named = {
        **{f"provider key ({k})": v for k, v in provider.items()},
        "master key": master,
        "metrics token": metrics_token,
        "database password": pg_password,
        **created,
    }
    places = [(what, answer) for what, answer in ask.answers]
    places += [("the gateway's log (stdout and stderr)", log)]
    found = [
        f"{name} ({form}) in {where}"
        for name, secret in named.items()
        for form, text in forms(secret).items()
        for where, place in places
        if text in place
    ]
    assert not found, "\n".join(found[:20])
    print(f"{len(ask.answers)} answers and {len(log.splitlines())} log lines: no secret")


def drive_traffic(ask: Recorder, master: str, metrics_token: str) -> dict[str, str]:
    """Requests of every kind; returns the secrets of the keys it created (by name)."""
    admin = {"Authorization": f"Bearer {master}"}
    created: dict[str, str] = {}

    def chat(key: str, model: str, text: str, **extra: Any) -> httpx2.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
        return ask(
            "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        )

    # Open endpoints and metrics, with and without the token.
    for path in ("/livez", "/healthz", "/openapi.json"):
        assert ask("GET", path).status_code in (200, 503)
    assert ask("GET", "/metrics").status_code == 401
    assert (
        ask("GET", "/metrics", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    )
    assert ask("GET", "/metrics", headers=admin).status_code == 401  # the master key is not it
    ok = ask("GET", "/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert ok.status_code == 200 and "ailb_requests_total" in ok.text

    # Keys: created (plain and signed), listed, changed, rotated, used, revoked.
    plain = ask(
        "POST", "/api/keys", json={"name": "plain"}, headers=admin, shows_secret=True
    ).json()
    signed = ask("POST", "/api/keys", json={"name": "signed", "signed": True}, headers=admin,
                 shows_secret=True).json()  # fmt: skip
    created["AILB key (plain)"] = plain["key"]
    created["AILB key (signed)"] = signed["key"]
    created["signing secret"] = signed["signing_secret"]
    for path in ("/api/keys", f"/api/keys/{plain['id']}", f"/api/keys/{signed['id']}"):
        assert ask("GET", path, headers=admin).status_code == 200
    assert ask(
        "PATCH", f"/api/keys/{plain['id']}", json={"rpm_limit": 100}, headers=admin
    ).is_success
    rotated = ask("POST", f"/api/keys/{plain['id']}/rotate", json={"grace_seconds": 60},
                  headers=admin, shows_secret=True).json()  # fmt: skip
    created["AILB key (rotated)"] = rotated["key"]

    # Chat through every deployment: successes, streams, upstream errors echoing keys.
    for key in (plain["key"], rotated["key"], master):  # the old secret within its grace too
        assert chat(key, "gpt-echo", "hello").status_code == 200
    assert "[DONE]" in ask.stream(
        "/v1/chat/completions",
        json={"model": "gpt-echo", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"Authorization": f"Bearer {master}"},
    )
    # A stream cut by an error event (before the 401 below ejects the deployment).
    text = ask.stream(
        "/v1/chat/completions",
        json={"model": "vllm-echo", "messages": [{"role": "user", "content": "stream-error"}],
              "stream": True},
        headers={"Authorization": f"Bearer {master}"},
    )  # fmt: skip
    assert "upstream_stream_error" in text
    for model in ("gpt-echo", "vllm-echo", "claude-echo"):
        for status in (400, 404, 422, 429, 500, 401):
            r = chat(master, model, f"status:{status}")
            assert r.status_code >= 400, (model, status)

    # Signed requests: right, wrong, stale.
    body = json.dumps({"model": "gpt-echo", "messages": [{"role": "user", "content": "hi"}]})
    now = str(int(time.time()))
    for ts, sig in (
        (now, sign(signed["signing_secret"], now, body.encode())),
        (now, "0" * 64),
        ("1000", sign(signed["signing_secret"], "1000", body.encode())),
    ):
        ask("POST", "/v1/chat/completions", content=body, headers={
            "Authorization": f"Bearer {signed['key']}", "x-ailb-timestamp": ts,
            "x-ailb-signature": sig, "Content-Type": "application/json"})  # fmt: skip

    # Authentication failures of every kind, the provider's own key presented as ours included.
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {master}x"},
        {"Authorization": f"Bearer {plain['key']}x"},
        {"x-api-key": created["signing secret"]},
        {"Authorization": f"Bearer {metrics_token}"},
        {"Authorization": f"Basic {base64.b64encode(master.encode()).decode()}"},
    ):
        assert ask("GET", "/v1/models", headers=headers).status_code == 401
    assert ask("DELETE", f"/api/keys/{signed['id']}", headers=admin).status_code == 200
    assert chat(signed["key"], "gpt-echo", "hi").status_code == 401  # revoked
    assert (
        ask("GET", "/api/keys", headers={"Authorization": f"Bearer {plain['key']}"}).status_code
        == 403
    )

    # Usage, stats, models, reload, and the figures once more after all that.
    time.sleep(1.5)  # probes of the broken deployment, and the usage ledger's flush
    for path in ("/api/usage?group_by=key,model", "/api/routing/stats", "/v1/models"):
        assert ask("GET", path, headers=admin).status_code == 200
    assert ask("POST", "/api/reload", headers=admin).status_code == 200
    health = ask("GET", "/healthz")
    broken = health.json()["providers"]["broken"]  # its probes answer 401, echoing the key
    assert broken["status"] == "down" and "401" in broken["detail"], broken
    assert ask("GET", "/metrics", headers={"Authorization": f"Bearer {metrics_token}"}).is_success
    return created


def straddling(secret: str, limit: int) -> str:
    """A text whose `secret` starts 10 characters before `limit`: cut there before redacting,
    its first 10 characters would survive (and the whole value no longer match)."""
    return "x" * (limit - 10) + secret + " was not accepted"


def test_a_secret_straddling_the_cut_of_an_upstream_error_is_redacted_whole(
    tmp_path: Path,
) -> None:
    """Upstream error texts are cut (message 500 characters, code 100, param 200, an Ollama
    stream error 300) and redacted of the configured credentials: in that order, a credential
    across the cut lost its tail, no longer matched, and its head reached the client and the
    log. Each provider, as an HTTP error and as an error in a stream."""
    keys = {"openai": token("oa-"), "anthropic": token("an-"), "ollama header": token("ol-")}
    oa, an, ol = fake_openai().start(), fake_anthropic().start(), fake_ollama().start()
    ol.models = ["m-ol"]
    oa.script(
        Reply(status=400, error=openai_error(straddling(keys["openai"], 500),
              param=straddling(keys["openai"], 200), code=straddling(keys["openai"], 100))),
        Reply(stream_error=openai_error(straddling(keys["openai"], 500))),
    )  # fmt: skip
    an.script(
        Reply(status=400, error=anthropic_error("invalid_request_error",
                                                straddling(keys["anthropic"], 500))),
        Reply(stream_error=anthropic_error("overloaded_error", straddling(keys["anthropic"], 500))),
    )  # fmt: skip
    ol.script(
        Reply(status=400, error=ollama_error(straddling(keys["ollama header"], 500))),
        Reply(stream_error=ollama_error(straddling(keys["ollama header"], 300))),
    )
    (tmp_path / "ailb.yaml").write_text(
        f"""
deployments:
  - {{name: oa, provider: openai, base_url: '{oa.url}/v1', api_key_env: OA_KEY, models: [m-oa]}}
  - {{name: an, provider: anthropic, base_url: '{an.url}', api_key_env: AN_KEY, models: [m-an]}}
  - name: ol
    provider: ollama
    base_url: '{ol.url}'
    models: [m-ol]
    headers: {{X-Custom-Auth: '{keys["ollama header"]}'}}
"""
    )
    gw = GatewayProcess(
        {
            "AILB_CONFIG": str(tmp_path / "ailb.yaml"),
            "AILB_DATA_DIR": str(tmp_path / "data"),
            "AILB_LOG_LEVEL": "DEBUG",
            "OA_KEY": keys["openai"],
            "AN_KEY": keys["anthropic"],
            "ENABLE_MEMORY": "false",
        },
        tmp_path / "gateway.log",
    ).start()
    ask = Recorder(gw.url)
    try:
        for model in ("m-oa", "m-an", "m-ol"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            assert ask("POST", "/v1/chat/completions", json=body).status_code == 400, model
            text = ask.stream("/v1/chat/completions", json={**body, "stream": True})
            assert '"error"' in text, (model, text)
    finally:
        ask.client.close()
        gw.stop()
        for server in (oa, an, ol):
            server.stop()
    places = [*ask.answers, ("the gateway's log", gw.log())]
    found = [
        f"the head of the {name} key in {where}"
        for name, secret in keys.items()
        for where, place in places
        if secret[:10] in place
    ]
    assert not found, "\n".join(found)
