"""`ailb` command line: `ailb serve` starts the gateway; `ailb cluster` a local cluster."""

from __future__ import annotations

import argparse
import os
import sys

from ailb import __version__
from ailb.config import ConfigError, Settings, load_settings
from ailb.datadir import UMASK
from ailb.observability.logging import configure_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ailb", description="AI load balancer")
    p.add_argument("--version", action="version", version=f"ailb {__version__}")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="start the gateway (the default command)")
    serve.add_argument("--host", help="listen address (overrides HOST)")
    serve.add_argument("--port", type=int, help="HTTP port (overrides HTTP_PORT)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="with no provider configured, serve the built-in mock provider (what `make run` "
        "does on a fresh machine)",
    )
    from ailb.auth.keys_cli import add_parser as add_keys
    from ailb.cluster.cli import add_parser as add_cluster
    from ailb.rag.ingest_cli import add_parser as add_rag

    add_rag(sub)
    add_keys(sub)
    add_cluster(sub)
    from ailb.install_check import add_parser as add_check_install

    add_check_install(sub)
    from ailb.billing.prices_cli import add_parser as add_prices

    add_prices(sub)
    return p


def _serve_settings(args: argparse.Namespace) -> Settings:
    """The environment and AILB_CONFIG, with the command line's overrides."""
    settings = load_settings(demo=getattr(args, "demo", False))
    overrides: dict[str, object] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["http_port"] = args.port
    return settings.with_env(**overrides) if overrides else settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "rag":
        from ailb.rag.ingest_cli import ingest

        return ingest(args)
    if command in ("serve", "keys"):
        # Whatever these create in AILB_DATA_DIR, SQLite's and Chroma's files included, is the
        # owner's alone (ailb.datadir); nothing else they write is meant for others either.
        os.umask(UMASK)
    if command == "keys":
        from ailb.auth.keys_cli import run

        return run(args)
    if command == "check-install":
        from ailb.install_check import run as check_install

        return check_install(args)
    if command == "prices":
        from ailb.billing.prices_cli import run as show_prices

        return show_prices(args)
    if command == "cluster":
        from ailb.cluster.cli import run as run_cluster

        return run_cluster(args)
    if command == "serve":
        try:
            settings = _serve_settings(args)
        except ConfigError as e:
            print(f"ailb: configuration error: {e}", file=sys.stderr)
            return 2
        formatter = configure_logging(settings.env.log_level, secrets=settings.secrets())
        from ailb.server import serve

        def reload() -> Settings:
            """A reload (SIGHUP, gRPC, /api/reload) reads the settings again the same way;
            their secrets join those the logs redact."""
            fresh = _serve_settings(args)
            formatter.never_log(*fresh.secrets())
            return fresh

        try:
            serve(settings, reload)
        except ConfigError as e:  # found while building the gateway (a TLS file, say)
            print(f"ailb: configuration error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            # uvicorn shut down cleanly and re-raised Ctrl-C: no traceback for that.
            return 130
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
