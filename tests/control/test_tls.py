"""TLS and mutual TLS on the gRPC control service (GRPC_TLS_CERT, GRPC_TLS_KEY,
GRPC_TLS_CLIENT_CA), with certificates made for the test; and GRPC_HOST."""

from __future__ import annotations

import grpc
import httpx2
import pytest
from grpc_health.v1 import health_pb2

from ailb.app import create_app
from ailb.config import ConfigError, load_settings
from tests.control.client import ControlClient
from tests.control.pki import Pair, Pki
from tests.gateway import env_for
from tests.processes import GatewayProcess, free_port

TOKEN = "control-token-for-tests"
MOCK = "deployments:\n  - {name: demo, provider: mock, models: [mock]}\n"


def tls_env(pki: Pki, mutual: bool = False) -> dict[str, str]:
    env = {
        "AILB_CONTROL_TOKEN": TOKEN,
        "GRPC_TLS_CERT": str(pki.server.cert),
        "GRPC_TLS_KEY": str(pki.server.key),
    }
    if mutual:
        env["GRPC_TLS_CLIENT_CA"] = str(pki.ca.cert)
    return env


def trusting(pki: Pki, client: Pair | None = None) -> grpc.ChannelCredentials:
    """Channel credentials that trust the test CA, presenting `client`'s certificate if given."""
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def unavailable(ctl: ControlClient) -> None:
    with pytest.raises(grpc.RpcError) as e:
        ctl.status()
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value


def test_tls_serves_clients_that_trust_the_certificate(gateway_factory, pki):
    gw = gateway_factory(MOCK, env=tls_env(pki))
    target = f"127.0.0.1:{gw.runtime.grpc_port}"
    with ControlClient(target, TOKEN, trusting(pki)) as ctl:
        assert ctl.status().module_type == "AILB"
        assert ctl.check().status == health_pb2.HealthCheckResponse.SERVING  # health too
    with ControlClient(target, TOKEN) as ctl:
        unavailable(ctl)  # plaintext: no handshake, no service
    other = grpc.ssl_channel_credentials(root_certificates=pki.other_ca.cert.read_bytes())
    with ControlClient(target, TOKEN, other) as ctl:
        unavailable(ctl)  # a client that does not trust the server's CA stops at the handshake
    with ControlClient(target, None, trusting(pki)) as ctl, pytest.raises(grpc.RpcError) as e:
        ctl.status()
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED  # TLS does not replace the token


def test_mutual_tls_serves_only_clients_with_a_certificate_from_the_ca(gateway_factory, pki):
    gw = gateway_factory(MOCK, env=tls_env(pki, mutual=True))
    target = f"127.0.0.1:{gw.runtime.grpc_port}"
    with ControlClient(target, TOKEN, trusting(pki, pki.client)) as ctl:
        assert ctl.status().module_type == "AILB"
    with ControlClient(target, TOKEN, trusting(pki)) as ctl:
        unavailable(ctl)  # no client certificate
    with ControlClient(target, TOKEN, trusting(pki, pki.stranger)) as ctl:
        unavailable(ctl)  # a certificate from another CA
    with ControlClient(target, TOKEN, trusting(pki, pki.server)) as ctl:
        # The CA's server certificate is not for clients (extendedKeyUsage serverAuth only).
        unavailable(ctl)


def test_health_reports_tls(gateway_factory, pki):
    gw = gateway_factory(MOCK, env=tls_env(pki, mutual=True))
    control = httpx2.get(f"{gw.url}/healthz", timeout=10).json()["control"]
    assert control == {"enabled": True, "auth": "enabled", "tls": "mutual"}
    one_way = gateway_factory(MOCK, env=tls_env(pki))
    assert httpx2.get(f"{one_way.url}/healthz", timeout=10).json()["control"]["tls"] == "on"


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        (("GRPC_TLS_KEY",), "GRPC_TLS_KEY: set GRPC_TLS_CERT too"),
        (("GRPC_TLS_CERT",), "GRPC_TLS_CERT: set GRPC_TLS_KEY too"),
        (("GRPC_TLS_CLIENT_CA",), "GRPC_TLS_CLIENT_CA: needs GRPC_TLS_CERT and GRPC_TLS_KEY"),
        (
            ("GRPC_TLS_CLIENT_CA", "GRPC_TLS_CERT"),
            "GRPC_TLS_CERT: set GRPC_TLS_KEY too",
        ),
    ],
)
def test_incomplete_tls_settings_are_refused(pki, variables, problem):
    full = tls_env(pki, mutual=True)
    with pytest.raises(ConfigError) as e:
        load_settings({v: full[v] for v in variables})
    assert str(e.value).startswith(problem)


