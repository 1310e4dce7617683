"""Throwaway Redis, PostgreSQL and Chroma servers for fault tests: each its own process on a free
127.0.0.1 port, so a test may kill, pause and restart it without touching the shared services.

A missing binary skips the test naming it, unless AILB_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import httpx2

from ailb.cluster import services as cluster_services
from ailb.cluster.process import ClusterError, ManagedProcess
from tests.processes import free_port
from tests.services import unavailable

REDIS_SERVER = "/usr/bin/redis-server"
PG_BIN = "/usr/local/bin"  # initdb, pg_ctl, postgres


def missing(what: str) -> NoReturn:
    unavailable(f"{what} is not installed here")


def _binary(path: str, name: str) -> str:
    found = path if os.access(path, os.X_OK) else shutil.which(os.path.basename(path))
    if not found:
        missing(f"{name} ({path})")
    return found


def _wait(check: Callable[[], bool], what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx2.TransportError, subprocess.SubprocessError):
            pass
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} did not come up in {timeout} s\n{tail}")


def _kill(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    """Signal a server this helper started (its own process group) and wait for it."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(15)


class RedisServer:
    """`redis-server` without persistence: a restart after kill() comes back empty, like a
    crashed cache."""

    def __init__(self, workdir: Path) -> None:
        self.binary = _binary(REDIS_SERVER, "redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait(self.ping, "redis-server", 10, log)
        return self

    def ping(self) -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        _kill(self.proc)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung server)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)


class PostgresServer:
    """A PostgreSQL cluster initdb'd into a fresh directory, run with pg_ctl. When the tests run
    as root it runs as the `postgres` user (PostgreSQL refuses root); its directory is then
    under /tmp rather than pytest's tmp_path, which only root may enter."""

    def __init__(self) -> None:
        self.initdb = _binary(os.path.join(PG_BIN, "initdb"), "PostgreSQL initdb")
        self.pg_ctl = _binary(os.path.join(PG_BIN, "pg_ctl"), "PostgreSQL pg_ctl")
        self.user: str | None = None
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                missing("a `postgres` user to run PostgreSQL as (the tests run as root)")
            self.user = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="ailb-faults-pg-"))
        if self.user is not None:
            shutil.chown(self.dir, self.user)
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        subprocess.run(
            [self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
             "-E", "UTF8"],
            check=True, capture_output=True, user=self.user, timeout=60,
        )  # fmt: skip

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [self.pg_ctl, "-D", str(self.data), *args],
            check=True, capture_output=True, user=self.user, timeout=60,
        )  # fmt: skip

    def start(self) -> PostgresServer:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c max_connections=50"
        )
        self._ctl("-o", options, "-l", str(self.log), "-w", "-t", "30", "start")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """immediate: like a crash (no checkpoint), connections cut at once."""
        self._ctl("-m", mode, "-w", "stop")

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def chroma_server(workdir: Path) -> ManagedProcess:
    """`ailb cluster`'s Chroma server (`chroma run` on a persistent directory: a restart after
    kill() has the same collections) on a free port, not started yet."""
    try:
        return cluster_services.chroma(free_port(), workdir / "db", workdir)
    except ClusterError as e:
        missing(str(e))
