"""`ailb cluster`: try the deploy/compose.yaml topology on one machine, without Docker."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from ailb.cluster.cluster import Cluster, ClusterOptions
from ailb.cluster.process import ClusterError

WATCH_INTERVAL_S = 1.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cluster",
        help="run nginx, N gateways, Redis, PostgreSQL and a Chroma server on 127.0.0.1",
        description="Start the deploy/compose.yaml topology as local processes: nginx (from "
        "the system's packages) in front of N `ailb serve` instances that share Redis, "
        "PostgreSQL and a Chroma server (each started here unless its URL is given). Every "
        "instance sees this shell's environment (provider keys, AILB_CONFIG, "
        "AILB_MASTER_KEY ...). Ctrl-C or SIGTERM stops everything, gateways first.",
    )
    p.add_argument("--instances", "-n", type=int, default=2, help="AILB instances (default 2)")
    p.add_argument("--port", type=int, default=8080, help="the front's port (default 8080)")
    p.add_argument("--redis-url", help="use this Redis instead of starting one")
    p.add_argument("--database-url", help="use this PostgreSQL instead of starting one")
    p.add_argument("--chroma-url", help="use this Chroma server instead of starting one")
    p.add_argument(
        "--dir",
        type=Path,
        help="keep logs and data here (default: a temporary directory, removed at exit)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="with no provider configured, serve the built-in mock provider (as `make run`)",
    )


def run(args: argparse.Namespace) -> int:
    options = ClusterOptions(
        instances=args.instances,
        port=args.port,
        redis_url=args.redis_url,
        database_url=args.database_url,
        chroma_url=args.chroma_url,
        demo=args.demo,
        base_dir=args.dir,
    )
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        cluster = Cluster(options)
        print(f"starting in {cluster.base_dir} ...", flush=True)
        with cluster:
            _describe(cluster)
            _watch(cluster, stop)
            print("stopping ...", flush=True)
    except ClusterError as e:
        print(f"ailb cluster: {e}", file=sys.stderr)
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("stopped", flush=True)
    return 0


def _describe(cluster: Cluster) -> None:
    print(f"\nAILB cluster ready: {cluster.url}  (OpenAI base URL: {cluster.url}/v1)")
    for i in cluster.instances:
        print(f"  {i.name:<10} {i.url}  gRPC {i.grpc_target}")
    for name, url, own in (
        ("redis", cluster.redis_url, cluster.redis),
        ("postgres", cluster.database_url, cluster.postgres),
        ("chroma", cluster.chroma_url, cluster.chroma),
    ):
        print(f"  {name:<10} {url}{'' if own else '  (given)'}")
    print(f"  logs       {cluster.logs}")
    print("Ctrl-C stops everything.", flush=True)


def _watch(cluster: Cluster, stop: threading.Event) -> None:
    """Wait for a stop; say so once when a process ends on its own."""
    reported: set[str] = set()
    while not stop.wait(WATCH_INTERVAL_S):
        for p in cluster.processes():
            if not p.running and p.name not in reported:
                reported.add(p.name)
                code = p.proc.returncode if p.proc else None
                print(f"{p.name} exited ({code}); its log: {p.log_path}", flush=True)
