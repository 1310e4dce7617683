"""The compose topology as processes on 127.0.0.1: nginx in front of N AILB instances that
share Redis, PostgreSQL and a Chroma server (DESIGN §6).

    with Cluster(ClusterOptions(instances=2)) as cluster:
        cluster.url                      # the front (nginx)
        cluster.instances[0].kill()      # a crash; .start() brings it back on the same ports
        cluster.postgres.stop()          # None when an existing server was given

Every process keeps its ports and data directory across stop()/kill() and start().
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ailb.cluster import services
from ailb.cluster.nginx import nginx, nginx_binary
from ailb.cluster.process import ClusterError, ManagedProcess
from ailb.cluster.services import HOST, Instance, free_port

# What a test's gateway keeps from the caller's environment when inherit_env is False.
MINIMAL_ENV = ("PATH", "HOME", "LANG", "TMPDIR")


@dataclass(frozen=True)
class ClusterOptions:
    instances: int = 2
    port: int = 0  # the front's port; 0: any free one
    # Existing servers to use instead of starting one (their URLs, as AILB takes them).
    redis_url: str | None = None
    database_url: str | None = None
    chroma_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # for every instance, last say
    inherit_env: bool = True  # instances see this process's environment (provider keys ...)
    demo: bool = False  # `ailb serve --demo`: the mock provider when none is configured
    base_dir: Path | None = None  # logs and data; None: a temporary directory, removed after
    start_timeout: float = 60.0


def missing(options: ClusterOptions) -> list[str]:
    """What this machine lacks to run the cluster `options` describe (empty: nothing)."""
    checks: list[Callable[[], object]] = [nginx_binary]
    if options.chroma_url is None:
        checks.append(services.chroma_binary)
    if options.redis_url is None:
        checks.append(services.redis_binary)
    if options.database_url is None:
        checks += [services.postgres_binary, services.postgres_user]
    problems = []
    for check in checks:
        try:
            check()
        except ClusterError as e:
            problems.append(str(e))
    return problems


class Cluster:
    """A context manager: entering starts everything and waits until it is ready; leaving
    stops everything, gateways first (they flush usage to PostgreSQL and memory to Chroma)."""

    def __init__(self, options: ClusterOptions | None = None) -> None:
        self.options = options or ClusterOptions()
        if self.options.instances < 1:
            raise ClusterError("a cluster needs at least one instance")
        self._own_dir = self.options.base_dir is None
        self.base_dir = self.options.base_dir or Path(tempfile.mkdtemp(prefix="ailb-cluster-"))
        self.logs = self.base_dir / "logs"
        self._private_dirs: list[Path] = []
        self.redis: ManagedProcess | None = None
        self.postgres: ManagedProcess | None = None
        self.chroma: ManagedProcess | None = None
        self.instances: list[Instance] = []
        self.proxy: ManagedProcess | None = None

    # --- where things are ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The front's URL: what clients use (append /v1 for an OpenAI SDK)."""
        assert self.proxy is not None, "the cluster is not started"
        return self.proxy.url

    @property
    def redis_url(self) -> str:
        return self.options.redis_url or (self.redis.url if self.redis else "")

    @property
    def database_url(self) -> str:
        return self.options.database_url or (self.postgres.url if self.postgres else "")

    @property
    def chroma_url(self) -> str:
        return self.options.chroma_url or (self.chroma.url if self.chroma else "")

    def processes(self) -> list[ManagedProcess]:
        """Every process this cluster runs, front first."""
        backing = [p for p in (self.redis, self.postgres, self.chroma) if p is not None]
        return [*([self.proxy] if self.proxy else []), *self.instances, *backing]

    # --- start and stop ------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        problems = missing(self.options)
        if problems:
            raise ClusterError("; ".join(problems))
        self.logs.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and self._own_dir:
            # Servers that drop root (nginx's workers, PostgreSQL) must reach their files.
            os.chmod(self.base_dir, 0o711)  # noqa: S103 - enter, not list or write
        self._start_together(self._backing_services())
        self.instances = [
            Instance(f"ailb-{i}", free_port(), free_port(), self._instance_env(i), self.logs,
                     self.options.demo)
            for i in range(1, self.options.instances + 1)
        ]  # fmt: skip
        self._start_together(self.instances)
        upstreams = [f"{HOST}:{i.port}" for i in self.instances]
        port = self.options.port or free_port()
        workdir = self._dir_for_others("nginx") if os.geteuid() == 0 else self.base_dir / "nginx"
        self.proxy = nginx(HOST, port, upstreams, workdir, self.logs)
        self.proxy.start(self.options.start_timeout)

    def _backing_services(self) -> list[ManagedProcess]:
        o = self.options
        if o.redis_url is None:
            self.redis = services.redis(free_port(), self.base_dir / "redis", self.logs)
        if o.database_url is None:
            self.postgres = services.postgres(free_port(), self._postgres_dir(), self.logs)
        if o.chroma_url is None:
            self.chroma = services.chroma(free_port(), self.base_dir / "chroma", self.logs)
        return [p for p in (self.redis, self.postgres, self.chroma) if p is not None]

    def _postgres_dir(self) -> Path:
        user = services.postgres_user()
        if user is None:
            return self.base_dir / "postgres"
        workdir = self._dir_for_others("postgres")
        workdir.mkdir(exist_ok=True)
        shutil.chown(workdir, user)
        return workdir / "data"

    def _dir_for_others(self, name: str) -> Path:
        """A directory for a server that drops root (PostgreSQL, nginx's workers): in base_dir
        when any user can enter it, else (under a private directory such as pytest's) one of
        its own, removed at the end."""
        if _others_can_enter(self.base_dir):
            return self.base_dir / name
        path = Path(tempfile.mkdtemp(prefix=f"ailb-cluster-{name}-"))
        os.chmod(path, 0o711)  # noqa: S103 - enter, not list or write
        self._private_dirs.append(path)
        return path

    def _instance_env(self, i: int) -> dict[str, str]:
        o = self.options
        if o.inherit_env:
            env = dict(os.environ)
        else:
            env = {k: os.environ[k] for k in MINIMAL_ENV if k in os.environ}
        env.update(
            {
                "MODULE_ID": f"ailb-{i}",
                "AILB_DATA_DIR": str(self.base_dir / f"ailb-{i}"),
                "REDIS_URL": self.redis_url,
                "DATABASE_URL": self.database_url,
                "CHROMA_URL": self.chroma_url,
            }
        )
        env.update(o.env)
        return env

    def _start_together(self, procs: list[ManagedProcess] | list[Instance]) -> None:
        """Launch all, then wait for each: independent servers start in parallel."""
        for p in procs:
            p.launch()
        with ThreadPoolExecutor(max(1, len(procs))) as pool:
            for f in [pool.submit(p.wait_ready, self.options.start_timeout) for p in procs]:
                f.result()

    def close(self) -> None:
        """Stop everything: front and gateways together (the gateways drain), then the
        servers they flush to. Safe to call twice."""
        front = [p for p in (self.proxy, *self.instances) if p is not None]
        backing = [p for p in (self.redis, self.postgres, self.chroma) if p is not None]
        for group in (front, backing):
            with ThreadPoolExecutor(max(1, len(group))) as pool:
                for f in [pool.submit(p.stop) for p in group]:
                    with contextlib.suppress(Exception):
                        f.result()
        for path in self._private_dirs:
            shutil.rmtree(path, ignore_errors=True)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def _others_can_enter(path: Path) -> bool:
    """Every directory from / down to `path` may be entered by any user."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path.resolve(), *path.resolve().parents))