def _bad_files(pki: Pki, tmp_path) -> dict[str, tuple[dict[str, str], str]]:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    unreadable = tmp_path / "a-directory"
    unreadable.mkdir()
    missing = str(tmp_path / "nowhere.pem")
    return {
        "missing cert": ({"GRPC_TLS_CERT": missing}, f"GRPC_TLS_CERT: cannot read {missing}"),
        "missing key": ({"GRPC_TLS_KEY": missing}, f"GRPC_TLS_KEY: cannot read {missing}"),
        "missing client CA": (
            {"GRPC_TLS_CLIENT_CA": missing},
            f"GRPC_TLS_CLIENT_CA: cannot read {missing}",
        ),
        "unreadable key": (
            {"GRPC_TLS_KEY": str(unreadable)},
            f"GRPC_TLS_KEY: cannot read {unreadable}",
        ),
        "cert not PEM": (
            {"GRPC_TLS_CERT": str(garbage)},
            "GRPC_TLS_CERT: not a PEM certificate",
        ),
        "key not PEM": (
            {"GRPC_TLS_KEY": str(pki.server.cert)},
            "GRPC_TLS_KEY: not the PEM private key of GRPC_TLS_CERT",
        ),
        "key of another certificate": (
            {"GRPC_TLS_KEY": str(pki.client.key)},
            "GRPC_TLS_KEY: not the PEM private key of GRPC_TLS_CERT",
        ),
        "client CA not PEM": (
            {"GRPC_TLS_CLIENT_CA": str(garbage)},
            "GRPC_TLS_CLIENT_CA: not a PEM certificate",
        ),
    }


BAD_FILES = [
    "missing cert",
    "missing key",
    "missing client CA",
    "unreadable key",
    "cert not PEM",
    "key not PEM",
    "key of another certificate",
    "client CA not PEM",
]


@pytest.mark.parametrize("case", BAD_FILES)
def test_tls_files_are_read_at_start(pki, tmp_path, case):
    change, problem = _bad_files(pki, tmp_path)[case]
    env = {**tls_env(pki, mutual=True), **change}
    settings = load_settings(env_for(MOCK, tmp_path, env))  # the paths are not read yet
    with pytest.raises(ConfigError) as e:
        create_app(settings)
    assert str(e.value).startswith(problem), e.value


def test_ailb_serve_stops_on_an_unreadable_tls_file(pki, tmp_path):
    missing = str(tmp_path / "nowhere.key")
    env = {**tls_env(pki), "GRPC_TLS_KEY": missing, "AILB_DATA_DIR": str(tmp_path / "data")}
    gateway = GatewayProcess(env, tmp_path / "serve.log")
    with pytest.raises(AssertionError, match="did not start"):
        gateway.start()
    assert gateway.proc is not None and gateway.proc.returncode == 2
    assert f"ailb: configuration error: GRPC_TLS_KEY: cannot read {missing}" in gateway.log()
    assert "Traceback" not in gateway.log()


def test_grpc_host_binds_the_control_service_apart_from_http(gateway_factory):
    port = free_port()
    gw = gateway_factory(
        MOCK, env={"HOST": "127.0.0.1", "GRPC_HOST": "127.0.0.2", "GRPC_PORT": str(port)}
    )
    assert gw.runtime.grpc_port == port
    with ControlClient(f"127.0.0.2:{port}") as ctl:
        assert ctl.status().module_type == "AILB"
    with ControlClient(f"127.0.0.1:{port}") as ctl:
        unavailable(ctl)  # not on HOST's address
    assert load_settings({"HOST": "10.0.0.1"}).env.grpc_bind_host == "10.0.0.1"  # default: HOST
