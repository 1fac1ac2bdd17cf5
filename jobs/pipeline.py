"""The main job: the whole default pipeline on one Ray cluster.

``wayfinder pipeline --source movielens:data/ml-latest-small --out out`` preprocesses into
``out/data``, evaluates the model families into ``out/eval`` (metrics.json and report.html), fits
the serving bundle into ``out/bundle`` and serves it over HTTP (``--no-serve`` stops before).
Each step is the same job its own subcommand runs, with that subcommand's defaults.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobs import evaluate, preprocess, serve
from jobs.preprocess import add_address_argument
from recsys.data.storage import Location

DEFAULT_FAMILIES = "popularity,itemknn,ease,puresvd,als,bpr,switching_hybrid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="movielens:data/ml-latest-small", help="as for preprocess")
    parser.add_argument("--out", default="out", help="output directory or URI (data/, eval/ below it)")
    parser.add_argument("--families", default=DEFAULT_FAMILIES, help="families to evaluate, or 'all'")
    parser.add_argument("--no-serve", action="store_true", help="stop after building the serving bundle")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port of the served app")
    parser.add_argument("--no-auth", action="store_true", help="serve without API keys (an OPEN API)")
    add_address_argument(parser)


def _step_args(module: Any, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    out = Location.parse(args.out)
    address = ["--address", args.address] if args.address else []
    data = out.child("data").uri
    print("== 1/4 preprocess", flush=True)
    preprocess.run(_step_args(preprocess, ["--source", args.source, "--out", data, *address]))
    print("== 2/4 evaluate", flush=True)
    evaluation = out.child("eval").uri
    evaluate.run(
        _step_args(evaluate, ["--data", data, "--families", args.families, "--out", evaluation, *address])
    )
    print(f"Report: {out.child('eval', 'report.html').uri}", flush=True)
    print("== 3/4 serving bundle", flush=True)
    from recsys.engine import train_bundle

    bundle = out.child("bundle").uri
    manifest = train_bundle(data, bundle)
    print(f"Bundle: {bundle} ({manifest['space']['family']} space, {manifest['items']:,} items)", flush=True)
    if args.no_serve:
        return
    print("== 4/4 serve", flush=True)
    store = "sqlite:///" + out.child("store.db").uri
    no_auth = ["--no-auth"] if args.no_auth else []  # otherwise an admin key is created on first start
    serve.run(
        _step_args(
            serve, ["--bundle", bundle, "--store", store, "--port", str(args.port), *address, *no_auth]
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.pipeline", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
