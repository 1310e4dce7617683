"""One child process of a local cluster: started, checked ready, stopped, killed, started again.

Each child runs in its own process group: a Ctrl-C in the terminal then reaches only
`ailb cluster`, which stops everything in order (gateways before the database they flush
usage to), and kill() takes a server's helper processes (PostgreSQL's backends, nginx's
workers) down with it, as a crash of the machine would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

READY_POLL_S = 0.05


class ClusterError(RuntimeError):
    """A part of the cluster cannot be started; the message says which and why."""


class ManagedProcess:
    """A server process: `argv` started with `env`, output appended to `log_path`, ready once
    `ready()` answers True. `stop_signal` is the server's own graceful stop (SIGTERM for AILB,
    SIGINT for PostgreSQL's fast shutdown, SIGQUIT for nginx)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        ready: Callable[[], bool],
        url: str = "",
        port: int = 0,
        stop_signal: int = signal.SIGTERM,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.ready = ready
        self.url = url
        self.port = port
        self.stop_signal = stop_signal
        self.user = user  # run as this user (PostgreSQL refuses to run as root)
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, url={self.url!r})"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> None:
        """Start the process without waiting for it (see wait_ready)."""
        if self.running:
            raise ClusterError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - argv built here, never a shell
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                user=self.user,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise ClusterError(f"{self.name} exited ({code}) while starting:\n{self.log()}")
            if self._ready():
                return
            time.sleep(READY_POLL_S)
        raise ClusterError(f"{self.name} was not ready after {timeout:.0f} s:\n{self.log()}")

    def _ready(self) -> bool:
        try:
            return self.ready()
        except OSError:
            return False

    def start(self, timeout: float = 60.0) -> ManagedProcess:
        """Start and wait until ready (the same ports and data as before a stop or kill)."""
        self.launch()
        try:
            self.wait_ready(timeout)
        except ClusterError:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """The server's graceful stop; SIGKILL if it has not ended after `timeout` seconds.
        Returns the exit code (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)  # a paused server could not stop
                os.kill(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            self._reap_group()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to the whole process group: a crash, nothing gets to clean up."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung server)."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, sig: int) -> None:
        if not self.running:
            raise ClusterError(f"{self.name} is not running")
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def _reap_group(self) -> None:
        # Helpers a graceful stop left behind (none, normally) must not hold the ports.
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log(self, tail: int = 4000) -> str:
        """The end of the process's output."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - tail))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
