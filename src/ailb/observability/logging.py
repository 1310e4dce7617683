"""Structured logs: one JSON object per line on stderr. Never secrets, never message content."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import msgspec

# Anything a log call passes that JSON cannot hold is logged as its str(), never dropped.
_encode = msgspec.json.Encoder(enc_hook=str).encode
# uvicorn attaches `color_message`: the same text with ANSI colour codes, noise in a JSON line.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "color_message",
}


MIN_SECRET = 8  # shorter values would redact ordinary words


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every one of `secrets` (longest first, when it matters) as `[redacted]`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


class JSONFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []  # longest first
        self.never_log(*secrets)

    def never_log(self, *values: str | None) -> None:
        """Values no log line may ever carry -- the configured credentials, the master key,
        tokens: replaced by `[redacted]` wherever they appear (a last line of defence; nothing
        should try to log them in the first place). Kept across reloads."""
        new = {v for v in values if v and len(v) >= MIN_SECRET} - set(self._secrets)
        if new:
            self._secrets = sorted({*self._secrets, *new}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self._format(record)
        return redact(line, self._secrets) if self._secrets else line

    def _format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = self.formatException(record.exc_info)
        return _encode(out).decode()


def configure_logging(
    level: str = "INFO", stream: Any = None, secrets: Iterable[str | None] = ()
) -> JSONFormatter:
    """Route every logger (ours, uvicorn's, aiohttp's) through the JSON formatter, which
    redacts `secrets` (and what its never_log is given later)."""
    formatter = JSONFormatter(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    return formatter
