"""`GET /v1/models/{id}` and every OpenAI-style route answered without `/v1` (clients set up
with a base URL that lacks it), through a running gateway, with the openai SDK as client."""

from __future__ import annotations

import httpx2
import openai
import pytest

MASTER = "master-key-for-tests-0123456789"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a, "org/mock-b:latest"]
"""


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER})


def new_key(gw, **fields) -> str:
    r = httpx2.post(
        gw.url + "/api/keys",
        json={"name": "t", **fields},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 200, r.text
    return r.json()["key"]


def test_models_retrieve_answers_one_model_and_404_for_others(gw, client_for):
    admin = client_for(gw, api_key=MASTER)
    m = admin.models.retrieve("org/mock-b:latest")  # a slash and a tag in the id
    assert (m.id, m.object, m.owned_by) == ("org/mock-b:latest", "model", "mock")
    with pytest.raises(openai.NotFoundError) as e:
        admin.models.retrieve("no-such-model")
    assert e.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_a_model_the_key_may_not_use_does_not_exist_for_it(gw, client_for):
    plain = client_for(gw, api_key=new_key(gw, models=["mock-a"]))
    m = plain.models.retrieve("mock-a")
    assert m.owned_by == "ailb" and "deployments" not in m.model_dump()
    with pytest.raises(openai.NotFoundError):
        plain.models.retrieve("org/mock-b:latest")


def test_routes_without_v1_are_the_same_endpoints(gw, client_for):
    """The SDK with a base URL lacking /v1 works as with it, and authentication still applies
    (the alias is rewritten before the key is checked)."""
    client = client_for(gw, api_key=MASTER)
    bare = openai.OpenAI(base_url=gw.url, api_key=MASTER, max_retries=0)
    ask = {"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]}
    assert bare.chat.completions.create(**ask).choices[0].message.content  # type: ignore[call-overload]
    with bare.chat.completions.create(**ask, stream=True) as stream:  # type: ignore[call-overload]
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert [m.id for m in bare.models.list()] == [m.id for m in client.models.list()]
    assert bare.models.retrieve("mock-a").id == "mock-a"
    r = httpx2.post(gw.url + "/chat/completions", json=ask, headers={"x-api-key": "wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx2.get(gw.url + "/models")
    assert r.status_code == 401
    # Only OpenAI's endpoint names are aliased: anything else is still unknown.
    r = httpx2.get(gw.url + "/keys", headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 404
