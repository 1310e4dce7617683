"""Gateways as real processes (`ailb serve`), for crash and multi-instance tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

AILB = str(Path(sys.executable).with_name("ailb"))


def free_port() -> int:
    """A port nothing listens on now (the caller binds it soon after; the kernel hands out
    ephemeral ports in turn, so another bind taking it first is unlikely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GatewayProcess:
    """One `ailb serve` on a free port; its log goes to a file (a pipe nobody reads would
    fill up and stall the gateway)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        self.port = free_port()
        # GRPC_PORT 0: any free port, so gateways never contend for the default one.
        self.env = {
            **keep,
            "HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "GRPC_PORT": "0",
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> GatewayProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [AILB, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{self.url}/livez", timeout=1).status_code == 200:
                    return self
            except httpx2.TransportError:
                time.sleep(0.05)
            if self.proc.poll() is not None:
                break
        self.kill()
        raise AssertionError(f"gateway did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM: a graceful stop (usage flushed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing gets to run."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
