"""`ailb cluster`: nginx in front of two gateways sharing Redis, PostgreSQL and a Chroma server,
all started as processes here, used through the front with the official openai SDK."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from ailb.cluster import Cluster, ClusterOptions
from tests.processes import free_port
from tests.services import require_cluster

MASTER = "master-key-for-the-local-cluster-0123456789"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster-config")
    (base / "ailb.yaml").write_text(CONFIG)
    options = ClusterOptions(
        instances=2,
        inherit_env=False,
        env={"AILB_CONFIG": str(base / "ailb.yaml"), "AILB_MASTER_KEY": MASTER},
    )
    require_cluster(options)
    with Cluster(options) as c:
        yield c


ADMIN = {"authorization": f"Bearer {MASTER}"}


def served(instance_url: str) -> int:
    stats = httpx2.get(f"{instance_url}/api/routing/stats", headers=ADMIN).json()
    return int(stats["deployments"]["mock"]["requests"])


def test_traffic_through_the_front_reaches_both_instances(cluster):
    # A key made through the front (one instance, stored in PostgreSQL) works on every instance.
    made = httpx2.post(f"{cluster.url}/api/keys", json={"name": "c"}, headers=ADMIN)
    assert made.status_code == 200, made.text
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key=made.json()["key"], max_retries=0)
    try:
        for i in range(8):
            reply = client.chat.completions.create(
                model="mock-a", messages=[{"role": "user", "content": f"hello {i}"}]
            )
            assert reply.choices[0].message.content == f"hello {i}"
        stream = client.chat.completions.create(
            model="mock-a", messages=[{"role": "user", "content": "a stream"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "a stream"
    finally:
        client.close()
    counts = [served(i.url) for i in cluster.instances]
    assert sum(counts) == 9 and all(n > 0 for n in counts), counts

    for instance in cluster.instances:
        accounts = httpx2.get(f"{instance.url}/healthz").json()["accounts"]
        assert (accounts["store"], accounts["counters"]) == ("postgresql", "redis")


def test_memory_lives_in_the_chroma_server(cluster):
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key=MASTER, max_retries=0)
    try:
        client.chat.completions.create(
            model="mock-a",
            messages=[{"role": "user", "content": "My locker number is 4417."}],
            extra_body={"session_id": "cluster-session"},
        )
    finally:
        client.close()
    # Written off the request path by one instance, readable from the other through Chroma.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = []
        for instance in cluster.instances:
            r = httpx2.get(f"{instance.url}/api/sessions/cluster-session", headers=ADMIN)
            seen.append(r.status_code == 200 and "4417" in r.text)
        if all(seen):
            break
        time.sleep(0.2)
    assert all(seen), seen
    collections = httpx2.get(
        f"{cluster.chroma_url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    ).json()
    assert collections, "no collection in the Chroma server"


def test_a_killed_instance_is_routed_around_and_comes_back(cluster):
    first = cluster.instances[0]
    first.kill()
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key=MASTER, max_retries=0)
    try:
        for i in range(6):  # nginx retries the refused connection on the other instance
            reply = client.chat.completions.create(
                model="mock-a", messages=[{"role": "user", "content": f"still {i}"}]
            )
            assert reply.choices[0].message.content == f"still {i}"
        first.start()  # same ports, same data directory
        assert httpx2.get(f"{first.url}/livez").status_code == 200
    finally:
        client.close()


def test_the_front_answers_its_own_errors_in_openai_format(cluster):
    big = httpx2.post(
        f"{cluster.url}/v1/chat/completions",
        content=b"x" * (21 * 1024 * 1024),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    for instance in cluster.instances:
        instance.kill()
    try:
        down = httpx2.get(f"{cluster.url}/v1/models", headers=ADMIN)
        assert down.status_code == 502 and down.json()["error"]["code"] == "no_instance"
    finally:
        for instance in cluster.instances:
            instance.start()


def test_ailb_cluster_command_starts_serves_and_stops_on_sigterm(tmp_path: Path):
    require_cluster(ClusterOptions())
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ailb", "cluster", "--instances", "1", "--port", str(port),
         "--demo", "--dir", str(tmp_path / "c")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops everything"):
                break
        assert f"AILB cluster ready: http://127.0.0.1:{port}" in "".join(lines), "".join(lines)
        r = httpx2.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hi"
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + rest
    assert rest.rstrip().endswith("stopped")
    with pytest.raises(httpx2.TransportError):  # nothing left listening
        httpx2.get(f"http://127.0.0.1:{port}/livez", timeout=2)
    logs = tmp_path / "c" / "logs"
    assert '"stopped"' in (logs / "ailb-1.log").read_text()  # a graceful stop, not a kill
