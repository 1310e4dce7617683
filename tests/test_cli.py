"""The `ailb` command as users run it: the installed console script in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from ailb import __version__
from tests.processes import free_port

BIN = Path(sys.executable).parent
AILB = str(BIN / "ailb")


def clean_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """Only what the test sets: the caller's own OPENAI_API_KEY etc. must not leak in."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "AILB_DATA_DIR": str(tmp_path / "ailb_memory"),
        **env,
    }


class ServeProcess:
    """`ailb serve ...` in a child process, stderr captured to a file (a pipe could fill up)."""

    def __init__(self, args: list[str], env: dict[str, str], tmp_path: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._err_path = tmp_path / f"ailb-{port}.stderr"
        self._out_path = tmp_path / f"ailb-{port}.stdout"
        with open(self._err_path, "wb") as err, open(self._out_path, "wb") as out:
            self.proc = subprocess.Popen([AILB, *args], env=env, stdout=out, stderr=err)

    def wait_ready(self, timeout: float = 15.0) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ailb exited with {self.proc.returncode}: {self.stderr()}")
            try:
                if httpx2.get(f"{self.url}/livez", timeout=1).status_code == 200:
                    return self
            except httpx2.TransportError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"ailb did not answer in {timeout} s: {self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def stderr(self) -> str:
        return self._err_path.read_text()

    def stdout(self) -> str:
        return self._out_path.read_text()

    def log_lines(self) -> list[dict[str, Any]]:
        """Every stderr line, each of which must be one JSON object."""
        lines = self.stderr().splitlines()
        objects = [json.loads(line) for line in lines]
        assert all(isinstance(o, dict) for o in objects)
        return objects

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=10)


# SIGTERM: uvicorn shuts down gracefully, then re-raises the signal, so either is a clean stop.
CLEAN_STOP = {0, -signal.SIGTERM}


# --- version and configuration errors ---------------------------------------------------------


@pytest.mark.parametrize("argv", [[sys.executable, "-m", "ailb", "--version"], [AILB, "--version"]])
def test_version(argv: list[str], tmp_path: Path) -> None:
    done = subprocess.run(argv, env=clean_env(tmp_path), capture_output=True, timeout=30)
    assert (done.returncode, done.stdout.decode(), done.stderr) == (0, f"ailb {__version__}\n", b"")


@pytest.mark.parametrize(
    "argv", [["serve"], ["serve", "--demo"], []], ids=["serve", "demo", "none"]
)
@pytest.mark.parametrize(
    ("env", "config", "message"),
    [
        ({"HTTP_PORT": "70000"}, None, "HTTP_PORT: Expected `int` <= 65535"),
        ({"ROUTING_STRATEGY": "fastest"}, None, "ROUTING_STRATEGY: Invalid enum value 'fastest'"),
        (
            {},
            "deployments:\n  - {name: a, provider: mock}\n"
            "  - {name: b, provider: mock, weight: -1}\n",
            "AILB_CONFIG {path}: deployments[1].weight: Expected `int` >= 0",
        ),
        (
            {},
            "deployments:\n  - {name: a, provider: openai, api_key_env: UNSET_KEY_VAR}\n",
            "deployment 'a': api_key_env: environment variable UNSET_KEY_VAR is not set",
        ),
        (
            {"AILB_CONFIG": "/nonexistent/ailb.yaml"},
            None,
            "AILB_CONFIG: cannot read /nonexistent/ailb.yaml: No such file or directory",
        ),
    ],
    ids=["port", "strategy", "weight", "api_key_env", "missing_file"],
)
def test_invalid_configuration_exits_2_naming_the_field(
    tmp_path: Path, argv: list[str], env: dict[str, str], config: str | None, message: str
) -> None:
    path = tmp_path / "ailb.yaml"
    if config is not None:
        path.write_text(config)
        env = {**env, "AILB_CONFIG": str(path)}
    done = subprocess.run(
        [AILB, *argv], env=clean_env(tmp_path, **env), capture_output=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stdout == b""
    expected = message.format(path=path)
    assert done.stderr.decode() == f"ailb: configuration error: {expected}\n"


# --- serving ------------------------------------------------------------------------------------


def test_serve_demo_without_providers_serves_the_mock_model(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, HOST="127.0.0.1", HTTP_PORT=str(port), GRPC_PORT="0")
    server = ServeProcess(["serve", "--demo"], env, tmp_path, port)
    try:
        server.wait_ready()
        with server.client() as client:
            reply = client.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": "Hello, AILB!"}]
            )
            streamed = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model="mock",
                    messages=[{"role": "user", "content": "Stream this, please"}],
                    stream=True,
                )
                if c.choices
            )
        health = httpx2.get(f"{server.url}/healthz")
    finally:
        code = server.stop()
    assert reply.choices[0].message.content == "Hello, AILB!"
    assert reply.model == "mock"
    assert streamed == "Stream this, please"
    assert health.status_code == 200
    assert health.json()["demo_mode"] is True
    assert health.json()["providers"] == {"mock": {"provider": "mock", "status": "up", "models": 1}}
    assert code in CLEAN_STOP
    logs = server.log_lines()
    demo = [line for line in logs if line["event"].startswith("DEMO MODE")]
    assert len(demo) == 1 and demo[0]["level"] == "warning" and demo[0]["demo_mode"] is True
    (start,) = [line for line in logs if line["event"] == "starting"]
    assert start["http"] == f"127.0.0.1:{port}" and start["demo_mode"] is True
    assert [d["name"] for d in start["deployments"]] == ["mock"]
    # The lifespan shutdown ran, so the batched access log was flushed.
    assert "Application shutdown complete." in [line["event"] for line in logs]
    assert [line["model"] for line in logs if line["logger"] == "ailb.access"] == ["mock", "mock"]
    assert server.stdout() == ""


