"""SIGTERM on a real `ailb serve`: stop accepting, finish what is in flight within
AILB_SHUTDOWN_GRACE, flush usage, say NOT_SERVING on gRPC health meanwhile, exit 0."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from grpc_health.v1 import health_pb2

from ailb.storage import sqlite_ledger as ledger
from tests.control.client import ControlClient
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply
from tests.processes import GatewayProcess, free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
WORDS = " ".join(f"w{i}" for i in range(40))


@pytest.fixture
def slow_upstream() -> Iterator[FakeServer]:
    server = fake_openai().start()
    yield server
    server.stop()


def start_gateway(upstream: FakeServer, tmp_path: Path, grace: int) -> GatewayProcess:
    env = {
        "OPENAI_API_KEY": "sk-upstream",
        "OPENAI_BASE_URL": f"{upstream.url}/v1",
        "OPENAI_MODELS": "slow",
        "AILB_DATA_DIR": str(tmp_path / "data"),
        "AILB_SHUTDOWN_GRACE": str(grace),
        "ENABLE_MEMORY": "false",
        "GRPC_PORT": str(free_port()),  # known up front: health is checked during the drain
    }
    return GatewayProcess(env, tmp_path / "gw.log").start()


def open_stream(client: httpx2.Client, gw: GatewayProcess) -> tuple[httpx2.Response, Iterator[str]]:
    request = client.build_request(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json={
            "model": "slow",
            "messages": [{"role": "user", "content": "count"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    resp = client.send(request, stream=True)
    assert resp.status_code == 200
    lines = (line for line in resp.iter_lines() if line.startswith("data: "))
    assert next(lines).startswith("data: {")  # the stream is under way
    return resp, lines


def wait_for(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def grpc_status(ctl: ControlClient) -> int:
    return int(ctl.check().status)


def test_sigterm_finishes_the_stream_in_flight_and_exits_0(slow_upstream, tmp_path):
    # About 6 s of stream: long enough to look at the draining process from outside.
    slow_upstream.default = Reply(text=WORDS, pieces=30, chunk_delay=0.2)
    gw = start_gateway(slow_upstream, tmp_path, grace=20)
    assert gw.proc is not None
    grpc_port = int(gw.env["GRPC_PORT"])
    try:
        with ControlClient(f"127.0.0.1:{grpc_port}") as ctl, httpx2.Client(timeout=30) as client:
            assert wait_for(lambda: grpc_status(ctl) == SERVING)
            resp, lines = open_stream(client, gw)
            request_id = resp.headers["x-request-id"]
            sent = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)

            # While the stream is still running: health says NOT_SERVING, the port refuses.
            assert wait_for(lambda: grpc_status(ctl) == NOT_SERVING, 2.0)
            assert wait_for(lambda: refused(gw.port), 2.0)
            assert gw.proc.poll() is None

            rest = list(lines)
            resp.close()
        assert rest[-1] == "data: [DONE]"
        assert any('"usage"' in line for line in rest)
        code = gw.proc.wait(timeout=15)
        assert code == 0
        assert time.monotonic() - sent < 15  # the stream's own length, then a prompt stop
    finally:
        gw.kill()
    log = gw.log()
    assert '"draining"' in log and '"stopped"' in log, log

    # The in-flight request's usage reached the ledger before the process ended.
    assert ledger_rows(tmp_path, request_id) == [(200, True)]


def test_a_stream_longer_than_the_grace_period_is_cut_and_the_process_still_exits(
    slow_upstream, tmp_path
):
    slow_upstream.default = Reply(text=WORDS, pieces=40, chunk_delay=0.5)  # ~20 s
    gw = start_gateway(slow_upstream, tmp_path, grace=1)
    assert gw.proc is not None
    try:
        with httpx2.Client(timeout=30) as client:
            resp, lines = open_stream(client, gw)
            request_id = resp.headers["x-request-id"]
            sent = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            code = gw.proc.wait(timeout=15)
            elapsed = time.monotonic() - sent
            rest = list(lines)
            resp.close()
    finally:
        gw.kill()
    assert code == 0
    assert elapsed < 1 + 7  # the grace period, then the flushes
    # Cut, and said so: an explicit error event, never [DONE] (a cut answer never looks whole).
    assert "data: [DONE]" not in rest
    assert '"code":"gateway_shutting_down"' in rest[-1]
    assert "Traceback" not in gw.log()
    assert ledger_rows(tmp_path, request_id) == [(200, True)]  # what was streamed is billed


def ledger_rows(tmp_path: Path, request_id: str) -> list[tuple[int, bool]]:
    db = sqlite3.connect(tmp_path / "data" / "ailb.db")
    try:
        return [(r.status, r.stream) for r in ledger.records(db) if r.request_id == request_id]
    finally:
        db.close()
