"""`ailb serve` as a user runs it: a real process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.processes import free_port

AILB = str(Path(sys.executable).with_name("ailb"))


def env_for(tmp_path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {
        **keep,
        "HOST": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
        "GRPC_PORT": "0",  # any free port: never the default one another gateway may hold
        "AILB_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [AILB, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{env['HTTP_PORT']}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{url}/livez", timeout=1).status_code == 200:
                return proc, url
        except httpx2.TransportError:
            time.sleep(0.05)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"did not start: {proc.communicate()[0]}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    return proc.communicate(timeout=20)[0]


def test_invalid_configuration_exits_2_naming_the_field(tmp_path):
    out = subprocess.run(
        [AILB, "serve"],
        env=env_for(tmp_path, HTTP_PORT="99999"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "HTTP_PORT" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_demo_mode_answers_with_the_mock_and_says_so(tmp_path):
    proc, url = start(["serve", "--demo"], env_for(tmp_path))
    try:
        resp = httpx2.post(
            f"{url}/v1/chat/completions",
            json={"model": "mock", "messages": [{"role": "user", "content": "Hello, AILB!"}]},
            timeout=10,
        )
        assert resp.json()["choices"][0]["message"]["content"] == "Hello, AILB!"
        assert httpx2.get(f"{url}/healthz", timeout=5).json()["demo_mode"] is True
    finally:
        logs = stop(proc)
    assert "DEMO MODE" in logs


def test_serve_without_providers_never_answers_with_the_mock(tmp_path):
    proc, url = start(["serve"], env_for(tmp_path))
    try:
        health = httpx2.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 503
        resp = httpx2.post(
            f"{url}/v1/chat/completions",
            json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "model_not_found"
    finally:
        stop(proc)


def test_python_dash_m_ailb_version():
    out = subprocess.run(
        [sys.executable, "-m", "ailb", "--version"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and out.stdout.startswith("ailb ")
