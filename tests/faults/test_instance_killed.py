"""One of two AILB instances killed (SIGKILL) under load behind the front proxy (`ailb cluster`:
nginx, Redis, PostgreSQL, Chroma as processes here): the front's retries keep client errors at
zero for non-streaming requests, streams never fail before their first byte, and the shared
ledger holds every answered request exactly once -- including those the killed instance
answered, once it is started again on its data directory (its spool is flushed then)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx2
import openai
import pytest

from ailb.cluster import Cluster, ClusterOptions
from tests.fakes.openai import fake_openai
from tests.fakes.server import Reply
from tests.services import require_cluster

MASTER = "master-key-for-fault-tests-0123456789"
MODEL = "m"
TEXT = "An answer streamed in eight pieces, slowly enough to be cut."
CONFIG = """
deployments:
  - name: fake
    provider: openai
    base_url: {url}/v1
    models: [m]
"""
CLIENTS = 6  # threads; two of them stream
SECONDS = 9.0  # of load: the kill at a third, the restart at two thirds


@pytest.fixture
def upstream():
    server = fake_openai()
    server.models = [MODEL]
    server.record = False
    # 20 ms to answer; streams take about 0.25 s more, so some are mid-way at the kill.
    server.default = Reply(text=TEXT, pieces=8, delay=0.02, chunk_delay=0.03)
    server.start()
    yield server
    server.stop()


@dataclass
class Seen:
    answered: list[str] = field(default_factory=list)  # x-request-id of every whole answer
    errors: list[str] = field(default_factory=list)  # non-streamed, or before a first byte
    cut_streams: int = 0  # streams cut after their first byte (the instance died under them)
    requests: Counter[str] = field(default_factory=Counter)


def load(url: str, key: str, deadline: float, stream: bool, seen: Seen, lock: threading.Lock):
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)
    mine = Seen()
    try:
        while time.monotonic() < deadline:
            mine.requests["stream" if stream else "plain"] += 1
            messages = [{"role": "user", "content": "hello"}]
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=messages, stream=stream
                )
            except openai.APIError as e:
                mine.errors.append(f"{'stream' if stream else 'plain'}: {type(e).__name__} {e}")
                continue
            rid = raw.headers["x-request-id"]
            if not stream:
                text = raw.parse().choices[0].message.content
                if text == TEXT:
                    mine.answered.append(rid)
                else:
                    mine.errors.append(f"plain: wrong answer {text!r}")
                continue
            pieces: list[str] = []
            try:
                for chunk in raw.parse():
                    if chunk.choices:
                        pieces.append(chunk.choices[0].delta.content or "")
            except Exception:  # the connection died mid-stream (httpx or the SDK's error)
                if not pieces:
                    mine.errors.append(f"stream {rid}: cut before its first chunk")
                else:
                    mine.cut_streams += 1
                continue
            if "".join(pieces) == TEXT:
                mine.answered.append(rid)
            else:  # ended quietly without its whole answer
                mine.errors.append(f"stream {rid}: truncated {''.join(pieces)!r}")
    finally:
        client.close()
        with lock:
            seen.answered += mine.answered
            seen.errors += mine.errors
            seen.cut_streams += mine.cut_streams
            seen.requests.update(mine.requests)


async def _ledger(dsn: str) -> list[tuple[str, int, str]]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch("SELECT request_id, status, instance FROM ailb.usage")
    finally:
        await conn.close()
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.mark.timeout(150)
def test_an_instance_killed_under_load_costs_no_answer_and_no_record(tmp_path, upstream):
    (tmp_path / "ailb.yaml").write_text(CONFIG.format(url=upstream.url))
    options = ClusterOptions(
        instances=2,
        inherit_env=False,
        env={
            "AILB_CONFIG": str(tmp_path / "ailb.yaml"),
            "AILB_MASTER_KEY": MASTER,
            "ENABLE_MEMORY": "false",
            "AILB_HEALTH_INTERVAL": "60",
        },
        base_dir=tmp_path / "cluster",
    )
    require_cluster(options)
    with Cluster(options) as cluster:
        made = httpx2.post(
            cluster.url + "/api/keys",
            json={"name": "faults"},
            headers={"authorization": f"Bearer {MASTER}"},
            timeout=10,
        )
        assert made.status_code == 200, made.text
        key = made.json()["key"]
        victim = cluster.instances[0]

        seen, lock = Seen(), threading.Lock()
        started = time.monotonic()
        deadline = started + SECONDS
        threads = [
            threading.Thread(
                target=load, args=(cluster.url, key, deadline, i < 2, seen, lock), daemon=True
            )
            for i in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        time.sleep(SECONDS / 3)
        victim.kill()  # SIGKILL to its process group: nothing flushed, nothing closed
        killed_at = time.monotonic() - started
        time.sleep(SECONDS / 3)
        victim.start()  # same data directory: it flushes what the dead process spooled
        for t in threads:
            t.join(SECONDS + 60)
        survivor_log = cluster.instances[1].log()

        answered = seen.answered
        summary = {
            "requests": dict(seen.requests),
            "answered": len(answered),
            "errors": len(seen.errors),
            "cut_streams": seen.cut_streams,
            "killed_at_s": round(killed_at, 2),
        }
        print("instance-killed", summary)
        assert seen.requests["plain"] > 50 and seen.requests["stream"] > 10, summary
        assert not seen.errors, (seen.errors[:10], summary)
        assert len(set(answered)) == len(answered)

        deadline = time.monotonic() + 30
        rows = asyncio.run(_ledger(cluster.database_url))
        while not set(answered) <= {r[0] for r in rows} and time.monotonic() < deadline:
            time.sleep(0.5)
            rows = asyncio.run(_ledger(cluster.database_url))
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids))  # no request recorded twice
        missing_ids = set(answered) - set(ids)
        assert not missing_ids, (len(missing_ids), summary)  # no answered request unrecorded
        # A row without an answer can only be a request the victim had finished (and spooled,
        # as it does before sending) when it was killed: billed, its answer lost with it.
        extra = [r for r in rows if r[0] not in set(answered)]
        print("instance-killed ledger", {"rows": len(rows), "extra": len(extra)})
        assert all(r[2] == "ailb-1" and r[1] == 200 for r in extra), extra
        assert len(extra) <= CLIENTS, extra
        assert {r[2] for r in rows} == {"ailb-1", "ailb-2"}  # both served, before and after
        assert "Traceback" not in survivor_log
