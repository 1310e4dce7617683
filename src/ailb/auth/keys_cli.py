"""`ailb keys create|list|show|rotate|revoke`: key management straight against the key store.

It reads the same configuration as the gateway (DATABASE_URL, else the SQLite file in
AILB_DATA_DIR; REDIS_URL for instant revocation), so it works whether a gateway is running or
not -- which is how the first admin key of a new deployment is made. Running gateways see every
change within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import msgspec

from ailb.auth.audit import AuditLog
from ailb.auth.manager import KeyCreate, KeyManager, KeyRotate, view
from ailb.config import ConfigError, load_settings
from ailb.errors import APIError, InvalidRequest
from ailb.storage import StoreUnavailable

ACTOR = "cli"


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage API keys (needs AILB_MASTER_KEY on the gateway)")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    create = ks.add_parser("create", help="create a key and print its secret (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--models", help="comma-separated allowed models (patterns: gpt-4o*)")
    create.add_argument("--admin", action="store_true", help="may manage keys and read usage")
    create.add_argument(
        "--collection", action="append", default=[], help="allowed RAG collection (repeatable)"
    )
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--user-rpm", type=int, help="requests per minute per end user")
    create.add_argument("--user-tpm", type=int, help="tokens per minute per end user")
    create.add_argument("--budget-usd", type=float, help="spend limit per budget period")
    create.add_argument("--token-budget", type=int, help="token limit per budget period")
    create.add_argument("--budget-period", choices=("day", "month", "total"), default="month")
    create.add_argument("--expires-at", help="ISO 8601 time or Unix seconds")
    create.add_argument("--signed", action="store_true", help="require HMAC-signed requests")
    ks.add_parser("list", help="list keys (never secrets)")
    show = ks.add_parser("show", help="one key")
    show.add_argument("key_id")
    rotate = ks.add_parser("rotate", help="new secret; the old one works for a grace period")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", type=int, help="seconds the old secret keeps working")
    revoke = ks.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")


def _expiry(raw: str | None) -> float | str | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return raw


async def _run(args: argparse.Namespace) -> Any:
    from ailb.app import build_store

    settings = load_settings()
    store = build_store(settings)
    admitter = None
    if settings.redis_url:
        from ailb.ratelimit.redis import RedisAdmitter

        admitter = RedisAdmitter(str(settings.redis_url), prefix=settings.env.redis_prefix)
    await store.open()
    try:
        keys = KeyManager(store, AuditLog(), None, admitter, settings.env.key_rotation_grace)
        cmd = args.keys_command
        if cmd == "create":
            scopes = (["admin"] if args.admin else []) + [
                f"collection:{c}" for c in args.collection
            ]
            fields = {
                "name": args.name,
                "models": [m.strip() for m in args.models.split(",") if m.strip()]
                if args.models
                else None,
                "scopes": scopes or None,
                "rpm_limit": args.rpm,
                "tpm_limit": args.tpm,
                "user_rpm_limit": args.user_rpm,
                "user_tpm_limit": args.user_tpm,
                "budget_usd": args.budget_usd,
                "token_budget": args.token_budget,
                "budget_period": args.budget_period,
                "expires_at": _expiry(args.expires_at),
                "signed": args.signed,
            }
            try:
                req = msgspec.convert(fields, KeyCreate)
            except msgspec.ValidationError as e:
                raise InvalidRequest(f"invalid option: {e}") from None
            return await keys.create(req, ACTOR)
        if cmd == "list":
            return [view(k) for k in await keys.list()]
        if cmd == "show":
            return view(await keys.get(args.key_id))
        if cmd == "rotate":
            return await keys.rotate(args.key_id, KeyRotate(grace_seconds=args.grace), ACTOR)
        return await keys.revoke(args.key_id, ACTOR)
    finally:
        if admitter is not None:
            await admitter.close()
        await store.close()


def run(args: argparse.Namespace) -> int:
    try:
        out = asyncio.run(_run(args))
    except ConfigError as e:
        print(f"ailb: configuration error: {e}", file=sys.stderr)
        return 2
    except APIError as e:
        print(f"ailb: {e.message}", file=sys.stderr)
        return 1
    except StoreUnavailable as e:
        print(f"ailb: key store unavailable: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0
