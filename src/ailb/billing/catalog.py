"""Prices from the `genai-prices` library (Pydantic's maintained price list, MIT, its data
shipped inside the package: nothing is fetched).

The library's data is large: importing it takes about a second and 40 MB that the process never
gives back, which the gateway's start-up and idle footprint cannot carry. So prices are looked
up in a child process (`python -m ailb.billing.catalog`: queries as JSON on stdin, prices on
stdout) and kept in AILB_PRICES_CACHE (AILB_DATA_DIR/prices.json) for the library version
that found them: a
gateway starts a child only for models it has not priced before, and a new library version
prices everything again.

A deployment's model is looked up with the provider its base URL names (genai-prices knows the
API hosts of OpenAI, Anthropic, Groq, Together, Azure ...), then with its provider type: a
model name the URL's provider does not list (or a URL no provider claims, a proxy or a test
server) is priced as the provider type's model of that name. Ollama and the mock are local:
they cost nothing, and are not looked up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ailb.billing.prices import CONFIG, LOCAL, LOCAL_PROVIDERS, UNPRICED, Price, Tier
from ailb.config import DEFAULT_BASE_URLS, EnvSettings
from ailb.routing.deployment import DeploymentState

log = logging.getLogger("ailb.prices")

LIBRARY = "genai-prices"
CACHE_FILE = "prices.json"
# The deployment's provider type as genai-prices names the provider.
PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic"}
CHILD_TIMEOUT_S = 60.0
PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")


def prices_file(env: EnvSettings) -> str:
    return env.prices_cache or os.path.join(env.data_dir, CACHE_FILE)


def _claimable(provider: str, url: str | None) -> str | None:
    """A base URL as looked up: None for the provider type's own (looked up by type) and for
    one on this machine or a private network (no provider's API lives there, and tests' random
    ports would each miss the cache)."""
    if not url or url.rstrip("/") == DEFAULT_BASE_URLS.get(provider):
        return None
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url.rstrip("/")
    return None if address.is_private or address.is_loopback else url.rstrip("/")


class Query(msgspec.Struct, frozen=True, array_like=True):
    provider: str  # the deployment's provider type
    base_url: str | None
    model: str  # the name sent upstream

    @property
    def key(self) -> str:
        return f"{self.provider}|{self.base_url or ''}|{self.model}"


class Cache(msgspec.Struct):
    version: str
    prices: dict[str, Price]


def library_version() -> str | None:
    try:
        return metadata.version(LIBRARY)
    except metadata.PackageNotFoundError:
        return None


def _rate(value: Any, tokens: int) -> float | None:
    """A genai-prices price (a Decimal, or tiers of them) for a request of `tokens` input
    tokens; None where the model has no such price."""
    if value is None:
        return None
    tiers = getattr(value, "tiers", None)
    if tiers is None:
        return float(value)
    rate = value.base
    for tier in tiers:  # ascending; a tier applies above its start
        if tokens > tier.start:
            rate = tier.price
    return float(rate)


def price_of(model_price: Any, source: str, model_id: str) -> Price:
    """A genai-prices ModelPrice as a Price."""
    values = [getattr(model_price, k, None) for k in PRICE_KEYS]
    starts = sorted({t.start for v in values for t in (getattr(v, "tiers", None) or ())})

    def rates(tokens: int) -> list[float | None]:
        return [_rate(v, tokens) for v in values]

    inp, out, read, write = rates(0)
    base_in, base_out = inp or 0.0, out or 0.0
    tiers = []
    for start in starts:
        t_in, t_out, t_read, t_write = rates(start + 1)
        t_in = base_in if t_in is None else t_in
        tiers.append(
            Tier(
                start,
                t_in,
                base_out if t_out is None else t_out,
                t_in if t_read is None else t_read,
                t_in if t_write is None else t_write,
            )
        )
    return Price(base_in, base_out, read, write, tuple(tiers), source, model_id)


def resolve_here(queries: Iterable[Query]) -> dict[str, Price]:
    """Look the queries up with the library, in this process (the child; `ailb prices`)."""
    from genai_prices import data_snapshot  # a second and 40 MB: see the module's notes

    snapshot = data_snapshot.get_snapshot()
    source = f"{LIBRARY} {library_version()}"
    now = datetime.now(UTC)
    out: dict[str, Price] = {}
    for q in queries:
        attempts: list[tuple[str | None, str | None]] = []
        if q.base_url:  # (_claimable: not the provider type's own)
            attempts.append((None, q.base_url))
        if q.provider in PROVIDER_IDS:
            attempts.append((PROVIDER_IDS[q.provider], None))
        out[q.key] = UNPRICED
        for provider_id, url in attempts:
            try:
                _, model = snapshot.find_provider_model(q.model, None, provider_id, url)
            except LookupError:
                continue
            out[q.key] = price_of(model.get_prices(now), source, model.id)
            break
    return out


def load_cache(path: str, version: str) -> dict[str, Price]:
    try:
        with open(path, "rb") as f:
            cache = msgspec.json.decode(f.read(), type=Cache)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return {}
    return cache.prices if cache.version == version else {}


def save_cache(path: str, version: str, prices: dict[str, Price]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(msgspec.json.encode(Cache(version, prices)))
        os.replace(tmp, path)
    except OSError as e:  # read-only data directory: priced again at the next start
        log.warning("prices_not_cached", extra={"detail": str(e)})


async def resolve(queries: Iterable[Query], path: str | None) -> dict[str, Price]:
    """Prices of `queries` (local providers excluded) by their key: from the cache file at
    `path`, else from a child process; UNPRICED where the library has none or cannot be run
    (logged)."""
    wanted = {q.key: q for q in queries if q.provider not in LOCAL_PROVIDERS}
    if not wanted:
        return {}
    version = library_version()
    if version is None:
        log.warning("prices_library_missing", extra={"library": LIBRARY})
        return dict.fromkeys(wanted, UNPRICED)
    known = load_cache(path, version) if path else {}
    missing = [q for k, q in wanted.items() if k not in known]
    if missing:
        found = await _child(missing)
        if found is not None:
            known.update(found)
            if path:
                save_cache(path, version, known)
    return {k: known.get(k, UNPRICED) for k in wanted}


async def _child(queries: list[Query]) -> dict[str, Price] | None:
    # The standard library's subprocess in a thread, not the event loop's (uvloop forks):
    # with close_fds off it uses posix_spawn, and forking beside gRPC's threads makes gRPC
    # print a warning that is not a JSON log line. Only the pipes are inherited (Python's own
    # descriptors are not inheritable).
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ailb.billing.catalog"],
            input=msgspec.json.encode(queries),
            capture_output=True,
            timeout=CHILD_TIMEOUT_S,
            close_fds=False,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("prices_lookup_failed", extra={"detail": str(e)[:500]})
        return None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace")[-500:]
        log.warning("prices_lookup_failed", extra={"detail": detail})
        return None
    try:
        return msgspec.json.decode(done.stdout, type=dict[str, Price])
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        log.warning("prices_lookup_failed", extra={"detail": str(e)})
        return None


class Pricer:
    """Prices deployments' models: the health monitor calls it once at start (before the
    gateway is ready) and again for models it discovers. Models nobody can price are said so in
    the log once, and cost nothing until the configuration sets their price."""

    def __init__(self, cache_path: str | None, quiet: bool = False) -> None:
        self.cache_path = cache_path
        self.quiet = quiet  # `ailb prices` shows them instead
        self._told: set[tuple[str, str]] = set()

    async def __call__(self, deployments: Sequence[DeploymentState]) -> None:
        queries = {
            (d.name, public): Query(
                d.config.provider, _claimable(d.config.provider, d.config.base_url), upstream
            )
            for d in deployments
            for public, upstream in d.models.items()
        }
        found = await resolve(queries.values(), self.cache_path)
        unknown = []
        for d in deployments:
            rates = d.config.input_cost_per_1m, d.config.output_cost_per_1m
            prices = {}
            for public in d.models:
                price = found.get(queries[(d.name, public)].key)
                if price is not None:  # (a local provider's: the configured price applies)
                    prices[public] = price.with_overrides(*rates)
            d.prices = prices
            unknown += [(d.name, m) for m in sorted(d.models) if not d.price(m).known]
        if self.quiet:
            return
        new = [u for u in unknown if u not in self._told]
        if new:
            self._told.update(new)
            log.warning(
                "prices_unknown",
                extra={
                    "models": [f"{name}/{model}" for name, model in new],
                    "detail": "no price known: they cost $0 until input_cost_per_1m and "
                    "output_cost_per_1m are set for their deployment",
                },
            )
        sources = [d.price(m).source for d in deployments for m in d.models]
        log.info(
            "prices_loaded",
            extra={
                "models": len(sources),
                "unknown": len(unknown),
                "local_free": sources.count(LOCAL),  # ollama and mock: $0 unless configured
                "configured": sources.count(CONFIG),
            },
        )


def main() -> None:
    queries = msgspec.json.decode(sys.stdin.buffer.read(), type=list[Query])
    sys.stdout.buffer.write(msgspec.json.encode(resolve_here(queries)))


if __name__ == "__main__":
    main()
