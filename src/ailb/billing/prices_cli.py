"""`ailb prices [MODEL]`: what the gateway will charge for each model of its deployments (the
environment and AILB_CONFIG, as `ailb serve` reads them), and where each price comes from. With
MODEL: that model on the deployments that serve it, or, when none lists it, what each configured
provider would charge for it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ailb.billing.catalog import Pricer, prices_file
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
    deployments = [
        DeploymentState(config=c, provider=build_provider(c, settings.credentials.get(c.name)))
        for c in settings.deployments
    ]
    if args.model:
        for d in deployments:
            if args.model not in d.models:  # what it would cost there
                d.models = {args.model: args.model}
    asyncio.run(Pricer(prices_file(settings.env), quiet=True)(deployments))
    priced = [
        (d, model, d.price(model))
        for d in deployments
        for model in sorted(d.models)
        if not args.model or model == args.model
    ]
    discovered = [d.name for d in deployments if not d.models]
    if args.json:
        for d, model, price in priced:
            row = {"model": model, "deployment": d.name, "provider": d.config.provider}
            print(json.dumps(row | price.describe()))
        return 0
    if not priced:
        print("no models configured" + (f" (discovered at run time: {', '.join(discovered)})"
                                         if discovered else ""))  # fmt: skip
        return 0
    print(f"{'model':32} {'deployment':16} {'input/1M':>9} {'output/1M':>9} "
          f"{'cached/1M':>9}  source")  # fmt: skip
    for d, model, p in priced:
        cached = p.input if p.cache_read is None else p.cache_read
        over = ", ".join(str(t.start) for t in p.tiers)
        tiers = f" (+tiers over {over} input tokens)" if over else ""
        print(
            f"{model:32} {d.name:16} {p.input:>9g} {p.output:>9g} {cached:>9g}  {p.source}{tiers}"
        )
    if discovered and not args.model:
        print(f"models discovered at run time (not shown): {', '.join(discovered)}")
    return 0
