"""Speaking HTTP/1.1 by hand over a socket, for requests no client library would send, and
reading what a gateway process holds in memory."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


@dataclass
class Answer:
    status: int | None  # None: the connection closed without an answer
    head: bytes
    body: bytes
    closed: bool  # the server closed the connection after answering
    seconds: float  # from the call until the answer (and the close, when closed)

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == name:
                return v.strip()
        return None


def read_answer(s: socket.socket, started: float | None = None) -> Answer:
    """Everything the server sends until it closes the connection (or, for a keep-alive
    answer with a Content-Length, until the body is complete)."""
    started = time.monotonic() if started is None else started
    data = b""
    closed = False
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = _content_length(head)
            if length is not None and len(rest) >= length and b"connection: close" not in head:
                break
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
    return Answer(status, head, body, closed, time.monotonic() - started)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return int(v.strip())
    return None


def request_head(
    method: str, path: str, headers: dict[str, str] | None = None, **extra: str
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in {**(headers or {}), **extra}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Answer:
    """One request with a Content-Length, on a new connection (closed after the answer)."""
    with connect(port) as s:
        started = time.monotonic()
        head = request_head(method, path, headers, **{"Content-Length": str(len(body))})
        s.sendall(head + body)
        return read_answer(s, started)


def peak_rss_reset(pid: int) -> None:
    """Reset the process's peak resident size (VmHWM) to what it holds now (Linux, root or
    the process's owner)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since start or since peak_rss_reset), in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))
