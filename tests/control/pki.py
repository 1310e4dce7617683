"""Certificates for the TLS tests, made by the `openssl` command (the lockfile's environment has
no `cryptography`, and tests add no dependency): a CA with a server and a client certificate,
and a second CA with a client certificate of its own."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CA_CONFIG = """[req]
distinguished_name = dn
x509_extensions = ca
prompt = no
[dn]
CN = {name}
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""
SERVER_EXTENSIONS = "subjectAltName = IP:127.0.0.1,DNS:localhost\nextendedKeyUsage = serverAuth\n"
CLIENT_EXTENSIONS = "extendedKeyUsage = clientAuth\n"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Pair
    server: Pair
    client: Pair
    other_ca: Pair
    stranger: Pair  # a client certificate from other_ca


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _ca(directory: Path, name: str) -> Pair:
    config = directory / f"{name}.cnf"
    config.write_text(CA_CONFIG.format(name=name))
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    _openssl("req", "-x509", *EC_KEY, "-keyout", pair.key, "-out", pair.cert, "-days", "2",
             "-config", config)  # fmt: skip
    return pair


def _leaf(directory: Path, name: str, ca: Pair, extensions: str, serial: int) -> Pair:
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    request = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-new", *EC_KEY, "-keyout", pair.key, "-out", request, "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", request, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial",
             str(serial), "-days", "2", "-out", pair.cert, "-extfile", ext)  # fmt: skip
    return pair


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    other = _ca(directory, "other-ca")
    return Pki(
        ca=ca,
        server=_leaf(directory, "server", ca, SERVER_EXTENSIONS, 2),
        client=_leaf(directory, "marchproxy", ca, CLIENT_EXTENSIONS, 3),
        other_ca=other,
        stranger=_leaf(directory, "stranger", other, CLIENT_EXTENSIONS, 4),
    )
