"""What every HTTP provider shares: its upstream endpoint, error mapping, stream framing."""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from ailb.config import DeploymentConfig, Timeouts
from ailb.observability.logging import MIN_SECRET
from ailb.providers.base import UpstreamError, error_message_from
from ailb.upstream import egress
from ailb.upstream.egress import parse_proxy
from ailb.upstream.http import Pool, Response

_decode = msgspec.json.decode
encode = msgspec.json.Encoder().encode


class Upstream:
    """A deployment's HTTP endpoint: connection pool, fixed headers and timeouts."""

    def __init__(self, config: DeploymentConfig, headers: Mapping[str, str]) -> None:
        assert config.base_url is not None
        self.config = config
        self.timeouts = config.timeouts
        # The effective proxy (load_settings resolved the environment's into the config).
        url = config.proxy or ""
        proxy = None if url.strip().lower() in ("", egress.DIRECT) else parse_proxy(url)
        self.pool = Pool(
            config.base_url,
            name=config.name,
            max_connections=config.max_connections,
            connect_timeout=config.timeouts.connect,
            ssl_context=ssl.create_default_context(cafile=config.ca_file)
            if config.ca_file
            else None,
            proxy=proxy,
        )
        self._headers = {
            "User-Agent": "ailb",
            "Accept-Encoding": "identity",
            **headers,
            **config.headers,
        }
        # What an upstream's error text must never carry back into our answers and logs: the
        # credentials this endpoint is sent (whatever their shape: `scrub` only knows the
        # common ones) and every configured header value.
        self.secrets = credentials_in(headers) + tuple(
            v for v in config.headers.values() if len(v) >= MIN_SECRET
        )
        if proxy is not None and proxy.authorization:
            self.secrets += (proxy.authorization.removeprefix("Basic "),)

    def head(self, method: str, path: str, extra: Mapping[str, str] | None = None) -> bytes:
        """The request head for one endpoint, built once (credentials included)."""
        return self.pool.head(method, path, {**self._headers, **(extra or {})})

    async def send(self, head: bytes, body: bytes = b"", *, stream: bool = True) -> Response:
        """A 2xx response with its body unread; any other status becomes an UpstreamError.

        `stream`: the answer comes as events, so the first byte and each gap between events
        are bounded (`first_byte`, `idle`). A non-streamed answer's first byte comes only when
        the whole answer is done, however long it takes to generate: `total` alone bounds it
        (and the request deadline, by cancellation)."""
        first_byte, idle, total = exchange_timeouts(self.timeouts, stream)
        resp = await self.pool.request(head, body, first_byte=first_byte, idle=idle, total=total)
        if resp.status >= 300:
            try:
                raise await status_error(resp, self.secrets)
            finally:
                resp.release()
        return resp

    async def fetch(self, head: bytes, body: bytes = b"") -> bytes:
        """send() and the whole body read, the connection handed back either way."""
        resp = await self.send(head, body, stream=False)
        try:
            return await resp.read()
        finally:
            resp.release()

    async def close(self) -> None:
        await self.pool.close()


def exchange_timeouts(t: Timeouts, stream: bool) -> tuple[float, float, float]:
    """(first byte, idle, total) for one exchange. Only a stream has a first byte and gaps
    that say anything about the upstream's health; a whole answer (chat, embeddings, a model
    list) arrives when it is done, so first byte and idle are only bounded by `total`."""
    if stream:
        return t.first_byte, t.idle, t.total
    return t.total, t.total, t.total


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or HTTP date); None if absent."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def model_ids(obj: Any) -> list[str]:
    """The ids of an OpenAI-shaped model list (`{"data": [{"id": ...}]}`; Anthropic's too)."""
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise UpstreamError("protocol", "bad model list")
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def decode_json(raw: bytes, what: str) -> Any:
    try:
        return _decode(raw)
    except msgspec.DecodeError:
        raise UpstreamError("protocol", f"{what}: upstream sent a body that is not JSON") from None


_CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})


def credentials_in(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The secrets among request headers: API keys, bearer tokens."""
    out = []
    for name, value in headers.items():
        if name.lower() in _CREDENTIAL_HEADERS:
            token = value.removeprefix("Bearer ").strip()
            out += [v for v in (value, token) if len(v) >= MIN_SECRET]
    return tuple(out)


async def status_error(resp: Response, secrets: tuple[str, ...] = ()) -> UpstreamError:
    try:
        raw = await resp.read()
        payload = _decode(raw) if raw else None
    except (UpstreamError, msgspec.DecodeError):
        payload = None
    msg, code, param = error_message_from(payload, secrets)
    status = resp.status
    return UpstreamError(
        "status",
        f"upstream answered HTTP {status}" + (f": {msg}" if msg else ""),
        status=status,
        retry_after=parse_retry_after(resp.headers),
        client_message=msg,
        code=code,
        param=param,
    )


class SSEDecoder:
    """Incremental Server-Sent Events parser: bytes in, (event, data) pairs out.

    Works on whatever the socket delivered, so events that arrived together are handled
    (and later written to the client) together."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[tuple[str | None, str]]:
        buf = self._buf + chunk if self._buf else chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    yield self._event, "\n".join(self._data)
                self._event, self._data = None, []
                continue
            if line[:1] == b":":
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        self._buf = buf[start:]

    def finish(self) -> Iterator[tuple[str | None, str]]:
        """Flush an event the upstream did not terminate with a blank line."""
        if self._buf:
            yield from self.feed(b"\n")
        if self._data:
            yield self._event, "\n".join(self._data)
            self._event, self._data = None, []


class NDJSONDecoder:
    """Incremental newline-delimited JSON parser."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> Iterator[Any]:
        buf = self._buf + chunk if self._buf else chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl].strip()
            start = nl + 1
            if line:
                yield decode_json(line, "stream line")
        self._buf = buf[start:]

    def finish(self) -> Iterator[Any]:
        line, self._buf = self._buf.strip(), b""
        if line:
            yield decode_json(line, "stream line")
