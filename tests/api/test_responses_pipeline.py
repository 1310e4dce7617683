"""The Responses face gets everything the pipeline does for chat: memory, RAG, OpenAI-shaped
errors, an explicit failure for a stream broken after its first byte."""

from __future__ import annotations

import json
import time

import httpx2
import openai
import pytest

from tests.fakes.openai import gateway_config
from tests.fakes.server import Reply
from tests.gateway import create_key
from tests.rag.test_rag_e2e import http, setup_docs


@pytest.fixture
def gw(openai_upstream, gateway_factory):
    return gateway_factory(gateway_config(openai_upstream.url), {"ENABLE_RAG": "true"})


def sent_messages(upstream):
    return upstream.calls("/v1/chat/completions")[-1].body["messages"]


def test_memory_through_metadata_session_id(openai_upstream, gw, client_for):
    client = client_for(gw, api_key="sk-alice")
    openai_upstream.script(Reply(text="Nice to meet you, Alice."), Reply(text="Lisbon."))
    first = client.responses.with_raw_response.create(
        model="gpt-test",
        input="My name is Alice and I live in Lisbon.",
        metadata={"session_id": "s-meta"},
    )
    assert first.headers["x-ailb-memory"] == "miss"
    second = client.responses.with_raw_response.create(
        model="gpt-test", input="Where do I live?", extra_body={"session_id": "s-meta"}
    )
    assert second.headers["x-ailb-memory"] == "hit"
    block = json.dumps(sent_messages(openai_upstream))
    assert "I live in Lisbon." in block and "Nice to meet you, Alice." in block
    body = openai_upstream.calls("/v1/chat/completions")[-1].body
    assert "session_id" not in body and "metadata" not in body


def test_rag_collection_as_extra_fields(openai_upstream, gw, client_for):
    with http(gw) as c:
        setup_docs(c)
    client = client_for(gw, api_key="sk-alice")
    resp = client.responses.with_raw_response.create(
        model="gpt-test",
        input="How often does the lamp rotate?",
        extra_body={"rag_collection": "harbour", "rag_top_k": 1},
    )
    assert resp.headers["x-ailb-rag"] == "hit"
    assert resp.headers["x-ailb-rag-sources"] == "guide.md#0"
    assert "every 7.5 seconds" in json.dumps(sent_messages(openai_upstream))


def test_broken_stream_ends_with_response_failed(openai_upstream, gw, client_for):
    client = client_for(gw)
    openai_upstream.script(Reply(text="one two three four", pieces=4, cut_after=3))
    events = list(client.responses.create(model="gpt-test", input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code == "server_error"
    # The stream helper refuses to hand out a final response.
    openai_upstream.script(Reply(text="one two three four", pieces=4, cut_after=3))
    with (
        client.responses.stream(model="gpt-test", input="Hi") as stream,
        pytest.raises(RuntimeError, match=r"response\.completed"),
    ):
        stream.get_final_response()
    # And a failed response is not stored.
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(events[-1].response.id)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gpt-test", "input": "x", "tools": [{"type": "web_search"}]}, 400,
         "tools[0].type"),
        ({"model": "gpt-test", "input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"model": "gpt-test", "input": "x", "temperature": 9}, 400, "temperature"),
        ({"model": "gpt-test", "input": []}, 400, "input"),
        ({"model": "gpt-test", "input": "x", "previous_response_id": "resp_nope"}, 404,
         "previous_response_id"),
        ({"model": "no-such-model", "input": "x"}, 404, None),
        ({"model": "gpt-test", "input": "x", "background": True}, 400, "background"),
    ],
)  # fmt: skip
def test_errors_are_openai_shaped(gw, body, status, param):
    r = httpx2.post(f"{gw.url}/v1/responses", json=body, timeout=10)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param, error


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"x"', b"\xff\xfe"])
def test_bad_json_is_400(gw, raw):
    r = httpx2.post(
        f"{gw.url}/v1/responses", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"


def test_openapi_document_has_the_operations(gw):
    doc = httpx2.get(f"{gw.url}/openapi.json", timeout=10).json()
    assert "post" in doc["paths"]["/v1/responses"]
    item = doc["paths"]["/v1/responses/{response_id}"]
    assert {"get", "delete"} <= set(item)
    post = doc["paths"]["/v1/responses"]["post"]
    assert "text/event-stream" in post["responses"]["200"]["content"]


def test_keys_own_their_responses_and_their_scopes_apply(
    openai_upstream, gateway_factory, client_for
):
    master = "sk-master-0123456789abcdef"
    gw = gateway_factory(gateway_config(openai_upstream.url), {"AILB_MASTER_KEY": master})
    alice = client_for(gw, api_key=create_key(gw.url, master, "alice")["key"])
    bob = client_for(gw, api_key=create_key(gw.url, master, "bob")["key"])
    narrow = client_for(gw, api_key=create_key(gw.url, master, "n", models=["other-*"])["key"])
    first = alice.responses.create(model="gpt-test", input="Hi")
    assert alice.responses.retrieve(first.id).id == first.id
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="gpt-test", input="x", previous_response_id=first.id)
    with pytest.raises(openai.PermissionDeniedError):
        narrow.responses.create(model="gpt-test", input="Hi")
    with pytest.raises(openai.AuthenticationError):
        client_for(gw, api_key="sk-wrong").responses.retrieve(first.id)


def test_instances_sharing_postgresql_share_stored_responses(
    openai_upstream, gateway_factory, client_for, postgres_dsn, pg_schema, tmp_path
):
    env = {"DATABASE_URL": postgres_dsn, "AILB_DATABASE_SCHEMA": pg_schema}
    one = client_for(gateway_factory(gateway_config(openai_upstream.url), env))
    two = client_for(
        gateway_factory(
            gateway_config(openai_upstream.url), {**env, "AILB_DATA_DIR": str(tmp_path / "two")}
        )
    )
    openai_upstream.script(Reply(text="Remember: 42."))
    first = one.responses.create(model="gpt-test", input="Pick a number.")
    deadline = time.monotonic() + 5  # written behind the answer: milliseconds later
    while True:
        try:
            got = two.responses.retrieve(first.id)
            break
        except openai.NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    assert got.output_text == "Remember: 42."
    two.responses.create(model="gpt-test", input="Which?", previous_response_id=first.id)
    assert "Remember: 42." in json.dumps(sent_messages(openai_upstream))
    two.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        one.responses.retrieve(first.id)
