from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.control.client import ControlClient
from tests.control.pki import Pki, make_pki
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer
from tests.gateway import RunningGateway


@pytest.fixture
def upstreams() -> Iterator[Callable[[int], list[FakeServer]]]:
    """upstreams(n) -> n fake OpenAI servers (stopped after the test)."""
    started: list[FakeServer] = []

    def make(n: int) -> list[FakeServer]:
        servers = [fake_openai().start() for _ in range(n)]
        started.extend(servers)
        return servers

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def control() -> Iterator[Callable[[RunningGateway], ControlClient]]:
    """control(gateway) -> a ModuleService client on its gRPC port with the token it requires,
    if any (closed after the test)."""
    clients: list[ControlClient] = []

    def make(gw: RunningGateway) -> ControlClient:
        assert gw.runtime.grpc_port, "the gateway serves no gRPC"
        token = gw.settings.control_credential
        client = ControlClient(f"127.0.0.1:{gw.runtime.grpc_port}", token)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Two CAs and their certificates, made once per test session."""
    return make_pki(Path(tmp_path_factory.mktemp("pki")))
