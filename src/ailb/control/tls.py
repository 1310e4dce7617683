"""TLS for the gRPC control service: GRPC_TLS_CERT and GRPC_TLS_KEY, and GRPC_TLS_CLIENT_CA for
mutual TLS (clients must present a certificate that CA issued).

The files are read once, when the server is built at start-up: a file that is missing,
unreadable or not what its variable says stops start-up with a ConfigError naming the variable,
instead of a server that fails every handshake. Python's ssl module checks them (it parses PEM
and matches the key to the certificate as grpc's TLS library would, and says which is wrong).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal

import grpc

from ailb.config import ConfigError, EnvSettings


@dataclass(frozen=True)
class ServerTls:
    credentials: grpc.ServerCredentials
    mode: Literal["on", "mutual"]


def server_tls(env: EnvSettings) -> ServerTls | None:
    """The server's credentials from the configured files; None: plaintext."""
    mode = env.grpc_tls
    if mode == "off":
        return None
    cert = _read("GRPC_TLS_CERT", env.grpc_tls_cert)
    key = _read("GRPC_TLS_KEY", env.grpc_tls_key)
    _check_certificates("GRPC_TLS_CERT", cert)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            env.grpc_tls_cert,
            env.grpc_tls_key,
            password="",  # an encrypted key fails, no prompt
        )
    except ssl.SSLError as e:
        raise ConfigError(
            f"GRPC_TLS_KEY: not the PEM private key of GRPC_TLS_CERT, unencrypted ({e})"
        ) from None
    client_ca = None
    if mode == "mutual":
        client_ca = _read("GRPC_TLS_CLIENT_CA", env.grpc_tls_client_ca)
        _check_certificates("GRPC_TLS_CLIENT_CA", client_ca)
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    return ServerTls(credentials, mode)


def _read(variable: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{variable}: cannot read {path}: {e.strerror}") from None


def _check_certificates(variable: str, pem: bytes) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cadata=pem.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError) as e:
        raise ConfigError(f"{variable}: not a PEM certificate ({e})") from None
