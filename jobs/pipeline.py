"""The main job: the whole default pipeline on one Ray cluster.

``wayfinder pipeline --source movielens:data/ml-latest-small --out out`` preprocesses into
``out/data``, tunes the model families with a short budget and publishes the champion ensemble to
the registry ``out/models``, evaluates the families into ``out/eval`` (metrics.json and
report.html), fits the serving bundle into ``out/bundle`` with the champion's tuned
hyperparameters, and serves it over HTTP (``--no-serve`` stops before). Each step is the same job
its own subcommand runs, with that subcommand's defaults.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobs import evaluate, preprocess, serve, tune
from jobs.preprocess import add_address_argument
from recsys.data.storage import Location

DEFAULT_FAMILIES = "popularity,itemknn,ease,puresvd,als,bpr,switching_hybrid"
TUNED_FAMILIES = "popularity,itemknn,ease,als,bpr"
STEPS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="movielens:data/ml-latest-small", help="as for preprocess")
    parser.add_argument("--out", default="out", help="output directory or URI (data/, eval/ below it)")
    parser.add_argument("--families", default=DEFAULT_FAMILIES, help="families to evaluate, or 'all'")
    parser.add_argument("--tune-families", default=TUNED_FAMILIES, help="families to tune, or 'all'")
    parser.add_argument("--tune-budget", type=int, default=3, help="at most this many trials per family")
    parser.add_argument(
        "--no-tune", action="store_true", help="skip tuning (bundle: an existing champion, else defaults)"
    )
    parser.add_argument("--no-serve", action="store_true", help="stop after building the serving bundle")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port of the served app")
    parser.add_argument("--no-auth", action="store_true", help="serve without API keys (an OPEN API)")
    add_address_argument(parser)


def _step_args(module: Any, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def _step(number: int, title: str) -> None:
    print(f"== {number}/{STEPS} {title}", flush=True)


def run(args: argparse.Namespace) -> None:
    from recsys.engine import train_bundle
    from recsys.engine.bundle import DEFAULT_SCORER, DEFAULT_SPACE
    from recsys.engine.champion import bundle_settings
    from recsys.registry import Registry

    out = Location.parse(args.out)
    address = ["--address", args.address] if args.address else []
    data = out.child("data").uri
    _step(1, "preprocess")
    preprocess.run(_step_args(preprocess, ["--source", args.source, "--out", data, *address]))
    models = out.child("models").uri
    if args.no_tune:
        _step(2, "tune (skipped: --no-tune)")
    else:
        _step(2, f"tune ({args.tune_budget} trials per family at most)")
        budget = ["--budget", str(args.tune_budget), "--families", args.tune_families]
        tune.run(_step_args(tune, ["--data", data, "--out", models, *budget, *address]))
    _step(3, "evaluate")
    evaluation = out.child("eval").uri
    evaluate.run(
        _step_args(evaluate, ["--data", data, "--families", args.families, "--out", evaluation, *address])
    )
    print(f"Report: {out.child('eval', 'report.html').uri}", flush=True)
    _step(4, "serving bundle")
    registry = Registry(models)
    settings = bundle_settings(
        registry.manifest() if registry.champion() else {"families": {}},
        space=DEFAULT_SPACE,
        scorer=DEFAULT_SCORER,
    )
    bundle = out.child("bundle").uri
    manifest = train_bundle(data, bundle, space=settings.space, scorer=settings.scorer)
    print(
        f"Bundle: {bundle} ({manifest['space']['family']} space from {settings.source.get('space')}, "
        f"{manifest['items']:,} items)",
        flush=True,
    )
    if args.no_serve:
        return
    _step(5, "serve")
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
