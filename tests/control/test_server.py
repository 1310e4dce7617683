"""The gRPC server's life: on its port with the gateway, or not at all."""

from __future__ import annotations

import grpc
import pytest

from ailb.config import load_settings
from tests.control.client import ControlClient
from tests.gateway import RunningGateway, env_for
from tests.processes import GatewayProcess, free_port

MOCK = "deployments:\n  - {name: demo, provider: mock, models: [mock]}\n"


def test_a_grpc_port_in_use_stops_start_up(gateway_factory, tmp_path):
    port = free_port()
    first = gateway_factory(MOCK, env={"GRPC_PORT": str(port), "ENABLE_MEMORY": "false"})
    assert first.runtime.grpc_port == port
    # A second gateway must not share the port silently (grpc's SO_REUSEPORT default would
    # let it, and take half of MarchProxy's calls): `ailb serve` stops, saying why.
    second = GatewayProcess(
        {"GRPC_PORT": str(port), "AILB_DATA_DIR": str(tmp_path / "second")},
        tmp_path / "second.log",
    )
    with pytest.raises(AssertionError, match="did not start"):
        second.start()
    assert second.proc is not None and second.proc.returncode not in (0, None)
    assert f"cannot listen on 127.0.0.1:{port}" in second.log()
    with ControlClient(f"127.0.0.1:{port}") as ctl:
        assert ctl.status().module_type == "AILB"  # the first one still answers


def test_enable_grpc_false_serves_no_grpc(gateway_factory):
    port = free_port()
    gw = gateway_factory(
        MOCK, env={"GRPC_PORT": str(port), "ENABLE_GRPC": "false", "ENABLE_MEMORY": "false"}
    )
    assert gw.runtime.grpc_port is None
    with ControlClient(f"127.0.0.1:{port}") as ctl, pytest.raises(grpc.RpcError) as e:
        ctl.status()
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_grpc_port_closes_with_the_gateway(gateway_factory, tmp_path):
    values = env_for(MOCK, tmp_path, {"ENABLE_MEMORY": "false"})
    gw = RunningGateway(load_settings(values)).start()
    port = gw.runtime.grpc_port
    with ControlClient(f"127.0.0.1:{port}") as ctl:
        assert ctl.status().module_type == "AILB"
    gw.stop()
    assert gw.runtime.grpc_port is None
    with ControlClient(f"127.0.0.1:{port}") as ctl, pytest.raises(grpc.RpcError) as e:
        ctl.status()
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
