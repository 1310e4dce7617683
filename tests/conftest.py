from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ailb.config import load_settings
from ailb.native import stale_builds
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer
from tests.gateway import RunningGateway, env_for
from tests.services import pg_schema, postgres_dsn, redis_url  # noqa: F401

# The slow tier: tests that run a gateway (in this process or another), talk to PostgreSQL or
# Redis, start other processes, or fault-inject. `make test` runs everything (so does CI);
# `make test-fast` leaves these out for a loop of about a minute.
SLOW_FIXTURES = frozenset(
    ("gateway_factory", "openai_upstream", "redis_url", "postgres_dsn", "pg_schema")
)
SLOW_MODULE_NAMES = ("GatewayProcess", "RunningGateway", "subprocess", "FakeServer")
SLOW_DIRECTORIES = ("faults", "deploy", "clients")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name == "clients":  # the real-client matrix, also a tier of its own
            item.add_marker(pytest.mark.clients)
        module = getattr(item, "module", None)
        names = vars(module) if module is not None else {}
        if (
            SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            or any(name in names for name in SLOW_MODULE_NAMES)
            or item.path.parent.name in SLOW_DIRECTORIES
            or _on_a_service(item)
        ):
            item.add_marker(pytest.mark.slow)


def _on_a_service(item: pytest.Item) -> bool:
    """A case parametrized onto Redis or PostgreSQL (its fixture is asked for inside)."""
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(s in callspec.id for s in ("redis", "postgres"))


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_builds()
    if stale:
        raise pytest.UsageError(
            "compiled modules are older than their sources (tests would run the old code): "
            f"{', '.join(stale)}; run `make native`"
        )


@pytest.fixture(scope="session", autouse=True)
def shared_prices_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One file of looked-up prices for every gateway of the session (each test's own data
    directory would start a lookup child, about a second, per gateway with a priced provider).
    A test that looks at the lookup itself sets AILB_PRICES_CACHE to its own file."""
    path = str(tmp_path_factory.mktemp("prices") / "prices.json")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AILB_PRICES_CACHE", path)
        yield


@pytest.fixture
def openai_upstream() -> Iterator[FakeServer]:
    server = fake_openai().start()
    yield server
    server.stop()


@pytest.fixture
def gateway_factory(tmp_path: Any) -> Iterator[Any]:
    """gateway_factory(yaml_text, env={...}) -> RunningGateway (stopped after the test)."""
    running: list[RunningGateway] = []

    def make(
        config_yaml: str | None = None, env: dict[str, str] | None = None, **kw: Any
    ) -> RunningGateway:
        values = env_for(config_yaml, tmp_path, env)
        # A reload reads the same variables again (and the config file, as it is by then).
        gw = RunningGateway(load_settings(values, **kw), lambda: load_settings(values, **kw))
        gw.start()
        running.append(gw)
        return gw

    yield make
    for gw in running:
        gw.stop()


@pytest.fixture
def client_for() -> Iterator[Any]:
    """client_for(gateway) -> an official openai SDK client for it (closed after the test)."""
    clients: list[openai.OpenAI] = []

    def make(gw: RunningGateway, **kw: Any) -> openai.OpenAI:
        c = openai.OpenAI(
            base_url=f"{gw.url}/v1",
            api_key=kw.pop("api_key", "sk-client"),
            max_retries=0,
            timeout=kw.pop("timeout", 20),
            **kw,
        )
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
