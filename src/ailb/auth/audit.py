"""The audit trail: every authentication failure and admin action, one JSON log line each.

It names key ids, never keys; rate-limited per event kind so a flood of bad keys cannot turn
the log into the bottleneck.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

log = logging.getLogger("ailb.audit")

FLOOD_WINDOW_S = 1.0
FLOOD_LINES = 50  # auth failures logged per window; the rest are counted in the next line


class AuditLog:
    def __init__(self) -> None:
        self._window = 0.0
        self._lines = 0
        self._suppressed = 0
        self.failures: Counter[str] = Counter()  # by reason, suppressed lines included (metrics)

    def admin(self, action: str, actor: str, **fields: Any) -> None:
        log.info(action, extra={"audit": True, "actor": actor, **fields})

    def auth_failure(self, reason: str, **fields: Any) -> None:
        self.failures[reason] += 1
        now = time.monotonic()
        if now - self._window >= FLOOD_WINDOW_S:
            self._window, self._lines = now, 0
        self._lines += 1
        if self._lines > FLOOD_LINES:
            self._suppressed += 1
            return
        extra: dict[str, Any] = {"audit": True, "reason": reason, **fields}
        if self._suppressed:
            extra["suppressed_before"] = self._suppressed
            self._suppressed = 0
        log.warning("auth_failed", extra=extra)
