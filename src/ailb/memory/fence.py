"""Fencing remembered and retrieved text as data, so text inside it cannot close the fence."""

from __future__ import annotations

import re

_RUNS = re.compile(r"`{3,}")


def fenced(text: str, label: str) -> str:
    """`text` inside a Markdown code fence longer than any backtick run it contains."""
    longest = max((len(m.group(0)) for m in _RUNS.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{label}\n{text}\n{fence}"
