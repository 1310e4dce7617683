"""`ailb prices [MODEL]`: what the gateway will charge for each model of its deployments (the
environment and AILB_CONFIG, as `ailb serve` reads them), and where each price comes from. With
MODEL: that model on the deployments that serve it, or, when none lists it, what each configured
provider would charge for it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from ailb.billing.catalog import CACHE_FILE, Pricer
from ailb.config import ConfigError, load_settings
from ailb.providers import build_provider
from ailb.routing.deployment import DeploymentState


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("prices", help="show what each model costs and where its price comes from")
    p.add_argument("model", nargs="?", help="only this model")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"ailb: configuration error: {e}", file=sys.stderr)
        return 2
    env = settings.env
    deployments = [
        DeploymentState(config=c, provider=build_provider(c, settings.credentials.get(c.name)))
        for c in settings.deployments
    ]
    if args.model:
        for d in deployments:
            if args.model not in d.models:  # what it would cost there
                d.models = {args.model: args.model}
    pricer = Pricer(env.prices_cache or os.path.join(env.data_dir, CACHE_FILE), quiet=True)
    asyncio.run(pricer(deployments))
    rows = [
        {"model": model, "deployment": d.name, "provider": d.config.provider}
        | d.price(model).describe()
        for d in deployments
        for model in sorted(d.models)
        if not args.model or model == args.model
    ]
    discovered = [d.name for d in deployments if not d.models]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no models configured" + (f" (discovered at run time: {', '.join(discovered)})"
                                         if discovered else ""))  # fmt: skip
        return 0
    print(f"{'model':32} {'deployment':16} {'input/1M':>9} {'output/1M':>9} "
          f"{'cached/1M':>9}  source")  # fmt: skip
    for r in rows:
        tiers = " (+tiers over " + ", ".join(
            str(t["above_input_tokens"]) for t in r.get("tiers", ())  # type: ignore[attr-defined]
        ) + " input tokens)" if r.get("tiers") else ""  # fmt: skip
        print(
            f"{r['model']:32} {r['deployment']:16} {r['input_per_1m']:>9g} "
            f"{r['output_per_1m']:>9g} {r['cache_read_per_1m']:>9g}  {r['source']}{tiers}"
        )
    if discovered and not args.model:
        print(f"models discovered at run time (not shown): {', '.join(discovered)}")
    return 0
