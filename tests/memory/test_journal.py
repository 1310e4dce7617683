"""Remembered exchanges survive a crash of the process: they are journaled before the batch that
stores them, replayed by the next start, and a forgotten session is not brought back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ailb.memory.conversation import ConversationMemory, MemorySettings
from ailb.memory.journal import TurnJournal
from ailb.memory.sqlite_store import SqliteTurnStore
from ailb.vectorstore.chroma import StoreUnavailable

ROOT = Path(__file__).resolve().parents[2]


class ZeroEmbedder:
    """Vectors do not matter here, only what is stored."""

    name = "zero"
    dimensions = 4

    async def embed(self, texts: Any) -> Any:
        return np.ones((len(texts), self.dimensions), np.float32) / 2

    async def close(self) -> None:
        pass


class DownStore:
    """A store that cannot be reached: every write fails and stays queued."""

    where = "down"

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get(self, collection: str, *, where: Any = None, vectors: bool = False) -> Any:
        raise StoreUnavailable("down")

    async def upsert(self, *args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("down")

    async def delete(self, collection: str, *, where: Any = None) -> None:
        raise StoreUnavailable("down")


def memory(data: Path, store: Any = None) -> ConversationMemory:
    return ConversationMemory(
        store or SqliteTurnStore(str(data)),
        ZeroEmbedder(),  # type: ignore[arg-type]
        MemorySettings(),
        TurnJournal(str(data / "journal")),
    )


def crash_after(data: Path, body: str) -> None:
    """Run `body` (async, with `memory`) in a fresh process that then dies without cleanup."""
    script = "\n".join(
        [
            "import asyncio, os",
            "from pathlib import Path",
            "from tests.memory.test_journal import DownStore, memory",
            "async def main():",
            f"    data = Path({str(data)!r})",
            textwrap.indent(textwrap.dedent(body).strip(), "    "),
            "    os._exit(0)  # no stop, no flush: as a crash",
            "asyncio.run(main())",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def segments(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "journal").glob("memory-*.msgpack"))


def test_exchanges_a_crash_left_unstored_are_stored_by_the_next_start(tmp_path):
    crash_after(
        tmp_path,
        """
        m = memory(data, DownStore())
        m.start()
        for i in range(3):
            m.remember("o", "s", [{"role": "user", "content": f"fact {i}"}], f"answer {i}")
        await asyncio.sleep(0.2)  # the writer tried, failed, and keeps them queued
        assert m.stats["degraded"] >= 1
        """,
    )
    assert len(segments(tmp_path)) == 1

    async def restart() -> list[str]:
        m = memory(tmp_path)
        m.start()
        await m.flush()
        turns = [t.content for t in await m.session("o", "s")]
        await m.stop()
        return turns

    turns = asyncio.run(restart())
    assert turns == ["fact 0", "answer 0", "fact 1", "answer 1", "fact 2", "answer 2"]
    assert segments(tmp_path) == []  # all stored: nothing left to replay

    async def again() -> list[str]:  # a second start replays nothing and stores no copies
        m = memory(tmp_path)
        m.start()
        turns = [t.content for t in await m.session("o", "s")]
        await m.stop()
        return turns

    assert asyncio.run(again()) == turns


def test_a_forgotten_session_does_not_come_back_from_the_journal(tmp_path):
    crash_after(
        tmp_path,
        """
        m = memory(data)
        m.start()
        m.remember("o", "gone", [{"role": "user", "content": "my secret"}], "noted")
        m.remember("o", "kept", [{"role": "user", "content": "hello"}], "hi")
        await m.flush()
        assert await m.forget("o", "gone") == 2
        """,
    )

    async def restart() -> tuple[list[str], list[str]]:
        m = memory(tmp_path)
        m.start()
        await m.flush()
        gone = [t.content for t in await m.session("o", "gone")]
        kept = [t.content for t in await m.session("o", "kept")]
        await m.stop()
        return gone, kept

    assert asyncio.run(restart()) == ([], ["hello", "hi"])


def test_stored_exchanges_do_not_pile_up_in_the_journal(tmp_path, monkeypatch):
    monkeypatch.setattr("ailb.journal.ROTATE_BYTES", 4096)

    async def main() -> tuple[int, list[str], list[str]]:
        m = memory(tmp_path)
        m.start()
        most = 0
        for i in range(300):
            m.remember("o", f"s{i % 7}", [user(f"message {i} " + "x" * 200)], f"answer {i}")
            if i % 20 == 0:
                await m.flush()
                most = max(most, len(segments(tmp_path)))
        await m.flush()
        during = segments(tmp_path)
        await m.stop()
        return most, during, segments(tmp_path)

    most, during, after = asyncio.run(main())
    assert most <= 2 and len(during) <= 1, (most, during)  # replaced as they fill and drain
    assert after == []
    assert os.path.isdir(tmp_path / "journal")
