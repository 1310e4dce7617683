"""The front load balancer: nginx in front of the AILB instances.

One renderer makes both deploy/nginx.conf (the compose file's front; a test keeps the file equal
to `compose_conf()`) and the configuration `ailb cluster` runs, which differs only in where
nginx keeps its pid and temporary files and in the addresses.

Retries (the other instance, once; never after a response has begun):
- `/v1/chat/completions` is retried on a connection error or timeout even after the request
  was sent (`non_idempotent`): an instance that died or was cut mid-request sent the client
  nothing, a chat completion changes nothing but spend, and the client's own SDK would send
  the same POST again anyway (the openai SDK retries connection errors and 5xx).
- Every other path (keys, RAG documents, reload ...) is retried only when nothing reached an
  instance (refused or timed-out connection): a POST that creates or rotates a key must never
  run twice.
- AILB's own answers are final, errors included. Its 502 comes after it failed over across
  every provider (another instance would repeat that against the same providers); its 503 and
  429 mostly have a cause the instances share (a provider's cooldown, Redis down with
  AILB_REDIS_FAILURE_MODE=closed), and nginx counts a retried status as the instance failing
  (max_fails): every instance would be marked down and clients would get the front's 502
  instead of AILB's explanation.
- Streams: nginx retries only before the response header, and AILB sends the header only with
  the first upstream byte, so a stream fails over before its first byte, never after.

A stopped or killed instance refuses connections (a graceful stop closes its listener first):
its requests go to the other one, and max_fails=1 keeps it out for fail_timeout (5 s) at a time.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
from collections.abc import Sequence
from pathlib import Path

from ailb.cluster.process import ManagedProcess
from ailb.cluster.services import find_binary, http_ok

COMPOSE_UPSTREAMS = ("ailb-1:8080", "ailb-2:8080")
COMPOSE_LISTEN = "8080"
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _json_error(status: int, message: str, kind: str, code: str) -> str:
    body = f'{{"error":{{"message":"{message}","type":"{kind}","param":null,"code":"{code}"}}}}'
    return f"default_type application/json;\n            return {status} '{body}';"


def render_conf(
    listen: str,
    upstreams: Sequence[str],
    *,
    worker_processes: str = "auto",
    local_dir: Path | None = None,
    user: str | None = None,
) -> str:
    """nginx.conf for `upstreams` (host:port of each AILB instance). `local_dir`: a run outside
    the nginx image (pid and temporary files there); `user` for worker processes of a master
    started as root."""
    main = [f"worker_processes {worker_processes};"]
    http_local = []
    if user is not None:
        main.append(f"user {user};")
    if local_dir is not None:
        main.append(f"pid {local_dir / 'nginx.pid'};")
        http_local = [f"    {kind}_temp_path {local_dir / 'tmp' / kind};" for kind in TEMP_KINDS]
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;" for u in upstreams)
    lines = [
        "# Front load balancer for AILB: deploy/compose.yaml mounts this file; `ailb cluster`",
        "# renders the same configuration (src/ailb/cluster/nginx.py explains the retry",
        "# policy; a test keeps the two equal).",
        *main,
        "",
        "events {",
        "    worker_connections 4096;",
        "}",
        "",
        "http {",
        *http_local,
        "    server_tokens off;",
        "    # $uri, not $request_uri: no query string is logged, and no header.",
        '    log_format ailb escape=json \'{"ts":"$time_iso8601","method":"$request_method",'
        '"path":"$uri","status":$status,"duration_s":$request_time,'
        '"upstream":"$upstream_addr","upstream_status":"$upstream_status",'
        '"request_id":"$upstream_http_x_request_id"}\';',
        "    access_log /dev/stdout ailb;",
        "",
        "    upstream ailb {",
        "        least_conn;  # LLM requests vary from milliseconds to minutes",
        servers,
        "        keepalive 64;",
        "        keepalive_timeout 60s;  # below AILB's 75 s: nginx closes idle connections first",
        "    }",
        "",
        "    # Bodies are buffered whole before they go upstream: that is what lets a request be",
        "    # sent again to the other instance. AILB_MAX_BODY_BYTES' default: change both.",
        "    client_max_body_size 20m;",
        "    client_body_buffer_size 1m;",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_connect_timeout 2s;",
        "    proxy_read_timeout 660s;  # above AILB_REQUEST_TIMEOUT: AILB answers its own 504",
        "    proxy_buffering off;  # SSE events go out as they arrive",
        "    proxy_next_upstream_tries 2;  # the other instance, once",
        "",
        "    server {",
        f"        listen {listen};",
        "",
        "        location = /v1/chat/completions {",
        "            proxy_pass http://ailb;",
        "            proxy_next_upstream error timeout non_idempotent;",
        "        }",
        "",
        "        location / {",
        "            proxy_pass http://ailb;",
        "            proxy_next_upstream error timeout;  # POSTs only if nothing was sent",
        "        }",
        "",
        "        # nginx's own errors in AILB's (OpenAI's) error format, for SDK clients.",
        "        error_page 413 @too_large;",
        "        error_page 502 @no_instance;",
        "        error_page 504 @timeout;",
        "        location @too_large {",
        "            "
        + _json_error(
            413,
            "Request body is larger than this gateway accepts.",
            "invalid_request_error",
            "request_too_large",
        ),
        "        }",
        "        location @no_instance {",
        "            "
        + _json_error(502, "No AILB instance could take the request.", "api_error", "no_instance"),
        "        }",
        "        location @timeout {",
        "            "
        + _json_error(504, "The AILB instance did not answer in time.", "api_error", "timeout"),
        "        }",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


def compose_conf() -> str:
    """deploy/nginx.conf, for the nginx image in deploy/compose.yaml."""
    return render_conf(COMPOSE_LISTEN, COMPOSE_UPSTREAMS)


def nginx_binary() -> str:
    return find_binary(
        "nginx", "/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin",
        hint="Debian: apt-get install nginx-light",
    )  # fmt: skip


def _worker_user() -> str | None:
    """Workers of a root master run as `nobody` (never root); None when not root."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return f"{nobody.pw_name} {grp.getgrgid(nobody.pw_gid).gr_name}"


def nginx(
    host: str, port: int, upstreams: Sequence[str], workdir: Path, logs: Path
) -> ManagedProcess:
    """nginx (Debian's package) running `render_conf` for `upstreams`, in the foreground."""
    binary = nginx_binary()
    user = _worker_user()
    workdir.mkdir(parents=True, exist_ok=True)
    for kind in TEMP_KINDS:
        (workdir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        if user is not None:  # workers write request bodies there
            os.chown(workdir / "tmp" / kind, pwd.getpwnam("nobody").pw_uid, -1)
    conf = workdir / "nginx.conf"
    conf.write_text(
        render_conf(f"{host}:{port}", upstreams, worker_processes="1", local_dir=workdir, user=user)
    )
    url = f"http://{host}:{port}"
    argv = [binary, "-p", str(workdir), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]
    return ManagedProcess(
        "nginx", argv, env=os.environ, log_path=logs / "nginx.log",
        ready=lambda: http_ok(url, "/livez"), url=url, port=port,
        stop_signal=signal.SIGQUIT,  # graceful: in-flight requests finish
    )  # fmt: skip
