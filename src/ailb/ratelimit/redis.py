"""Admission shared by every gateway instance through Redis.

Each check (and each settle) is one Lua script, so it is atomic across instances and costs one
round trip (on the lean client in resp.py, pipelined on one connection). Time comes from
Redis's own clock, so instances with skewed clocks still agree on the buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Literal, cast
from urllib.parse import urlsplit

from ailb.ratelimit import (
    RESERVATION_TTL,
    Admission,
    AdmissionUnavailable,
    Flex,
    NamedTicket,
    Quota,
    RateWindow,
    Ticket,
    WindowState,
)
from ailb.ratelimit.resp import Arg, RespClient, RespError, Script

Reason = Literal["rate", "quota", "revoked"]

# A script that sets the revocation's expiry on the same clock as the checks read it.
REVOKE = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
redis.call('SET', KEYS[1], string.format('%.17g', now + tonumber(ARGV[2])), 'EX', ARGV[2])
"""


class RedisAdmitter:
    def __init__(
        self,
        url: str,
        prefix: str = "ailb:",
        timeout: float = 0.25,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = RespClient(url, timeout)
        parts = urlsplit(url)
        host = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        self._where = parts.path if parts.scheme == "unix" else host
        self._password = parts.password
        self._prefix = prefix
        self._clock = clock
        scripts = files("ailb.ratelimit")
        self._admit = Script(scripts.joinpath("admit.lua").read_text())
        self._settle = Script(scripts.joinpath("settle.lua").read_text())
        self._revoke = Script(REVOKE)

    async def admit(
        self,
        request_id: str,
        windows: Sequence[RateWindow],
        quota: Quota | None = None,
        revocation: str | None = None,
        flex: Flex | None = None,
    ) -> Admission:
        keys = [self._prefix + w.name for w in windows]
        args: list[Arg] = [
            self._now(),
            len(windows),
            int(quota is not None),
            int(revocation is not None),
            request_id,
            RESERVATION_TTL,
        ]
        for w in windows:
            args += [w.limit, w.cost]
        if quota is not None:
            keys.append(self._prefix + quota.name)
            args += [
                _opt(quota.usd_limit),
                _opt(quota.token_limit),
                quota.usd_estimate,
                quota.token_estimate,
                _opt(quota.ttl),
                quota.seed_usd,
                quota.seed_tokens,
            ]
        if flex is not None:
            args += [flex.most, flex.least, flex.step, flex.usd_per_token]
        if revocation is not None:
            keys.append(self._prefix + "revoked:" + revocation)
        reply = cast(list[str | int], await self._run(self._admit, keys, args))
        reason, refusing, retry_after, second, granted = reply[:5]
        extra = int(granted)
        states = [
            WindowState(w.name, w.limit, int(reply[5 + 2 * i]), float(reply[6 + 2 * i]))
            for i, w in enumerate(windows)
        ]
        if reason == "":
            token_windows = tuple(
                (w.name, w.cost + extra) for w in windows if w.name.endswith(":tokens")
            )
            ticket = NamedTicket(request_id, int(second), token_windows, quota)
            return Admission(allowed=True, windows=states, ticket=ticket, extra=extra)
        if reason == "rate":
            denied_by = windows[int(refusing) - 1].name
        elif reason == "quota":
            denied_by = cast(Quota, quota).name
        else:
            denied_by = cast(str, revocation)
        return Admission(
            allowed=False,
            windows=states,
            denied_by=denied_by,
            reason=cast(Reason, reason),
            retry_after=float(retry_after),
        )

    async def settle(self, ticket: Ticket, tokens: int, usd: float) -> None:
        assert isinstance(ticket, NamedTicket), "a ticket from another admitter"
        if ticket.settled or (not ticket.token_windows and ticket.quota is None):
            return
        ticket.settled = True  # a repeated settle must not count twice
        keys = [self._prefix + name for name, _ in ticket.token_windows]
        args: list[Arg] = [
            self._now(),
            ticket.second,
            int(ticket.quota is not None),
            ticket.request_id,
            usd,
            tokens,
        ]
        args += [tokens - estimate for _, estimate in ticket.token_windows]
        if ticket.quota is not None:
            keys.append(self._prefix + ticket.quota.name)
        await self._run(self._settle, keys, args)

    async def revoke(self, key_id: str, ttl: int) -> None:
        await self._run(self._revoke, [self._prefix + "revoked:" + key_id], [self._now(), ttl])

    async def close(self) -> None:
        await self._client.close()

    def _now(self) -> Arg:
        return "" if self._clock is None else self._clock()

    async def _run(self, script: Script, keys: list[str], args: list[Arg]) -> object:
        try:
            return await self._client.evalsha(script, keys, args)
        except (ConnectionError, TimeoutError, OSError, RespError) as exc:
            detail = str(exc) or type(exc).__name__
            if self._password:
                detail = detail.replace(self._password, "***")
            raise AdmissionUnavailable(f"Redis at {self._where} is unreachable: {detail}") from exc


def _opt(value: float | None) -> Arg:
    return "" if value is None else value
