"""Files the gateway keeps in AILB_DATA_DIR are its owner's alone: the SQLite store holds key
hashes and signing secrets in plain text, the spools and the memory who asked what, Chroma the
documents. A real `ailb serve` process with every store on (keys, usage, memory, RAG) started
by a parent with the usual umask (022): every file it leaves there is 0600 and every directory
0700 -- its own, SQLite's (-wal, -shm) and Chroma's. A data directory left looser by an older
version or by hand is tightened at start, and says so in the log."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from ailb.memory.sqlite_store import SqliteTurnStore
from ailb.spool import Spool
from ailb.storage.sqlite import SqliteStore
from tests.processes import GatewayProcess

MASTER = "master-key-file-modes-0123"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CONFIG = """
deployments:
  - name: fast
    provider: mock
    models: [mock]
"""


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The gateway inherits the umask of whoever starts it: the common 022, not this test
    runner's (which may be stricter already)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def gateway(tmp_path: Path, data: Path) -> GatewayProcess:
    (tmp_path / "ailb.yaml").write_text(CONFIG)
    return GatewayProcess(
        {
            "AILB_CONFIG": str(tmp_path / "ailb.yaml"),
            "AILB_DATA_DIR": str(data),
            "AILB_MASTER_KEY": MASTER,
            "ENABLE_RAG": "true",
            "ENABLE_MEMORY": "true",
            "MEMORY_BACKEND": "sqlite",
            "ENABLE_GRPC": "false",
        },
        tmp_path / "gateway.log",
    ).start()


def use_every_store(url: str) -> None:
    with httpx2.Client(base_url=url, timeout=60) as c:
        r = c.post("/api/keys", json={"name": "signer", "signed": True}, headers=ADMIN)
        assert r.status_code == 200, r.text
        chat = {"model": "mock", "messages": [{"role": "user", "content": "remember me"}]}
        r = c.post("/v1/chat/completions", json={**chat, "session_id": "s1"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        assert c.post("/api/rag/collections", json={"name": "docs"}, headers=ADMIN).is_success
        docs = {"documents": [{"id": "a.md", "text": "The lighthouse keeper's log."}]}
        r = c.post("/api/rag/collections/docs/documents", json=docs, headers=ADMIN)
        assert r.status_code == 200, r.text
        for _ in range(100):  # the memory write and the usage flush are off the request path
            if c.get("/api/sessions/s1", headers=ADMIN).json().get("turns"):
                break
            time.sleep(0.1)
        time.sleep(1.5)


def modes(data: Path) -> dict[str, int]:
    """Every entry under `data` (and `data` itself), by path relative to it: its mode bits."""
    out = {".": stat.S_IMODE(data.stat().st_mode)}
    for root, dirs, files in os.walk(data):
        for name in dirs + files:
            path = Path(root) / name
            out[str(path.relative_to(data))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def loose(found: dict[str, int], data: Path) -> list[str]:
    wrong = []
    for rel, mode in found.items():
        want = 0o700 if (data / rel).is_dir() else 0o600
        if mode != want:
            wrong.append(f"{rel}: {mode:o} (want {want:o})")
    return wrong


def test_everything_in_the_data_directory_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gw = gateway(tmp_path, data)
    try:
        use_every_store(gw.url)
        running = modes(data)  # SQLite's -wal and -shm exist while it runs
    finally:
        gw.stop()
    stopped = modes(data)
    names = {Path(p).name for p in running}
    # What is being checked is really there: each store's files, SQLite's and Chroma's.
    for expected in ("ailb.db", "ailb.db-wal", "ailb.db-shm", "memory.db", "chroma.sqlite3",
                     "usage-spool", "memory-journal"):  # fmt: skip
        assert expected in names, (expected, sorted(names))
    assert any(n.endswith(".bin") for n in names), sorted(names)  # Chroma's vector index
    assert not loose(running, data), loose(running, data)
    assert not loose(stopped, data), loose(stopped, data)


def test_a_looser_data_directory_is_tightened_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gw = gateway(tmp_path, data)
    use_every_store(gw.url)
    gw.stop()
    for rel in modes(data):  # as an older version (or a careless copy) left it
        path = data / rel
        path.chmod(0o755 if path.is_dir() else 0o644)
    count = len(modes(data))
    gw = gateway(tmp_path, data)
    try:
        assert not loose(modes(data), data), loose(modes(data), data)
    finally:
        gw.stop()
    assert "data_dir_permissions_tightened" in gw.log()
    line = next(s for s in gw.log().splitlines() if "data_dir_permissions_tightened" in s)
    assert f'"entries":{count}' in line.replace(" ", ""), line


def test_the_stores_make_their_files_private_whatever_the_umask(tmp_path: Path) -> None:
    """The umask is the serving process's (`ailb serve`, `ailb keys`); the stores do not rely
    on it: embedded in another process, with the umask 022, their directories (and the parents
    they had to make) are 0700 and their files -- SQLite's own included -- 0600."""
    data = tmp_path / "data"

    async def open_all() -> dict[str, int]:
        store = SqliteStore(str(data / "keys" / "ailb.db"))
        await store.open()
        turns = SqliteTurnStore(str(data / "memory"))
        await turns.open()
        spool = Spool(str(data / "spool"))
        spool.open()
        try:
            return modes(data)
        finally:
            spool.close()
            await turns.close()
            await store.close()

    found = asyncio.run(open_all())
    names = {Path(p).name for p in found}
    assert {"ailb.db-wal", "ailb.db-shm", "memory.db-wal", "memory.db-shm"} <= names, names
    assert not loose(found, data), loose(found, data)
