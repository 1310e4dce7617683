"""ISO 8601 / RFC 3339 times from clients (key expiry, usage ranges)."""

from __future__ import annotations

import re
from datetime import datetime

_LEAP = re.compile(r"(T\d\d:\d\d):60")


def parse_datetime(text: str) -> datetime:
    """A date (`2026-12-01`: midnight) or a date-time as ISO 8601 and RFC 3339 write it: `T`,
    `t` or a space between date and time, `Z`/`z` or an offset, or no zone (naive: the caller
    decides); a leap second (`:60`) counts as `:59`. ValueError for anything else, years
    before 1 included."""
    s = text.strip()
    if len(s) > 10 and s[10] in "t ":
        s = f"{s[:10]}T{s[11:]}"
    if s[-1:] in ("z", "Z"):
        s = s[:-1] + "+00:00"
    return datetime.fromisoformat(_LEAP.sub(r"\1:59", s))
