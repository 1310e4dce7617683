"""Upstream calls through a real forward proxy (proxy.py from PyPI, on 127.0.0.1), counting
what it carried: absolute-form requests for http upstreams, a CONNECT tunnel (TLS to the
upstream inside, verified by its name against a private CA) for https ones; NO_PROXY, the
per-deployment `proxy:`, a proxy that is down, and proxy credentials that never reach a log."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from ailb.config import load_settings
from ailb.embeddings import build_embedder
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply
from tests.gateway import RunningGateway
from tests.upstream.harness import ForwardProxy, free_port, make_ca

GatewayFactory = Callable[..., RunningGateway]
ClientFor = Callable[..., openai.OpenAI]
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Hi"}]
USER, PASSWORD = "egress-user", "pr0xy-Secret-9f8e7d6c"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("egress")


@pytest.fixture(scope="module")
def proxy(workdir: Path) -> Iterator[ForwardProxy]:
    p = ForwardProxy(workdir)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def auth_proxy(workdir: Path) -> Iterator[ForwardProxy]:
    p = ForwardProxy(workdir, basic_auth=f"{USER}:{PASSWORD}")
    yield p
    p.stop()


@pytest.fixture(scope="module")
def ca(workdir: Path) -> tuple[Path, object]:
    return make_ca(workdir)


@pytest.fixture
def plain() -> Iterator[FakeServer]:
    server = fake_openai().start()
    server.default = Reply(text="via plain http")
    yield server
    server.stop()


@pytest.fixture
def tls(ca: tuple[Path, object]) -> Iterator[FakeServer]:
    server = fake_openai()
    server.ssl_context = ca[1]  # type: ignore[assignment]
    server.start()
    server.default = Reply(text="via https")
    yield server
    server.stop()


def deployment(name: str, url: str, extra: str = "") -> str:
    return (
        f"  - {{name: {name}, provider: openai, base_url: '{url}/v1', models: [{name}], "
        f"timeouts: {{connect: 2, first_byte: 5, idle: 5, total: 10}}{extra}}}\n"
    )


def config(*deployments: str) -> str:
    return "deployments:\n" + "".join(deployments)


def ask(client: openai.OpenAI, model: str, stream: bool = False) -> str:
    if not stream:
        content = client.chat.completions.create(model=model, messages=MESSAGES).choices[0]  # type: ignore[arg-type]
        return content.message.content or ""
    chunks = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every log line with its structured fields (the upstream failure's `detail` ...)."""
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def chat_lines(p: ForwardProxy, server: FakeServer) -> list[str]:
    return [line for line in p.carried() if f":{server.port}" in line]


