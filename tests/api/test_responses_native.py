"""`responses: native`: an OpenAI deployment that serves the Responses API itself gets the
client's body as it is (hosted tools and all), and its answer and events reach the client as
they are; admission, routing and usage still apply."""

from __future__ import annotations

import httpx2
import openai
import pytest

from ailb.config import DeploymentConfig
from tests.fakes.server import Reply


def config(url: str, native: bool = True, extra: str = "") -> str:
    return f"""
deployments:
  - name: up
    provider: openai
    base_url: {url}/v1
    api_key_env: UPSTREAM_KEY
    models: [gpt-test]
    responses: {"native" if native else "translate"}
    timeouts: {{connect: 2, first_byte: 2, idle: 2, total: 10}}
{extra}"""


ENV = {"UPSTREAM_KEY": "sk-up"}


def test_passed_through_as_it_is(openai_upstream, gateway_factory, client_for):
    client = client_for(gateway_factory(config(openai_upstream.url), ENV))
    openai_upstream.script(Reply(text="From the upstream's own Responses API.", usage=(8, 6)))
    resp = client.responses.create(
        model="gpt-test",
        input="Search the news.",
        instructions="Be brief.",
        tools=[{"type": "web_search"}],
        previous_response_id="resp_kept_by_openai",
        metadata={"trace": "t1"},
    )
    assert resp.id == "resp_upstream1"  # the upstream's own response, not a translation
    assert resp.output_text == "From the upstream's own Responses API."
    sent = openai_upstream.calls("/v1/responses")[-1]
    assert sent.headers["Authorization"] == "Bearer sk-up"
    assert sent.body["tools"] == [{"type": "web_search"}]
    assert sent.body["previous_response_id"] == "resp_kept_by_openai"
    assert sent.body["instructions"] == "Be brief." and sent.body["input"] == "Search the news."
    assert sent.body["metadata"] == {"trace": "t1"} and sent.body["stream"] is False
    assert not openai_upstream.calls("/v1/chat/completions")


def test_stream_relayed_as_it_is(openai_upstream, gateway_factory, client_for):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    openai_upstream.script(Reply(text="one two three", pieces=3))
    with client.responses.stream(model="gpt-test", input="Count.") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.id == "resp_upstream1" and final.output_text == "one two three"
    assert openai_upstream.calls("/v1/responses")[-1].body["stream"] is True

    # The bytes are the upstream's.
    openai_upstream.script(Reply(text="abc", pieces=1))
    with httpx2.stream(
        "POST", f"{gw.url}/v1/responses", json={"model": "gpt-test", "input": "x", "stream": True}
    ) as r:
        body = r.read().decode()
    assert body.startswith("event: response.created\ndata: {")
    assert '"id":"resp_upstream1"' in body


def test_broken_native_stream_ends_with_response_failed(
    openai_upstream, gateway_factory, client_for
):
    client = client_for(gateway_factory(config(openai_upstream.url), ENV))
    openai_upstream.script(Reply(text="one two three", pieces=3, cut_after=4))
    events = list(client.responses.create(model="gpt-test", input="x", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.id == "resp_upstream1"
    assert events[-1].sequence_number == events[-2].sequence_number + 1
    assert "response.completed" not in [e.type for e in events]


def test_ailb_context_fields_are_refused(openai_upstream, gateway_factory, client_for):
    client = client_for(gateway_factory(config(openai_upstream.url), ENV))
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt-test", input="x", extra_body={"session_id": "s1"})
    assert e.value.body["param"] == "session_id"


def test_a_model_with_a_translating_deployment_is_translated(
    openai_upstream, gateway_factory, client_for
):
    """Native only when every deployment of the model is: failover may pick any of them."""
    extra = f"""
  - name: up2
    provider: openai
    base_url: {openai_upstream.url}/v1
    api_key_env: UPSTREAM_KEY
    models: [gpt-test]
"""
    client = client_for(gateway_factory(config(openai_upstream.url, extra=extra), ENV))
    resp = client.responses.create(model="gpt-test", input="x")
    assert resp.id != "resp_upstream1"
    assert openai_upstream.calls("/v1/chat/completions")
    assert not openai_upstream.calls("/v1/responses")


def test_native_needs_an_openai_deployment():
    with pytest.raises(ValueError, match="native"):
        DeploymentConfig(name="c", provider="anthropic", models=("m",), responses="native")