def test_serve_without_demo_and_providers_serves_nothing(tmp_path: Path) -> None:
    port, env_port = free_port(), free_port()
    # --host/--port must win over HOST/HTTP_PORT.
    env = clean_env(tmp_path, HOST="0.0.0.0", HTTP_PORT=str(env_port), GRPC_PORT="0")
    server = ServeProcess(
        ["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path, port
    )
    try:
        server.wait_ready()
        health = httpx2.get(f"{server.url}/healthz")
        errors = []
        with server.client() as client:
            for model in ("mock", "gpt-4o-mini"):
                with pytest.raises(openai.NotFoundError) as exc:
                    client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": "hi"}]
                    )
                errors.append(exc.value)
        with pytest.raises(httpx2.ConnectError):
            httpx2.get(f"http://127.0.0.1:{env_port}/livez", timeout=1)
    finally:
        code = server.stop()
    assert health.status_code == 503
    body = health.json()
    assert (body["status"], body["providers"], body["demo_mode"]) == ("unhealthy", {}, False)
    for err in errors:
        assert err.status_code == 404
        assert err.code == "model_not_found"
        assert err.body["param"] == "model"  # type: ignore[index]
    assert code in CLEAN_STOP
    logs = server.log_lines()
    events = [line["event"] for line in logs]
    assert not [e for e in events if "DEMO MODE" in e]
    assert "no deployments configured: every model request will answer 404" in events
    (start,) = [line for line in logs if line["event"] == "starting"]
    assert (start["http"], start["deployments"], start["demo_mode"]) == (
        f"127.0.0.1:{port}",
        [],
        False,
    )


def test_serve_demo_with_a_provider_configured_does_not_add_the_mock(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "ailb.yaml"
    config.write_text("deployments:\n  - {name: canned, provider: mock, models: [canned]}\n")
    env = clean_env(
        tmp_path,
        HOST="127.0.0.1",
        HTTP_PORT=str(port),
        GRPC_PORT="0",
        AILB_CONFIG=str(config),
    )
    server = ServeProcess(["serve", "--demo"], env, tmp_path, port)
    try:
        server.wait_ready()
        models = httpx2.get(f"{server.url}/v1/models").json()
        health = httpx2.get(f"{server.url}/healthz").json()
        with server.client() as client, pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        code = server.stop()
    assert [m["id"] for m in models["data"]] == ["canned"]
    assert health["demo_mode"] is False
    assert code in CLEAN_STOP
    logs = server.log_lines()
    assert not [line for line in logs if line["event"].startswith("DEMO MODE")]
    (skipped,) = [line for line in logs if line["event"] == "demo_mode_skipped"]
    assert skipped["reason"] == "deployments are configured"


def test_ctrl_c_stops_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, HOST="127.0.0.1", HTTP_PORT=str(port), GRPC_PORT="0")
    server = ServeProcess(["serve", "--demo"], env, tmp_path, port)
    try:
        server.wait_ready()
    finally:
        server.stop(signal.SIGINT)
    assert "Traceback" not in server.stderr()
