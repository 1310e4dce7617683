"""deploy/compose.yaml and deploy/nginx.conf, checked without Docker: the topology, the wiring
of every AILB setting to a variable the code reads, and the front's configuration being the
one `ailb cluster` runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ailb.cluster.nginx import COMPOSE_UPSTREAMS, compose_conf
from ailb.config import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTANCES = ("ailb-1", "ailb-2")


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    return dict(compose()["services"])


def test_the_topology() -> None:
    s = services()
    assert set(s) == {*INSTANCES, "nginx", "redis", "postgres", "chroma"}
    assert s["nginx"]["ports"] == ["8080:8080"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in s["nginx"]["volumes"]
    for name in INSTANCES:
        assert s["nginx"]["depends_on"][name] == {"condition": "service_healthy"}
    # Each instance's gRPC service on its own port of the host's loopback interface only: a
    # published port is open to the network (past the host's firewall) unless bound to one.
    assert [s[n]["ports"] for n in INSTANCES] == [
        ["127.0.0.1:50051:50051"],
        ["127.0.0.1:50052:50051"],
    ]


def test_instances_use_the_image_and_share_redis_postgres_and_chroma() -> None:
    s = services()
    for name in INSTANCES:
        svc = s[name]
        assert svc["build"]["context"] == ".." and (DEPLOY / ".." / "Dockerfile").exists()
        assert svc["env_file"] == ".env"
        env = svc["environment"]
        assert env["MODULE_ID"] == name
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert re.fullmatch(r"postgresql://ailb:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/ailb",
                            env["DATABASE_URL"])  # fmt: skip
        assert env["CHROMA_URL"] == "http://chroma:8000"
        assert env["AILB_MASTER_KEY"].startswith("${AILB_MASTER_KEY:?")  # required, a secret
        # gRPC steers all traffic: never served without a token of its own (not the admin key).
        assert env["AILB_CONTROL_TOKEN"].startswith("${AILB_CONTROL_TOKEN:?")
        assert svc["volumes"] == [f"{name}-data:/app/ailb_memory"]
        for dep in ("redis", "postgres", "chroma"):
            assert svc["depends_on"][dep] == {"condition": "service_healthy"}
    chroma = s["chroma"]
    assert chroma["entrypoint"] == ["chroma"] and chroma["command"][0] == "run"
    assert "8000" in chroma["command"]


def test_every_ailb_variable_is_one_the_code_reads() -> None:
    s = services()
    for name in INSTANCES:
        unknown = set(s[name]["environment"]) - set(ENV_VARS)
        assert not unknown, f"{name}: {unknown}"
    template = (DEPLOY / ".env.example").read_text()
    names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", template, re.MULTILINE))
    assert {"AILB_MASTER_KEY", "AILB_CONTROL_TOKEN", "POSTGRES_PASSWORD"} <= names
    assert names - set(ENV_VARS) == {"POSTGRES_PASSWORD"}  # the database image's own
    # No value in the template: compose refuses to start until they are set.
    assert re.search(r"^AILB_MASTER_KEY=$", template, re.MULTILINE)
    assert re.search(r"^AILB_CONTROL_TOKEN=$", template, re.MULTILINE)
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_stop_grace_leaves_time_for_the_drain_and_the_flushes() -> None:
    s = services()
    for name in INSTANCES:
        grace = int(s[name]["environment"]["AILB_SHUTDOWN_GRACE"])
        stop_after = int(s[name]["stop_grace_period"].removesuffix("s"))
        assert stop_after >= grace + 10


def test_backing_services_have_health_checks_and_volumes() -> None:
    s = services()
    for name in ("redis", "postgres", "chroma"):
        assert s[name]["healthcheck"]["test"][0] == "CMD"
        assert s[name]["volumes"]
    assert s["redis"]["command"] == ["redis-server", "--appendonly", "yes"]
    assert s["postgres"]["environment"]["POSTGRES_USER"] == "ailb"
    assert set(compose()["volumes"]) == {
        "ailb-1-data",
        "ailb-2-data",
        "redis-data",
        "postgres-data",
        "chroma-data",
    }


def test_nginx_conf_is_what_ailb_cluster_renders() -> None:
    assert (DEPLOY / "nginx.conf").read_text() == compose_conf(), (
        "deploy/nginx.conf is stale: regenerate it with\n  .venv/bin/python -c 'from "
        'ailb.cluster.nginx import compose_conf; print(compose_conf(), end="")\' '
        "> deploy/nginx.conf"
    )
    assert tuple(f"{n}:8080" for n in INSTANCES) == COMPOSE_UPSTREAMS


def test_nginx_retry_policy() -> None:
    conf = compose_conf()
    chat = conf.split("location = /v1/chat/completions {")[1].split("}")[0]
    other = conf.split("location / {")[1].split("}")[0]
    # Chat completions: again on the other instance even when the request was sent ...
    assert "proxy_next_upstream error timeout non_idempotent;" in chat
    # ... everything else only when it never reached an instance; AILB's own answers are final.
    assert "proxy_next_upstream error timeout;" in other
    assert "http_50" not in conf
    assert "proxy_next_upstream_tries 2;" in conf
    assert "proxy_buffering off;" in conf  # streams are not held back
    assert "max_fails=1" in conf
