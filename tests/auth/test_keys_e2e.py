"""Keys, scopes, rotation, revocation and signing through a running gateway (embedded store)."""

from __future__ import annotations

import json
import logging
import time

import httpx2
import openai
import pytest

from ailb.auth.authenticator import sign

MASTER = "master-key-for-tests-0123456789"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a, mock-b]
"""


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER})


def admin(gw, method: str, path: str, body=None, key: str = MASTER) -> httpx2.Response:
    return httpx2.request(
        method,
        gw.url + path,
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def create(gw, **fields) -> dict:
    r = admin(gw, "POST", "/api/keys", {"name": "test", **fields})
    assert r.status_code == 200, r.text
    return r.json()


def ask(client, model: str = "mock-a"):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def test_open_gateway_says_so(gateway_factory, client_for):
    gw = gateway_factory(CONFIG, {})
    health = httpx2.get(gw.url + "/healthz").json()
    assert health["accounts"]["auth"] == "disabled"
    assert "authentication is off" in health["accounts"]["warning"]
    assert ask(client_for(gw, api_key="anything")).choices[0].message.content
    r = admin(gw, "GET", "/api/keys")
    assert r.status_code == 403 and r.json()["error"]["code"] == "auth_disabled"


def test_missing_and_wrong_keys_are_401(gw, client_for):
    assert httpx2.get(gw.url + "/healthz").json()["accounts"]["auth"] == "enabled"
    r = httpx2.post(gw.url + "/v1/chat/completions", json={"model": "mock-a", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    for bad in ("nope", "sk-ailb-0123456789abcdef-" + "x" * 43, MASTER + "x"):
        with pytest.raises(openai.AuthenticationError) as e:
            ask(client_for(gw, api_key=bad))
        assert e.value.status_code == 401
    r = httpx2.get(gw.url + "/v1/models", headers={"x-api-key": "wrong"})
    assert r.status_code == 401
    # /healthz and /livez stay open for load balancers
    assert httpx2.get(gw.url + "/livez").status_code == 200


def test_master_key_and_created_keys_work_both_header_styles(gw, client_for):
    assert ask(client_for(gw, api_key=MASTER)).choices
    made = create(gw, rpm_limit=100)
    secret = made["key"]
    assert secret.startswith("sk-ailb-" + made["id"] + "-")
    assert ask(client_for(gw, api_key=secret)).choices
    r = httpx2.get(gw.url + "/v1/models", headers={"x-api-key": secret})
    assert r.status_code == 200


def test_key_listing_never_shows_a_secret_or_hash(gw):
    made = create(gw, models=["mock-a"], scopes=["collection:docs"])
    listed = admin(gw, "GET", "/api/keys").json()["data"]
    one = admin(gw, "GET", f"/api/keys/{made['id']}").json()
    text = json.dumps(listed) + json.dumps(one)
    assert made["key"] not in text
    assert made["key"][30:] not in text
    assert '"hash"' not in text and "signing_secret" not in text
    assert one["models"] == ["mock-a"] and one["scopes"] == ["collection:docs"]
    assert one["status"] == "active" and made["key"].startswith(one["prefix"].rstrip("…"))
    assert admin(gw, "GET", "/api/keys/ffffffffffffffff").status_code == 404


def test_non_admin_keys_cannot_manage_keys(gw):
    plain = create(gw)["key"]
    r = admin(gw, "POST", "/api/keys", {"name": "x"}, key=plain)
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    boss = create(gw, scopes=["admin"])["key"]
    assert admin(gw, "POST", "/api/keys", {"name": "x"}, key=boss).status_code == 200


def test_bad_key_requests_are_400(gw):
    for body in (
        {"name": ""},
        {"name": "x", "rpm_limit": 0},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "budget_period": "week"},
        {"name": "x", "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "x", "expires_at": "tomorrow"},
        {"name": "x", "surprise": 1},
    ):
        r = admin(gw, "POST", "/api/keys", body)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_model_scope_is_403(gw, client_for):
    c = client_for(gw, api_key=create(gw, models=["mock-a"])["key"])
    assert ask(c, "mock-a").choices
    assert [m.id for m in c.models.list()] == ["mock-a"]  # it sees only what it may use
    assert {m.id for m in client_for(gw, api_key=MASTER).models.list()} == {"mock-a", "mock-b"}
    with pytest.raises(openai.PermissionDeniedError) as e:
        ask(c, "mock-b")
    assert e.value.body["code"] == "model_not_allowed"


def test_collection_scope_is_403(gw, client_for):
    c = client_for(gw, api_key=create(gw, scopes=["collection:docs*"])["key"])
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(
            model="mock-a",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"rag_collection": "secret"},
        )
    assert e.value.body["code"] == "collection_not_allowed"


def test_rotation_keeps_the_old_secret_for_the_grace_period(gw, client_for):
    made = create(gw)
    old = made["key"]
    r = admin(gw, "POST", f"/api/keys/{made['id']}/rotate", {"grace_seconds": 60})
    assert r.status_code == 200
    new = r.json()["key"]
    assert new != old and r.json()["previous_key_valid_until"] > time.time()
    assert ask(client_for(gw, api_key=new)).choices
    assert ask(client_for(gw, api_key=old)).choices
    r = admin(gw, "POST", f"/api/keys/{made['id']}/rotate", {"grace_seconds": 0})
    newer = r.json()["key"]
    assert ask(client_for(gw, api_key=newer)).choices
    for stale in (old, new):
        with pytest.raises(openai.AuthenticationError):
            ask(client_for(gw, api_key=stale))


def test_rotation_keeps_the_keys_sessions(gw, client_for):
    made = create(gw)
    c = client_for(gw, api_key=made["key"])
    c.chat.completions.create(
        model="mock-a",
        messages=[{"role": "user", "content": "remember the blue door"}],
        extra_body={"session_id": "s1"},
    )
    new = admin(gw, "POST", f"/api/keys/{made['id']}/rotate", {}).json()["key"]
    deadline = time.time() + 10
    while True:  # the memory write happens after the answer
        r = httpx2.get(gw.url + "/api/sessions/s1", headers={"authorization": f"Bearer {new}"})
        if r.status_code == 200 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 200, r.text
    assert "blue door" in r.json()["turns"][0]["content"]
    other = create(gw)["key"]
    r = httpx2.get(gw.url + "/api/sessions/s1", headers={"authorization": f"Bearer {other}"})
    assert r.status_code == 404


def test_revocation_is_immediate(gw, client_for):
    made = create(gw)
    c = client_for(gw, api_key=made["key"])
    assert ask(c).choices
    r = admin(gw, "DELETE", f"/api/keys/{made['id']}")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as e:
        ask(c)
    assert e.value.body["code"] == "revoked_api_key"
    r = admin(gw, "POST", f"/api/keys/{made['id']}/rotate", {})
    assert r.status_code == 400


def test_expiry(gw, client_for):
    made = create(gw, expires_at=time.time() + 1.5)
    c = client_for(gw, api_key=made["key"])
    assert ask(c).choices
    time.sleep(1.6)
    with pytest.raises(openai.AuthenticationError) as e:
        ask(c)
    assert e.value.body["code"] == "expired_api_key"


def test_signed_keys_need_a_fresh_valid_signature(gw):
    made = create(gw, signed=True)
    secret, signing = made["key"], made["signing_secret"]
    assert signing and not admin(gw, "GET", f"/api/keys/{made['id']}").json().get("signing_secret")
    body = json.dumps({"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]})

    def post(headers):
        return httpx2.post(
            gw.url + "/v1/chat/completions",
            content=body,
            headers={"authorization": f"Bearer {secret}", **headers},
        )

    now = str(int(time.time()))
    assert post({}).json()["error"]["code"] == "signature_required"
    ok = post({"x-ailb-timestamp": now, "x-ailb-signature": sign(signing, now, body.encode())})
    assert ok.status_code == 200, ok.text
    prefixed = "sha256=" + sign(signing, now, body.encode())
    assert post({"x-ailb-timestamp": now, "x-ailb-signature": prefixed}).status_code == 200
    tampered = sign(signing, now, body.encode() + b" ")
    r = post({"x-ailb-timestamp": now, "x-ailb-signature": tampered})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"
    old = str(int(time.time()) - 600)
    r = post({"x-ailb-timestamp": old, "x-ailb-signature": sign(signing, old, body.encode())})
    assert r.status_code == 401 and r.json()["error"]["code"] == "signature_expired"


def test_what_a_signature_does_not_cover_is_what_the_readme_says(gw):
    """README, Signed requests: no nonce, so a captured request is accepted again within the
    window; and the method and path are not signed, so an empty body's signature serves every
    body-less request of the key. If either changes, the README must change with it."""
    made = create(gw, signed=True)
    now = str(int(time.time()))
    headers = {
        "authorization": f"Bearer {made['key']}",
        "x-ailb-timestamp": now,
        "x-ailb-signature": sign(made["signing_secret"], now, b""),
    }
    for _ in range(2):  # the same request twice
        assert httpx2.get(gw.url + "/v1/models", headers=headers).status_code == 200
    assert httpx2.get(gw.url + "/api/usage", headers=headers).status_code == 200


def test_audit_log_names_key_ids_never_keys(gw, caplog):
    made = create(gw)
    caplog.set_level(logging.INFO, logger="ailb.audit")
    bad = made["key"][:-4] + "AAAA"
    httpx2.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {bad}"})
    admin(gw, "DELETE", f"/api/keys/{made['id']}")
    events = [(r.getMessage(), r.__dict__) for r in caplog.records if r.name == "ailb.audit"]
    failed = [d for m, d in events if m == "auth_failed"]
    assert failed and failed[0]["key_id"] == made["id"] and failed[0]["reason"] == "unknown_key"
    revoked = [d for m, d in events if m == "key_revoked"]
    assert revoked and revoked[0]["actor"] == "master" and revoked[0]["key_id"] == made["id"]
    text = caplog.text + repr([d for _, d in events])
    assert made["key"] not in text and bad not in text and MASTER not in text


def test_collection_scope_covers_the_collections_api(gateway_factory):
    gw = gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER, "ENABLE_RAG": "true"})
    key = create(gw, scopes=["collection:docs*"])["key"]

    def call(method, path, body=None):
        return admin(gw, method, path, body, key=key)

    r = call("POST", "/api/rag/collections", {"name": "secret"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "collection_not_allowed"
    assert call("GET", "/api/rag/collections/secret").status_code == 403
    assert call("POST", "/api/rag/collections/secret/query", {"query": "x"}).status_code == 403
    assert call("POST", "/api/rag/collections", {"name": "docs-a"}).status_code == 200
    # the master key's own collection is not listed for a key that may not use it
    assert admin(gw, "POST", "/api/rag/collections", {"name": "other", "shared": True}).is_success
    names = [c["name"] for c in call("GET", "/api/rag/collections").json()["data"]]
    assert names == ["docs-a"]
    # A pattern matches the name as the request gives it: `docs*` is the key's own docs-...
    # collections, not another owner's shared `docs-x` (that would take `master/docs-x`).
    assert admin(gw, "POST", "/api/rag/collections", {"name": "docs-x", "shared": True}).is_success
    r = call("GET", "/api/rag/collections/docs-x?owner=master")
    assert r.status_code == 403 and r.json()["error"]["code"] == "collection_not_allowed"
    names = [c["id"] for c in call("GET", "/api/rag/collections").json()["data"]]
    assert names == [f"{key.split('-')[2]}/docs-a"]
    wide = create(gw, scopes=["collection:docs*", "collection:master/docs-*"])["key"]
    r = admin(gw, "GET", "/api/rag/collections/docs-x?owner=master", key=wide)
    assert r.status_code == 200 and r.json()["owner"] == "master"
