"""`ailb keys ...` against the embedded store, seen by a running gateway."""

from __future__ import annotations

import json
import os
import subprocess
import time

import openai
import pytest

from tests.processes import AILB

MASTER = "master-key-for-tests-0123456789"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a]
"""


def keys(data_dir, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env["AILB_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [AILB, "keys", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_keys_work_on_a_running_gateway(tmp_path, gateway_factory, client_for):
    data = tmp_path / "ailb_memory"
    made = keys(data, "create", "--name", "from-cli", "--rpm", "500", "--models", "mock-*")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["key"].startswith("sk-ailb-") and created["rpm_limit"] == 500
    assert created["models"] == ["mock-*"]

    gw = gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER, "AILB_DATA_DIR": str(data)})
    c = client_for(gw, api_key=created["key"])
    r = c.chat.completions.with_raw_response.create(
        model="mock-a", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.headers["x-ratelimit-limit-requests"] == "500"

    listed = keys(data, "list")
    assert listed.returncode == 0
    assert created["id"] in listed.stdout and created["key"] not in listed.stdout

    rotated = json.loads(keys(data, "rotate", created["id"], "--grace", "0").stdout)
    revoked = keys(data, "revoke", created["id"])
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    deadline = time.monotonic() + 1.0
    with pytest.raises(openai.AuthenticationError):
        while time.monotonic() < deadline:
            client_for(gw, api_key=rotated["key"]).chat.completions.create(
                model="mock-a", messages=[{"role": "user", "content": "hi"}]
            )
            time.sleep(0.05)


def test_cli_bad_input_is_a_message_not_a_traceback(tmp_path):
    bad = keys(tmp_path, "create", "--name", "x", "--rpm", "0")
    assert bad.returncode == 1 and "rpm_limit" in bad.stderr and "Traceback" not in bad.stderr
    missing = keys(tmp_path, "revoke", "ffffffffffffffff")
    assert missing.returncode == 1 and "No API key" in missing.stderr
