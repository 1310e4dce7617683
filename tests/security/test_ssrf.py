"""SSRF: nothing a client sends can point the gateway at another server. Only the configured
upstream URLs are ever contacted, whatever request fields (base_url, api_base, extra_headers,
model names that are URLs, image URLs ...) or headers (Host, X-Forwarded-Host ...) say, and the
configured URLs and header values are validated when the configuration is loaded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from ailb.config import ConfigError, load_settings, validate_base_url
from tests.fakes.anthropic import fake_anthropic
from tests.fakes.ollama import fake_ollama
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer

ANTHROPIC_KEY = "ant-ssrf-test-key-0123456789"
CLIENT_KEY = "sk-client-ssrf-0123456789"
PATHS = {"m-openai": "/v1/chat/completions", "m-anthropic": "/v1/messages", "m-ollama": "/api/chat"}


@pytest.fixture
def upstreams() -> Iterator[dict[str, FakeServer]]:
    servers = {
        "openai": fake_openai().start(),
        "anthropic": fake_anthropic().start(),
        "ollama": fake_ollama().start(),
        "evil": fake_openai().start(),  # where an attacker would like requests to go
    }
    servers["ollama"].models = ["m-ollama"]
    yield servers
    for s in servers.values():
        s.stop()


@pytest.fixture  # the upstreams first: they stop after the gateway (no half-closed sockets)
def gw(upstreams: dict[str, FakeServer], gateway_factory: Any) -> Any:
    config = f"""
deployments:
  - name: oa
    provider: openai
    base_url: {upstreams["openai"].url}/v1
    models: [m-openai]
  - name: an
    provider: anthropic
    base_url: {upstreams["anthropic"].url}
    api_key_env: ANTHROPIC_SSRF_KEY
    models: [m-anthropic]
  - name: ol
    provider: ollama
    base_url: {upstreams["ollama"].url}
    models: [m-ollama]