def test_http_upstream_goes_through_the_proxy_in_absolute_form(
    proxy: ForwardProxy,
    plain: FakeServer,
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    gw = gateway_factory(config(deployment("m", plain.url)), {"HTTP_PROXY": proxy.url})
    client = client_for(gw)
    assert ask(client, "m") == "via plain http"
    assert ask(client, "m", stream=True) == "via plain http"
    calls = len(plain.calls(CHAT))
    assert calls == 2
    carried = chat_lines(proxy, plain)
    # Every chat request, as a request line naming the origin (the proxy parsed it as such).
    assert carried.count(f"POST 127.0.0.1:{plain.port} /v1/chat/completions") == calls
    # The Host header is the origin's, as for a direct call.
    assert plain.calls(CHAT)[0].headers["Host"] == f"127.0.0.1:{plain.port}"


def test_https_upstream_goes_through_a_connect_tunnel_verified_by_name(
    proxy: ForwardProxy,
    tls: FakeServer,
    ca: tuple[Path, object],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    gw = gateway_factory(
        config(deployment("m", tls.url, f", ca_file: '{ca[0]}'")),
        {"HTTPS_PROXY": proxy.url},
    )
    client = client_for(gw)
    for _ in range(3):
        assert ask(client, "m") == "via https"
    assert ask(client, "m", stream=True) == "via https"
    assert len(tls.calls(CHAT)) == 4
    tunnels = chat_lines(proxy, tls)
    # Kept-alive tunnels: at least one CONNECT, never one per request, nothing in clear text.
    assert tunnels and all(line == f"CONNECT localhost:{tls.port}" for line in tunnels)
    assert len(tunnels) <= 2  # the health probe's and the chat's connection may differ


def test_https_upstream_with_an_untrusted_certificate_is_refused(
    proxy: ForwardProxy,
    tls: FakeServer,
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = gateway_factory(config(deployment("m", tls.url)), {"HTTPS_PROXY": proxy.url})
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(gw), "m")
    assert (info.value.status_code, info.value.code) == (502, "upstream_error")
    assert tls.calls(CHAT) == []
    assert "CERTIFICATE_VERIFY_FAILED" in logged(caplog)


def test_no_proxy_sends_matching_hosts_direct(
    proxy: ForwardProxy,
    plain: FakeServer,
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    before = len(proxy.carried())
    gw = gateway_factory(
        config(deployment("m", plain.url)),
        {"HTTP_PROXY": proxy.url, "NO_PROXY": "example.com, 127.0.0.0/8"},
    )
    assert ask(client_for(gw), "m") == "via plain http"
    assert len(plain.calls(CHAT)) == 1
    assert chat_lines(proxy, plain) == [] and len(proxy.carried()) == before


def test_a_deployment_proxy_overrides_the_environment(
    proxy: ForwardProxy,
    plain: FakeServer,
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = gateway_factory(
        config(
            deployment("proxied", plain.url, f", proxy: '{proxy.url}'"),
            deployment("direct", plain.url, ", proxy: none"),
        ),
        {"HTTP_PROXY": dead},  # would break both, were it used
    )
    client = client_for(gw)
    assert ask(client, "proxied") == "via plain http"
    assert ask(client, "direct") == "via plain http"
    assert len(plain.calls(CHAT)) == 2
    assert len([line for line in chat_lines(proxy, plain) if "/chat/" in line]) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_proxy_that_is_down_is_a_clear_upstream_error(
    plain: FakeServer,
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gw = gateway_factory(config(deployment("m", plain.url)), {"HTTP_PROXY": dead})
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(gw), "m", stream)
    assert (info.value.status_code, info.value.code) == (502, "upstream_error")
    assert info.value.response.json()["error"]["type"]  # an OpenAI error object
    assert plain.calls(CHAT) == []
    assert f"cannot connect to proxy 127.0.0.1:{dead.rsplit(':', 1)[1]}" in logged(caplog)


def test_proxy_credentials_are_sent_and_never_logged(
    auth_proxy: ForwardProxy,
    plain: FakeServer,
    tls: FakeServer,
    ca: tuple[Path, object],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with_auth = auth_proxy.url.replace("http://", f"http://{USER}:{PASSWORD}@")
    wrong = auth_proxy.url.replace("http://", f"http://{USER}:not-{PASSWORD}@")
    gw = gateway_factory(
        config(
            deployment("plain", plain.url),
            deployment("tls", tls.url, f", ca_file: '{ca[0]}'"),
            deployment("refused", plain.url, f", proxy: '{wrong}'"),
            deployment("refused-tls", tls.url, f", proxy: '{wrong}', ca_file: '{ca[0]}'"),
        ),
        {"HTTP_PROXY": with_auth, "HTTPS_PROXY": with_auth},
    )
    client = client_for(gw)
    assert ask(client, "plain") == "via plain http"
    assert ask(client, "tls", stream=True) == "via https"
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "refused")  # proxy.py answers 407: the gateway's problem, not the client's
    assert info.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as refused_tunnel:
        ask(client, "refused-tls")
    assert refused_tunnel.value.status_code == 502
    assert f"proxy 127.0.0.1:{auth_proxy.port} refused the tunnel: HTTP 407" in logged(caplog)
    assert len(plain.calls(CHAT)) == 1 and len(tls.calls(CHAT)) == 1
    # Inside a tunnel the proxy cannot add or strip anything: the upstream sees no credentials.
    assert all("Proxy-Authorization" not in r.headers for r in tls.requests)
    assert "upstream answered HTTP 407" in logged(caplog)  # plain http: a status, no tunnel
    stats = httpx2.get(f"{gw.url}/api/routing/stats").text
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for text in (logged(caplog), stats, info.value.response.text):
        assert PASSWORD not in text and token not in text


def test_the_provider_embedder_goes_through_the_proxy_too(
    proxy: ForwardProxy, plain: FakeServer, tmp_path: Path
) -> None:
    env = {
        "AILB_EMBEDDER": "openai",
        "AILB_EMBEDDING_BASE_URL": f"{plain.url}/v1",
        "AILB_EMBEDDING_API_KEY": "emb-key-0123456789abcdef",
        "HTTP_PROXY": proxy.url,
        "AILB_DATA_DIR": str(tmp_path),
    }
    settings = load_settings(env)
    assert settings.embedder_proxy == proxy.url
    assert load_settings({**env, "NO_PROXY": "127.0.0.1"}).embedder_proxy is None
    embedder = build_embedder(settings.env, settings.credentials, settings.embedder_proxy)

    async def embed() -> int:
        try:
            return len(await embedder.embed(["through the proxy"]))
        finally:
            await embedder.close()

    assert asyncio.run(embed()) == 1
    assert chat_lines(proxy, plain) == [f"POST 127.0.0.1:{plain.port} /v1/embeddings"]
