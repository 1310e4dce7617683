"""The other ways to reload: POST /api/reload (admin) and SIGHUP to the serving process."""

from __future__ import annotations

import json
import signal
import time

import httpx2

from tests import waiting
from tests.control.client import ControlClient
from tests.processes import GatewayProcess

MASTER = "master-key-for-reload"


def one_deployment(server, models: str = "m") -> str:
    return (
        "deployments:\n"
        f"  - {{name: a, provider: openai, base_url: '{server.url}/v1', models: [{models}]}}\n"
    )


def served(url: str, headers: dict[str, str] | None = None) -> list[str]:
    answer = httpx2.get(f"{url}/v1/models", headers=headers or {}, timeout=10)
    assert answer.status_code == 200, answer.text
    return [m["id"] for m in answer.json()["data"]]


def logged_grpc_port(gateway: GatewayProcess) -> int:
    for line in gateway.log().splitlines():
        if line.startswith("{") and json.loads(line)["event"] == "grpc_listening":
            return int(json.loads(line)["port"])
    raise AssertionError(f"no grpc_listening line:\n{gateway.log()}")


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    return waiting.wait_for(condition, timeout, what, interval=0.05)  # a whole process


def test_post_api_reload_needs_an_admin_key(upstreams, gateway_factory, tmp_path):
    (a,) = upstreams(1)
    gw = gateway_factory(one_deployment(a), env={"AILB_MASTER_KEY": MASTER})
    admin = {"Authorization": f"Bearer {MASTER}"}
    made = httpx2.post(f"{gw.url}/api/keys", json={"name": "user"}, headers=admin, timeout=10)
    user = {"Authorization": f"Bearer {made.json()['key']}"}
    url = f"{gw.url}/api/reload"

    missing = httpx2.post(url, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    refused = httpx2.post(url, headers=user, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_required"

    (tmp_path / "ailb.yaml").write_text(one_deployment(a, "m, m2"))
    done = httpx2.post(url, headers=admin, timeout=10)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["success"] is True and "changed: a" in body["message"]
    assert abs(body["reload_timestamp"] - time.time()) < 5
    assert served(gw.url, admin) == ["m", "m2"]

    (tmp_path / "ailb.yaml").write_text(
        "deployments:\n  - {name: a, provider: openai, weight: x}\n"
    )
    broken = httpx2.post(url, headers=admin, json={"force": True}, timeout=10)
    assert broken.status_code == 422
    assert broken.json()["success"] is False
    assert "deployments[0].weight" in broken.json()["message"]
    assert broken.json()["reload_timestamp"] == body["reload_timestamp"]
    assert served(gw.url, admin) == ["m", "m2"]

    bad_body = httpx2.post(url, headers=admin, json={"force": "yes"}, timeout=10)
    assert bad_body.status_code == 400


def test_post_api_reload_is_refused_on_an_open_gateway(upstreams, gateway_factory):
    (a,) = upstreams(1)
    gw = gateway_factory(one_deployment(a))
    answer = httpx2.post(f"{gw.url}/api/reload", timeout=10)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "auth_disabled"


def test_sighup_reloads_the_serving_process(upstreams, tmp_path):
    (a,) = upstreams(1)
    config = tmp_path / "ailb.yaml"
    config.write_text(one_deployment(a))
    gateway = GatewayProcess(
        {
            "AILB_CONFIG": str(config),
            "AILB_DATA_DIR": str(tmp_path / "data"),
            "ENABLE_MEMORY": "false",
        },
        tmp_path / "gateway.log",
    ).start()
    control = ControlClient(f"127.0.0.1:{logged_grpc_port(gateway)}")  # GRPC_PORT 0: any
    try:
        assert served(gateway.url) == ["m"]
        assert [r.name for r in control.routes().routes] == ["m"]  # gRPC in the real process

        config.write_text(one_deployment(a, "m, m2"))
        gateway.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: served(gateway.url) == ["m", "m2"], what="the reload")
        assert [r.name for r in control.routes().routes] == ["m", "m2"]

        config.write_text("deployments: [\n")
        gateway.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reload_failed" in gateway.log(), what="the failed reload")
        assert gateway.proc.poll() is None
        assert served(gateway.url) == ["m", "m2"]
        answer = httpx2.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "m2", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert answer.status_code == 200
    finally:
        control.close()
        # uvicorn stops gracefully on SIGTERM, then re-raises it: either is a clean stop.
        assert gateway.stop() in (0, -signal.SIGTERM)
    events = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    reloads = [e for e in events if e["event"] in ("config_reloaded", "config_reload_failed")]
    assert [(e["event"], e["source"], e["success"]) for e in reloads] == [
        ("config_reloaded", "sighup", True),
        ("config_reload_failed", "sighup", False),
    ]
    assert "not valid YAML" in reloads[1]["detail"]