"""
    return gateway_factory(config, {"ANTHROPIC_SSRF_KEY": ANTHROPIC_KEY})


def hostile_fields(evil: str) -> dict[str, Any]:
    return {
        "base_url": f"{evil}/v1",
        "api_base": f"{evil}/v1",
        "baseURL": f"{evil}/v1",
        "url": f"{evil}/v1/chat/completions",
        "endpoint": f"{evil}/v1/chat/completions",
        "api_key": "sk-attacker",
        "extra_headers": {"Host": evil.removeprefix("http://"), "X-Forwarded-Host": evil},
        "headers": {"Host": evil.removeprefix("http://")},
        "extra_query": {"redirect": evil},
        "extra_body": {"base_url": f"{evil}/v1"},
        "proxy": evil,
        "user": f"{evil}/user",
        "metadata": {"callback_url": f"{evil}/hook"},
    }


def hostile_headers(evil: str) -> dict[str, str]:
    host = evil.removeprefix("http://")
    return {
        "Authorization": f"Bearer {CLIENT_KEY}",
        "Host": host,
        "X-Forwarded-Host": host,
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Port": host.rsplit(":", 1)[1],
        "X-Forwarded-Prefix": f"{evil}/",
        "Forwarded": f"host={host};proto=http",
        "X-Original-URL": f"{evil}/v1/chat/completions",
        "X-Rewrite-URL": f"{evil}/v1/chat/completions",
        "X-Real-IP": "127.0.0.1",
        "OpenAI-Base-URL": f"{evil}/v1",
    }


@pytest.mark.parametrize("model", sorted(PATHS))
@pytest.mark.parametrize("stream", [False, True])
def test_request_fields_and_headers_cannot_redirect_the_upstream_call(
    gw: Any, upstreams: dict[str, FakeServer], model: str, stream: bool
) -> None:
    evil = upstreams["evil"].url
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"fetch {evil}/secret for me"}],
        "stream": stream,
        **hostile_fields(evil),
    }
    r = httpx2.post(
        f"{gw.url}/v1/chat/completions", json=body, headers=hostile_headers(evil), timeout=20
    )
    target = upstreams[model.removeprefix("m-")]
    if model in ("m-ollama", "m-anthropic"):  # translations refuse fields they do not know
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "unsupported_feature"
        assert upstreams["evil"].requests == []
        assert [x for x in target.requests if x.method == "POST"] == []
        body = {k: v for k, v in body.items() if k in ("model", "messages", "stream", "user")}
        r = httpx2.post(
            f"{gw.url}/v1/chat/completions", json=body, headers=hostile_headers(evil), timeout=20
        )
    assert r.status_code == 200, r.text
    assert upstreams["evil"].requests == []
    (sent,) = [x for x in target.requests if x.method == "POST"]
    assert sent.path == PATHS[model]
    headers = {k.lower(): v for k, v in sent.headers.items()}
    assert headers["host"] == target.url.removeprefix("http://")
    for name in ("x-forwarded-host", "forwarded", "x-original-url", "x-rewrite-url",
                 "openai-base-url", "x-forwarded-prefix"):  # fmt: skip
        assert name not in headers, name
    # The client's own key goes nowhere upstream; the configured one does.
    assert CLIENT_KEY not in str(sent.headers) and "sk-attacker" not in str(sent.headers)
    if model == "m-anthropic":
        assert headers["x-api-key"] == ANTHROPIC_KEY


@pytest.mark.parametrize(
    "model_name",
    ["{evil}/v1", "{evil}", "m-openai@{host}", "{host}/m-openai", "//{host}/v1", "../m-openai",
     "m-openai/../../v1", "m-openai?base_url={evil}", "m-openai#{evil}", "m-openai\r\nHost: {host}",
     "file:///etc/passwd", "M-OPENAI"],
)  # fmt: skip
def test_a_model_name_is_a_name_never_a_place(
    gw: Any, upstreams: dict[str, FakeServer], model_name: str
) -> None:
    evil = upstreams["evil"].url
    model = model_name.format(evil=evil, host=evil.removeprefix("http://"))
    r = httpx2.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text
    assert upstreams["evil"].requests == []
    assert not [x for s in upstreams.values() for x in s.requests if x.method == "POST"]


@pytest.mark.parametrize("model", sorted(PATHS))
def test_image_urls_are_never_fetched_by_the_gateway(
    gw: Any, upstreams: dict[str, FakeServer], model: str
) -> None:
    """An image URL goes to the provider as data (OpenAI, Anthropic fetch it themselves) or is
    refused (Ollama takes only data URLs); the gateway itself never requests it."""
    evil = upstreams["evil"].url
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"{evil}/cat.png"}},
    ]
    r = httpx2.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        timeout=20,
    )
    assert r.status_code in (200, 400), r.text
    assert upstreams["evil"].requests == []


# --- configured URLs and header values, validated at load ---------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://files.internal/v1", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://h:70/_", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("unix:///var/run/docker.sock", "http:// or https://"),
        ("http:///v1", "with a host"),
        ("//h/v1", "http:// or https://"),
        ("http://user:pw@h/v1", "credentials"),
        ("http://user@h/v1", "credentials"),
        ("http://@h/v1", "credentials"),
        ("http://h\\@evil/v1", "credentials"),
        ("http://h/v1?redirect=http://evil", "query or fragment"),
        ("http://h/v1#frag", "query or fragment"),
        ("http://h:99999/v1", "invalid port"),
        ("http://h:port/v1", "invalid port"),
        ("http://h/v1\r\nX-Injected: 1", "control characters"),
        ("http://h/v1\nHost: evil", "control characters"),
        ("http://h/v\t1", "control characters"),
        ("http://h/v1 HTTP/1.1", "spaces"),
        ("http://h\x00.evil/v1", "control characters"),
    ],
)
def test_configured_base_urls_are_validated(url: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base_url") as exc:
        validate_base_url(url)
    assert problem in str(exc.value)
    # The same refusal at start-up, from the environment and from the config file.
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        load_settings({"OPENAI_API_KEY": "sk-test-0123456789", "OPENAI_BASE_URL": url})
    path = tmp_path / "ailb.yaml"
    # JSON strings are YAML double-quoted scalars: their escapes (\r, \u0000 ...) are decoded.
    path.write_text(
        f"deployments:\n  - {{name: d, provider: openai, base_url: {json.dumps(url)}, models: [m]}}"
    )
    with pytest.raises(ConfigError, match="base_url"):
        load_settings({"AILB_CONFIG": str(path)})


@pytest.mark.parametrize(
    "url",
    ["http://h", "https://api.openai.com/v1", "http://10.0.0.7:8000/v1", "http://[::1]:8000/v1",
     "http://127.0.0.1:11434", "https://h/v1/%0d%0a"],
)  # fmt: skip
def test_plain_http_urls_are_accepted(url: str) -> None:
    validate_base_url(url)


@pytest.mark.parametrize("value", ["v\r\nHost: evil", "v\nX-Injected: 1", "v\x00", "v\rx"])
def test_header_values_and_keys_cannot_inject_headers(value: str, tmp_path: Path) -> None:
    """A configured header value or provider key becomes a line of the upstream request: a CR
    or LF in it would add headers of its own."""
    path = tmp_path / "ailb.yaml"
    path.write_text(
        "deployments:\n  - name: d\n    provider: openai\n    base_url: http://h/v1\n"
        f"    models: [m]\n    headers: {{X-Team: {json.dumps(value)}}}\n"
    )
    with pytest.raises(ConfigError, match="control characters"):
        load_settings({"AILB_CONFIG": str(path)})
    with pytest.raises(ConfigError, match="control characters"):
        load_settings({"OPENAI_API_KEY": f"sk-{value}"})
    with pytest.raises(ConfigError, match="control characters"):
        load_settings({"AILB_EMBEDDER": "openai", "AILB_EMBEDDING_API_KEY": f"sk-{value}"})
