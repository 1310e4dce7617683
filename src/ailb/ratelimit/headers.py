"""OpenAI's x-ratelimit-* response headers: the tightest requests window and the tightest tokens
window, each as limit, remaining and time to reset.

Sent on every limited answer, so the parts that repeat are made once: a window's limit header
when its plan is bound, the reset header of every whole second up to a window's length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ailb.ratelimit import WINDOW_SECONDS, WindowState

Header = tuple[bytes, bytes]

_NAMES = {
    False: (
        b"x-ratelimit-limit-requests",
        b"x-ratelimit-remaining-requests",
        b"x-ratelimit-reset-requests",
    ),
    True: (
        b"x-ratelimit-limit-tokens",
        b"x-ratelimit-remaining-tokens",
        b"x-ratelimit-reset-tokens",
    ),
}
REMAINING_REQUESTS = _NAMES[False][1]
REMAINING_TOKENS = _NAMES[True][1]


def reset_text(seconds: float) -> str:
    """OpenAI's duration style for x-ratelimit-reset-*: 20ms, 1s, 6m0s."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    s = math.ceil(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


# Windows reset within WINDOW_SECONDS + 1: those headers whole, per kind and second.
_RESETS = {
    tokens: tuple((_NAMES[tokens][2], reset_text(s).encode()) for s in range(WINDOW_SECONDS + 2))
    for tokens in (False, True)
}


def limit_header(tokens: bool, limit: int) -> Header:
    return _NAMES[tokens][0], b"%d" % limit


def reset_header(tokens: bool, seconds: float) -> Header:
    s = math.ceil(seconds)
    resets = _RESETS[tokens]
    if 1 <= s < len(resets):
        return resets[s]
    return _NAMES[tokens][2], reset_text(seconds).encode()


def limit_headers(windows: Sequence[WindowState]) -> list[Header]:
    """The headers for an admission's window states (the tightest of each kind)."""
    req: WindowState | None = None
    tok: WindowState | None = None
    for w in windows:
        if w.name.endswith(":tokens"):
            if tok is None or w.remaining < tok.remaining:
                tok = w
        elif req is None or w.remaining < req.remaining:
            req = w
    out: list[Header] = []
    for tokens, tightest in ((False, req), (True, tok)):
        if tightest is not None:
            out += (
                limit_header(tokens, tightest.limit),
                (_NAMES[tokens][1], b"%d" % tightest.remaining),
                reset_header(tokens, tightest.reset_s),
            )
    return out
