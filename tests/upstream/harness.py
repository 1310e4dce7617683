"""A real forward proxy (proxy.py, from PyPI) on 127.0.0.1 and a private CA for https fakes."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ForwardProxy:
    """`python -m proxy` in a subprocess, with the counting plugin (tests/upstream/counter.py)."""

    def __init__(self, workdir: Path, basic_auth: str | None = None) -> None:
        self.port = free_port()
        self.log = workdir / f"proxy-{self.port}.requests"
        self.log.write_text("")
        args = [
            sys.executable, "-m", "proxy",
            "--hostname", "127.0.0.1", "--port", str(self.port),
            "--num-acceptors", "1", "--num-workers", "1",
            "--plugins", "tests.upstream.counter.Counter",
            "--log-level", "WARNING",
        ]  # fmt: skip
        if basic_auth:
            args += ["--basic-auth", basic_auth]
        env = {**os.environ, "AILB_TEST_PROXY_LOG": str(self.log), "PYTHONPATH": str(REPO)}
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(var, None)  # the proxy itself connects directly
        self.output = workdir / f"proxy-{self.port}.out"
        with self.output.open("w") as out:
            self.process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    output = self.output.read_text()
                    raise RuntimeError(f"proxy.py did not start: {output}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def carried(self) -> list[str]:
        """One line per request carried: `POST 127.0.0.1:PORT /v1/...` or `CONNECT host:PORT`."""
        return [line.strip() for line in self.log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def make_ca(workdir: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and a server certificate for localhost / 127.0.0.1 signed by it, made
    with the openssl command: (the CA's PEM file, a server SSL context using the cert)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=workdir, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=AILB test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")  # fmt: skip
    (workdir / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2",
        "-extfile", "server.ext")  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(workdir / "server.pem", workdir / "server.key")
    return workdir / "ca.pem", server
