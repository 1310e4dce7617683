"""POST /v1/completions (the legacy prompt API) end to end, with the official openai SDK:
passed through to an OpenAI-format deployment, translated for Anthropic and Ollama ones."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import pytest

from tests.fakes.anthropic import fake_anthropic
from tests.fakes.ollama import fake_ollama
from tests.fakes.server import FakeServer, Reply

TIMEOUTS = "{connect: 2, first_byte: 2, idle: 2, total: 10}"
ENV = {"UPSTREAM_KEY": "sk-upstream-123456"}


def deployment(name: str, provider: str, url: str, model: str = "m") -> str:
    base = {"openai": f"{url}/v1", "anthropic": url, "ollama": url}[provider]
    key = "" if provider == "ollama" else "    api_key_env: UPSTREAM_KEY\n"
    return (
        f"  - name: {name}\n    provider: {provider}\n    base_url: {base}\n{key}"
        f"    models: [{model}]\n    timeouts: {TIMEOUTS}\n"
    )


@pytest.fixture
def anthropic_upstream() -> Iterator[FakeServer]:
    server = fake_anthropic().start()
    yield server
    server.stop()


@pytest.fixture
def ollama_upstream() -> Iterator[FakeServer]:
    server = fake_ollama().start()
    yield server
    server.stop()


def test_openai_format_deployments_get_the_request_as_it_is(
    openai_upstream, gateway_factory, client_for
):
    openai_upstream.script(*[Reply(text=" there", usage=(5, 2))] * 2)
    gw = gateway_factory("deployments:\n" + deployment("up", "openai", openai_upstream.url), ENV)
    client = client_for(gw)
    resp = client.completions.create(
        model="m", prompt=["Hello", "Bye"], echo=True, logprobs=1, suffix="!", n=2
    )
    sent = openai_upstream.calls("/v1/completions")[-1].body
    assert sent["prompt"] == ["Hello", "Bye"] and sent["echo"] is True and sent["suffix"] == "!"
    assert sent["max_tokens"] == 16  # OpenAI's default for this API, made explicit
    assert [c.text for c in resp.choices] == [
        "Hello there",
        "Hello there",
        "Bye there",
        "Bye there",
    ]
    assert resp.choices[0].logprobs is not None and resp.object == "text_completion"
    assert resp.usage is not None and resp.usage.total_tokens == 7
    stream = client.completions.create(
        model="m", prompt="Hi", max_tokens=9, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " there"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
    sent = openai_upstream.calls("/v1/completions")[-1].body
    assert sent["max_tokens"] == 9 and sent["stream"] is True


@pytest.mark.parametrize("provider", ["anthropic", "ollama"])
def test_other_deployments_get_the_prompt_as_a_user_message(
    provider, anthropic_upstream, ollama_upstream, gateway_factory, client_for
):
    upstream = {"anthropic": anthropic_upstream, "ollama": ollama_upstream}[provider]
    path = {"anthropic": "/v1/messages", "ollama": "/api/chat"}[provider]
    upstream.script(Reply(text="Bonjour!", usage=(4, 3)), Reply(text="Bonjour!", usage=(4, 3)))
    gw = gateway_factory("deployments:\n" + deployment("up", provider, upstream.url), ENV)
    client = client_for(gw)
    resp = client.completions.create(model="m", prompt="Say hi in French", temperature=0)
    assert resp.object == "text_completion" and resp.id.startswith("cmpl")
    assert resp.choices[0].text == "Bonjour!" and resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 4
    sent = upstream.calls(path)[-1].body
    assert sent["messages"][-1]["role"] == "user"
    assert "Say hi in French" in str(sent["messages"][-1]["content"])
    limit = sent["max_tokens"] if provider == "anthropic" else sent["options"]["num_predict"]
    assert limit == 16
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(model="m", prompt="Say hi", stream=True)
        if c.choices
    )
    assert text == "Bonjour!"


def test_what_a_translation_cannot_express_is_refused_or_served_elsewhere(
    openai_upstream, anthropic_upstream, gateway_factory, client_for
):
    """`echo` cannot be translated: a model only Anthropic serves refuses it by name; one an
    OpenAI-format deployment also serves is answered there."""
    only = gateway_factory(
        "deployments:\n" + deployment("c", "anthropic", anthropic_upstream.url), ENV
    )
    with pytest.raises(openai.BadRequestError) as e:
        client_for(only).completions.create(model="m", prompt="x", echo=True)
    assert e.value.body["param"] == "echo"  # type: ignore[index]
    assert e.value.body["code"] == "unsupported_feature"  # type: ignore[index]
    both = gateway_factory(
        "deployments:\n"
        + deployment("c", "anthropic", anthropic_upstream.url)
        + deployment("o", "openai", openai_upstream.url),
        ENV,
    )
    openai_upstream.script(*[Reply(text=" ok")] * 4)
    for _ in range(4):  # whichever the router tries first, the answer comes from OpenAI's
        resp = client_for(both).completions.create(model="m", prompt="x", echo=True)
        assert resp.choices[0].text == "x ok"


def test_bad_requests_are_openai_errors(openai_upstream, gateway_factory):
    gw = gateway_factory("deployments:\n" + deployment("up", "openai", openai_upstream.url), ENV)
    url = gw.url + "/v1/completions"
    for body, param in (
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": [1, "a"]}, "prompt"),
        ({"model": "m", "prompt": "x", "max_tokens": -1}, "max_tokens"),
        ({"model": "m", "prompt": "x", "session_id": "s"}, "session_id"),
    ):
        r = httpx2.post(url, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param
    r = httpx2.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    # Without /v1 too, for clients whose base URL lacks it.
    r = httpx2.post(gw.url + "/completions", json={"model": "m", "prompt": "x"})
    assert r.status_code == 200 and r.json()["object"] == "text_completion"
