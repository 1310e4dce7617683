"""Remembered and retrieved text put into a request: fenced as data, so text inside it cannot
close the fence, and placed after the client's own system messages."""

from __future__ import annotations

import re
from typing import Any

_RUNS = re.compile(r"`{3,}")


def fenced(text: str, label: str) -> str:
    """`text` inside a Markdown code fence longer than any backtick run it contains."""
    longest = max((len(m.group(0)) for m in _RUNS.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{label}\n{text}\n{fence}"


def insert_after_system(
    messages: list[dict[str, Any]], block: dict[str, Any]
) -> list[dict[str, Any]]:
    """`messages` with `block` after the leading system and developer messages."""
    i = 0
    while i < len(messages) and messages[i].get("role") in ("system", "developer"):
        i += 1
    return [*messages[:i], block, *messages[i:]]
