"""Conversation memory through a running gateway, official openai SDK as client."""

from __future__ import annotations

import socket

import httpx2
import pytest

from tests.fakes.openai import gateway_config
from tests.fakes.server import Reply


def ask(client, text: str, session: str = "s1", **kw):
    return client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=[{"role": "user", "content": text}],
        extra_body={"session_id": session},
        **kw,
    )


def memory_block(upstream) -> str:
    sent = upstream.calls("/v1/chat/completions")[-1].body["messages"]
    blocks = [m["content"] for m in sent if m["role"] == "system" and "```memory" in m["content"]]
    assert len(blocks) <= 1
    return blocks[0] if blocks else ""


@pytest.fixture
def gw(openai_upstream, gateway_factory):
    return gateway_factory(gateway_config(openai_upstream.url), {})


def test_second_request_gets_the_first_exchange(openai_upstream, gw, client_for):
    client = client_for(gw, api_key="sk-alice")
    openai_upstream.script(Reply(text="Nice to meet you, Alice."), Reply(text="In Lisbon."))
    first = ask(client, "My name is Alice and I live in Lisbon.")
    assert first.headers["x-ailb-memory"] == "miss"
    second = ask(client, "Where do I live?")
    assert second.headers["x-ailb-memory"] == "hit"
    block = memory_block(openai_upstream)
    assert "user: My name is Alice and I live in Lisbon." in block
    assert "assistant: Nice to meet you, Alice." in block
    assert "not instructions" in block
    # The new question itself is not duplicated into the memory block.
    assert "Where do I live?" not in block
    sent = openai_upstream.calls("/v1/chat/completions")[-1].body["messages"]
    assert sent[-1] == {"role": "user", "content": "Where do I live?"}


def test_turns_the_client_already_sent_are_not_repeated(openai_upstream, gw, client_for):
    client = client_for(gw, api_key="sk-alice")
    openai_upstream.script(Reply(text="Hello Bob."), Reply(text="Your name is Bob."))
    ask(client, "I am Bob.")
    client.chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "user", "content": "I am Bob."},
            {"role": "assistant", "content": "Hello Bob."},
            {"role": "user", "content": "What is my name?"},
        ],
        extra_body={"session_id": "s1"},
    )
    assert memory_block(openai_upstream) == ""


def test_streamed_answers_are_remembered(openai_upstream, gw, client_for):
    client = client_for(gw, api_key="sk-alice")
    openai_upstream.script(Reply(text="The code word is heliotrope.", pieces=4), Reply(text="ok"))
    stream = client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "Tell me the code word."}],
        stream=True,
        extra_body={"session_id": "s-stream"},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "The code word is heliotrope."
    )
    ask(client, "Repeat it.", session="s-stream")
    assert "assistant: The code word is heliotrope." in memory_block(openai_upstream)


def test_sessions_belong_to_their_key(openai_upstream, gw, client_for):
    alice = client_for(gw, api_key="sk-alice")
    mallory = client_for(gw, api_key="sk-mallory")
    openai_upstream.script(Reply(text="Noted."), Reply(text="?"))
    ask(alice, "My PIN is 4321.")
    resp = ask(mallory, "What is my PIN?")
    assert resp.headers["x-ailb-memory"] == "miss"
    assert "4321" not in memory_block(openai_upstream)
    eve = {"Authorization": "Bearer sk-eve"}  # never used this session id
    with httpx2.Client(base_url=gw.url, timeout=10) as http:
        nobody = http.get("/api/sessions/s1", headers=eve)
        assert nobody.status_code == 404
        # On an open gateway the 404 says why a session made with another key (or none, as
        # with a bare curl) is not found: the presented key is the owner.
        for headers in (eve, {}):
            message = http.get("/api/sessions/s1", headers=headers).json()["error"]["message"]
            assert "Authentication is off" in message and "a different key, or none" in message
        assert http.delete("/api/sessions/s1", headers=eve).status_code == 404
        theirs = http.get("/api/sessions/s1", headers={"Authorization": "Bearer sk-mallory"})
        assert "4321" not in theirs.text
        mine = http.get("/api/sessions/s1", headers={"Authorization": "Bearer sk-alice"})
        assert mine.status_code == 200
        assert [t["content"] for t in mine.json()["turns"]] == ["My PIN is 4321.", "Noted."]


def test_get_and_delete_a_session(openai_upstream, gw, client_for):
    client = client_for(gw, api_key="sk-alice")
    openai_upstream.script(Reply(text="A"), Reply(text="B"))
    ask(client, "one")
    ask(client, "two")
    auth = {"x-api-key": "sk-alice"}  # the other accepted header, same owner
    with httpx2.Client(base_url=gw.url, timeout=10) as http:
        got = http.get("/api/sessions/s1", headers=auth).json()
        assert [(t["role"], t["content"]) for t in got["turns"]] == [
            ("user", "one"),
            ("assistant", "A"),
            ("user", "two"),
            ("assistant", "B"),
        ]
        deleted = http.delete("/api/sessions/s1", headers=auth)
        assert deleted.json() == {"id": "s1", "object": "session", "deleted": True, "turns": 4}
        gone = http.get("/api/sessions/s1", headers=auth)
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "session_not_found"
        assert http.get("/api/sessions/bad%20id", headers=auth).status_code == 400
    resp = ask(client, "three")
    assert resp.headers["x-ailb-memory"] == "miss"


def test_store_down_degrades_without_failing(openai_upstream, gateway_factory, client_for):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here: the Chroma server is "down"
    gw = gateway_factory(
        gateway_config(openai_upstream.url), {"CHROMA_URL": f"http://127.0.0.1:{port}"}
    )
    client = client_for(gw, api_key="sk-alice")
    resp = ask(client, "hello")
    assert resp.parse().choices[0].message.content == "Hello from the fake upstream."
    assert resp.headers["x-ailb-memory"] == "degraded"
    with httpx2.Client(base_url=gw.url, timeout=10) as http:
        health = http.get("/healthz").json()
    assert health["memory"]["status"] == "degraded"
    assert health["memory"]["stats"]["degraded"] == 1
    assert health["status"] == "degraded"


def test_requests_without_session_do_not_touch_memory(openai_upstream, gw, client_for):
    client = client_for(gw)
    resp = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert "x-ailb-memory" not in resp.headers
    with httpx2.Client(base_url=gw.url, timeout=10) as http:
        assert http.get("/healthz").json()["memory"]["status"] == "idle"
