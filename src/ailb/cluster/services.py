"""The servers of a local cluster as processes on 127.0.0.1: Redis, PostgreSQL, a Chroma
server and AILB instances, each on its own port, with the readiness check that fits it."""

from __future__ import annotations

import asyncio
import glob
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ailb.cluster.process import ClusterError, ManagedProcess

HOST = "127.0.0.1"
CHECK_TIMEOUT_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def find_binary(name: str, *extra_dirs: str, hint: str) -> str:
    """`name` on PATH or in one of `extra_dirs` (sbin and versioned directories are often
    not on a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        for candidate in sorted(glob.glob(os.path.join(d, name)), reverse=True):
            if os.access(candidate, os.X_OK):
                return candidate
    raise ClusterError(f"{name} is not installed ({hint})")


def http_ok(url: str, path: str) -> bool:
    parts = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(parts[0], int(parts[1]), timeout=CHECK_TIMEOUT_S)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def redis_binary() -> str:
    return find_binary("redis-server", hint="Debian: apt-get install redis-server")


def redis(port: int, workdir: Path, logs: Path) -> ManagedProcess:
    """Redis with an append-only file, so a stop and start keeps the counters (as a Redis
    with a volume would); `kill()` loses at most the last second."""
    binary = redis_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--bind", HOST, "--port", str(port), "--dir", str(workdir),
            "--save", "", "--appendonly", "yes", "--protected-mode", "yes"]  # fmt: skip

    def ping() -> bool:
        with socket.create_connection((HOST, port), timeout=CHECK_TIMEOUT_S) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    return ManagedProcess(
        "redis", argv, env=os.environ, log_path=logs / "redis.log", ready=ping,
        url=f"redis://{HOST}:{port}/0", port=port,
    )  # fmt: skip


PG_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
PG_USER = "ailb"  # the database superuser initdb creates (trust authentication, 127.0.0.1 only)


def postgres_user() -> str | None:
    """The system user PostgreSQL runs as: None (this one) unless this is root, which
    PostgreSQL refuses; then the `postgres` user its packages create."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as: "
            "run as another user, or point at a server with --database-url"
        ) from None
    return "postgres"


def postgres_binary() -> str:
    """`postgres`, with its `initdb` beside it."""
    binary = find_binary("postgres", *PG_DIRS, hint="Debian: apt-get install postgresql")
    if not os.access(Path(binary).with_name("initdb"), os.X_OK):
        raise ClusterError(f"initdb is not installed beside {binary}")
    return binary


def postgres(port: int, datadir: Path, logs: Path) -> ManagedProcess:
    """A PostgreSQL cluster created in `datadir` (initdb, only the first time), with fsync off:
    a process crash loses nothing (the OS still has the pages), only a machine crash would."""
    binary = postgres_binary()
    user = postgres_user()
    if not (datadir / "PG_VERSION").exists():
        initdb = str(Path(binary).with_name("initdb"))
        datadir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            shutil.chown(datadir, user)
        done = subprocess.run(  # noqa: S603 - argv built here, never a shell
            [initdb, "-D", str(datadir), "-U", PG_USER, "-A", "trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            capture_output=True, user=user, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise ClusterError(f"initdb failed in {datadir}:\n{done.stderr.decode()[-2000:]}")
    settings = (f"listen_addresses={HOST}", "unix_socket_directories=", "fsync=off",
                "full_page_writes=off", "max_connections=100")  # fmt: skip
    argv = [binary, "-D", str(datadir), "-p", str(port)]
    for setting in settings:
        argv += ["-c", setting]
    dsn = f"postgresql://{PG_USER}@{HOST}:{port}/postgres"

    def accepts() -> bool:
        return asyncio.run(_pg_select(dsn))

    return ManagedProcess(
        "postgres", argv, env=os.environ, log_path=logs / "postgres.log", ready=accepts,
        url=dsn, port=port, stop_signal=signal.SIGINT, user=user,
    )  # fmt: skip


async def _pg_select(dsn: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=CHECK_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False  # not listening yet, or "the database system is starting up"
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


def chroma_binary() -> str:
    beside = str(Path(sys.executable).parent)
    return find_binary("chroma", beside, hint="it comes with the chromadb package")


def chroma(port: int, workdir: Path, logs: Path) -> ManagedProcess:
    """`chroma run`, the server that comes with the chromadb package, on a persistent path."""
    binary = chroma_binary()
    argv = [binary, "run", "--path", str(workdir), "--host", HOST, "--port", str(port)]
    url = f"http://{HOST}:{port}"
    return ManagedProcess(
        "chroma", argv, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        log_path=logs / "chroma.log", ready=lambda: http_ok(url, "/api/v2/heartbeat"),
        url=url, port=port,
    )  # fmt: skip


class Instance(ManagedProcess):
    """One `ailb serve` (this installation's), ready when /livez answers: /healthz may rightly
    say unhealthy (no provider up) while the process serves."""

    def __init__(
        self, name: str, http_port: int, grpc_port: int, env: Mapping[str, str], logs: Path,
        demo: bool,
    ) -> None:  # fmt: skip
        url = f"http://{HOST}:{http_port}"
        argv = [sys.executable, "-m", "ailb", "serve", *(["--demo"] if demo else [])]
        full = {**env, "HOST": HOST, "HTTP_PORT": str(http_port), "GRPC_PORT": str(grpc_port)}
        super().__init__(
            name, argv, env=full, log_path=logs / f"{name}.log",
            ready=lambda: http_ok(url, "/livez"), url=url, port=http_port,
        )  # fmt: skip
        self.grpc_port = grpc_port

    @property
    def grpc_target(self) -> str:
        """host:port of the instance's gRPC ModuleService and health service."""
        return f"{HOST}:{self.grpc_port}"
