"""Who may call the gRPC control service: with a token configured (AILB_CONTROL_TOKEN, else
AILB_MASTER_KEY) every ModuleService RPC and reflection need `authorization: Bearer <token>`;
grpc.health.v1 stays open for probes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
import httpx2
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ailb.config import load_settings
from ailb.control.proto import module_service_pb2 as pb
from tests.control.client import TIMEOUT, ControlClient
from tests.gateway import RunningGateway, env_for

TOKEN = "control-token-for-tests"
MASTER = "master-key-for-tests"
MOCK = "deployments:\n  - {name: demo, provider: mock, models: [mock]}\n"
HI = [{"role": "user", "content": "hi"}]


def rpcs(ctl: ControlClient) -> dict[str, Callable[[Any], Any]]:
    """Every ModuleService RPC, called with the given metadata; each one would change or
    reveal something if it were served."""
    s = ctl.stub
    cap = pb.RateLimitConfig(requests_per_second=1, enabled=True)
    starve = [pb.TrafficWeight(backend_name="demo", weight=0)]
    return {
        "GetStatus": lambda md: s.GetStatus(pb.StatusRequest(), metadata=md, timeout=TIMEOUT),
        "GetRoutes": lambda md: s.GetRoutes(pb.RoutesRequest(), metadata=md, timeout=TIMEOUT),
        "ApplyRateLimit": lambda md: s.ApplyRateLimit(
            pb.RateLimitRequest(route_name="*", config=cap), metadata=md, timeout=TIMEOUT
        ),
        "GetMetrics": lambda md: s.GetMetrics(pb.MetricsRequest(), metadata=md, timeout=TIMEOUT),
        "SetTrafficWeight": lambda md: s.SetTrafficWeight(
            pb.TrafficWeightRequest(route_name="mock", weights=starve),
            metadata=md,
            timeout=TIMEOUT,
        ),
        "Reload": lambda md: s.Reload(pb.ReloadRequest(force=True), metadata=md, timeout=TIMEOUT),
    }


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value
    return e.value


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def plain(gw: RunningGateway) -> ControlClient:
    return ControlClient(f"127.0.0.1:{gw.runtime.grpc_port}")


def untouched(gw: RunningGateway) -> None:
    """No refused call changed anything: weights, limits and traffic as before."""
    assert gw.runtime.router.weights("mock") == {"demo": 1}
    assert not gw.runtime.routes.active  # no limit on any model, "*" included
    r = httpx2.post(f"{gw.url}/v1/chat/completions", json={"model": "mock", "messages": HI},
                    headers={"authorization": f"Bearer {MASTER}"}, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text


WRONG = {
    "none": [],
    "wrong token": bearer("control-token-for-tesTS"),
    "token without the scheme": [("authorization", TOKEN)],
    "another scheme": [("authorization", f"Basic {TOKEN}")],
    "the token as a prefix": bearer(TOKEN[:-1]),
    "the token and more": bearer(TOKEN + "x"),
    "the master key instead": bearer(MASTER),
    "another header": [("x-api-key", TOKEN)],
    "the right one and a wrong one": [*bearer(TOKEN), *bearer("nope-nope-nope")],
}


@pytest.mark.parametrize("metadata", list(WRONG.values()), ids=list(WRONG))
def test_every_rpc_needs_the_control_token(gateway_factory, metadata):
    gw = gateway_factory(MOCK, env={"AILB_CONTROL_TOKEN": TOKEN, "AILB_MASTER_KEY": MASTER})
    with plain(gw) as ctl:
        for name, call in rpcs(ctl).items():
            error = refused(lambda call=call: call(metadata))
            assert TOKEN not in (error.details() or ""), name
    untouched(gw)


def test_the_right_token_is_served(gateway_factory):
    gw = gateway_factory(MOCK, env={"AILB_CONTROL_TOKEN": TOKEN, "AILB_MASTER_KEY": MASTER})
    with plain(gw) as ctl:
        calls = rpcs(ctl)
        assert calls["GetStatus"](bearer(TOKEN)).module_type == "AILB"
        assert calls["SetTrafficWeight"](bearer(TOKEN)).success
        # The scheme is case-insensitive (RFC 9110 11.1), the token is not.
        lower = [("authorization", f"bearer {TOKEN}")]
        assert [r.name for r in calls["GetRoutes"](lower).routes] == ["mock"]
    assert gw.runtime.router.weights("mock") == {"demo": 0}


def test_the_master_key_is_the_token_when_no_control_token_is_set(gateway_factory):
    gw = gateway_factory(MOCK, env={"AILB_MASTER_KEY": MASTER})
    with plain(gw) as ctl:
        calls = rpcs(ctl)
        for call in calls.values():
            refused(lambda call=call: call([]))
        refused(lambda: calls["GetStatus"](bearer(TOKEN)))
        assert calls["GetStatus"](bearer(MASTER)).module_type == "AILB"


def test_health_stays_open_and_reflection_needs_the_token(gateway_factory):
    gw = gateway_factory(MOCK, env={"AILB_CONTROL_TOKEN": TOKEN})
    with plain(gw) as ctl:
        serving = health_pb2.HealthCheckResponse.SERVING
        assert ctl.check().status == serving
        assert ctl.check("marchproxy.ModuleService").status == serving
        watch = health_pb2_grpc.HealthStub(ctl.channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
        )
        assert next(watch).status == serving  # a server stream, open too
        watch.cancel()
        # Reflection is a bidirectional stream: refused before it reads a request.
        refused(ctl.listed_services)
        refused(lambda: ctl.file_of("marchproxy.ModuleService"))
        idle = ctl.reflection.ServerReflectionInfo(iter(()), timeout=TIMEOUT)
        refused(lambda: list(idle))
        # A method no service has is refused the same way: nothing is learnt without the token.
        unknown = ctl.channel.unary_unary("/marchproxy.ModuleService/DropTables")
        refused(lambda: unknown(b"", timeout=TIMEOUT))
    with ControlClient(f"127.0.0.1:{gw.runtime.grpc_port}", TOKEN) as ctl:
        assert "marchproxy.ModuleService" in ctl.listed_services()
        assert ctl.file_of("marchproxy.ModuleService").package == "marchproxy"
        with pytest.raises(grpc.RpcError) as e:
            ctl.channel.unary_unary("/marchproxy.ModuleService/DropTables")(b"", timeout=TIMEOUT)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_refusals_are_audited_without_the_token(gateway_factory, caplog):
    caplog.set_level(logging.INFO, logger="ailb.audit")
    gw = gateway_factory(MOCK, env={"AILB_CONTROL_TOKEN": TOKEN})
    wrong = "a-wrong-control-token"
    with plain(gw) as ctl:
        calls = rpcs(ctl)
        refused(lambda: calls["SetTrafficWeight"](bearer(wrong)))
        refused(lambda: calls["Reload"]([]))
    failed = [r.__dict__ for r in caplog.records if r.getMessage() == "auth_failed"]
    assert [(f["reason"], f["method"]) for f in failed] == [
        ("invalid_control_token", "/marchproxy.ModuleService/SetTrafficWeight"),
        ("missing_control_token", "/marchproxy.ModuleService/Reload"),
    ]
    assert all(f["peer"].startswith("ipv4:127.0.0.1:") for f in failed)
    text = caplog.text + repr(failed)
    assert wrong not in text and TOKEN not in text
    metrics = httpx2.get(f"{gw.url}/metrics", timeout=10).text
    assert 'reason="invalid_control_token"' in metrics


def test_an_open_control_plane_says_so_at_start_and_in_healthz(gateway_factory, caplog):
    caplog.set_level(logging.WARNING, logger="ailb.control")
    gw = gateway_factory(MOCK)
    warnings = [r for r in caplog.records if r.name == "ailb.control"]
    assert any("CONTROL PLANE IS OPEN" in r.getMessage() for r in warnings), warnings
    control = httpx2.get(f"{gw.url}/healthz", timeout=10).json()["control"]
    assert control["enabled"] is True and control["auth"] == "disabled"
    assert control["tls"] == "off"
    assert "AILB_CONTROL_TOKEN" in control["warning"]
    with plain(gw) as ctl:
        assert ctl.status().module_type == "AILB"  # open, as it says


def test_healthz_reports_a_protected_control_plane(gateway_factory, caplog):
    caplog.set_level(logging.WARNING, logger="ailb.control")
    gw = gateway_factory(MOCK, env={"AILB_MASTER_KEY": MASTER})
    assert not [r for r in caplog.records if "CONTROL PLANE" in r.getMessage()]
    control = httpx2.get(f"{gw.url}/healthz", timeout=10).json()["control"]
    assert control == {"enabled": True, "auth": "enabled", "tls": "off"}
    off = gateway_factory(MOCK, env={"ENABLE_GRPC": "false"})
    assert httpx2.get(f"{off.url}/healthz", timeout=10).json()["control"] == {"enabled": False}


def test_the_token_is_bound_at_start_up(tmp_path):
    values = env_for(MOCK, tmp_path, {"AILB_CONTROL_TOKEN": TOKEN})
    gw = RunningGateway(load_settings(values), lambda: load_settings(values)).start()
    try:
        values["AILB_CONTROL_TOKEN"] = "a-new-control-token"
        with ControlClient(f"127.0.0.1:{gw.runtime.grpc_port}", TOKEN) as ctl:
            refused_reload = ctl.reload()
            assert not refused_reload.success
            assert "AILB_CONTROL_TOKEN" in refused_reload.message
            assert "a-new-control-token" not in refused_reload.message
            forced = ctl.reload(force=True)
            assert "needs a restart (kept as running): AILB_CONTROL_TOKEN" in forced.message
            assert ctl.status().module_type == "AILB"  # the running token still opens it
        with plain(gw) as ctl:
            refused(lambda: rpcs(ctl)["GetStatus"](bearer("a-new-control-token")))
    finally:
        gw.stop()
