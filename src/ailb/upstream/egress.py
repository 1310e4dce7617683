"""Egress proxies: which proxy, if any, carries a deployment's upstream calls.

As httpx and the official SDKs do: `HTTPS_PROXY` for https upstreams, `HTTP_PROXY` for http
ones (the lowercase forms win when both are set), and `NO_PROXY` for hosts reached directly (a
comma-separated list: `*` for all; a domain, with or without a leading `.` or `*.`, matches
itself and its subdomains; an IP address or CIDR block; each optionally with `:port`). A
deployment's own `proxy:` in the config file overrides the environment (`none` forces a direct
connection). Resolved once when the settings are loaded (`resolve`), so the running
configuration says which proxy each deployment uses.

Only `http://` proxies: an https upstream goes through a CONNECT tunnel with TLS end to end
(the upstream's certificate is verified by its own host name), a plain http one is sent in
absolute form. Credentials in the proxy URL go as `Proxy-Authorization: Basic`.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DIRECT = "none"  # `proxy: none` in the config file: no proxy, whatever the environment says
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization header value, when the URL has a user

    @property
    def address(self) -> str:
        """host:port, for messages (never the credentials)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def validate_proxy_url(url: str) -> None:
    """Raise ValueError naming what is wrong with a proxy URL (never echoing credentials)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme != "http":
        raise ValueError("must be an http:// URL (https:// and socks proxies are not supported)")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme://[user:password@]host[:port] only")
    if port == 0:
        raise ValueError("has port 0")


def parse_proxy(url: str) -> Proxy:
    validate_proxy_url(url)
    parts = urlsplit(url)
    auth = None
    if parts.username is not None:
        user = unquote(parts.username)
        password = unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        auth = f"Basic {token}"
    assert parts.hostname is not None
    return Proxy(parts.hostname, parts.port or 80, auth)


def _env(env: Mapping[str, str], name: str) -> str:
    """The lowercase form wins when both are set, as in httpx and urllib."""
    return (env.get(name.lower()) or env.get(name) or "").strip()


def bypassed(base_url: str, no_proxy: str) -> bool:
    """Whether NO_PROXY sends `base_url` direct."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split("://", 1)[-1]  # httpx also accepts scheme://host
        entry_port = None
        if entry.startswith("["):  # [v6] or [v6]:port
            addr, _, rest = entry[1:].partition("]")
            entry, entry_port = addr, rest.removeprefix(":") or None
        elif entry.count(":") == 1:
            entry, entry_port = entry.split(":")
        if entry_port is not None and entry_port != str(port):
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = entry.removeprefix("*").removeprefix(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def env_proxy(base_url: str, env: Mapping[str, str]) -> str:
    """The proxy URL the environment gives `base_url`; "" for a direct connection."""
    scheme = urlsplit(base_url).scheme
    url = _env(env, "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY")
    if not url or bypassed(base_url, _env(env, "NO_PROXY")):
        return ""
    return url


def resolve(configured: str | None, base_url: str, env: Mapping[str, str]) -> str:
    """The effective proxy of a deployment: its own `proxy:` (`none` or empty: direct), else
    the environment's. "" means direct."""
    if configured is not None:
        return "" if configured.strip().lower() in ("", DIRECT) else configured
    return env_proxy(base_url, env)
