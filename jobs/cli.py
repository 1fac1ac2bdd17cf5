"""The ``wayfinder`` command line: one subcommand per job.

Exit codes: 0 success, 2 bad arguments or unusable input (the message names file, row and column where
known), 1 an unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from jobs.preprocess import add_address_argument
from recsys.errors import WayfinderError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def run_guarded(action: Callable[[], Any]) -> int:
    """Run a job, turning our errors into one clear line and an exit code (no bare traceback)."""
    try:
        action()
    except WayfinderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


def _synthesize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory or URI")
    parser.add_argument("--events", type=int, default=100_000, help="number of clean events")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--format", choices=["parquet", "csv", "jsonl"], default="parquet")
    parser.add_argument("--users", type=int, help="number of users (default: derived from --events)")
    parser.add_argument("--items", type=int, help="number of items (default: derived from --events)")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per output file")
    parser.add_argument("--clean", action="store_true", help="inject no dirt at all")
    add_address_argument(parser)


def _synthesize(args: argparse.Namespace) -> None:
    from recsys.data.synthetic import DirtConfig, SyntheticConfig, generate

    overrides: dict[str, Any] = {
        "seed": args.seed,
        "n_events": args.events,
        "format": args.format,
        "chunk_rows": args.chunk_rows,
    }
    if args.users is not None:
        overrides["n_users"] = args.users
    if args.items is not None:
        overrides["n_items"] = args.items
    if args.clean:
        overrides["dirt"] = DirtConfig.none()
    try:
        config = SyntheticConfig(**overrides)
    except ValueError as exc:
        from recsys.errors import ConfigError

        raise ConfigError(f"invalid synthesis settings: {exc}") from exc

    def progress(done: int, total: int) -> None:
        print(f"[synthesize] {done:,}/{total:,} rows", file=sys.stderr, flush=True)

    if args.address:  # generate on the cluster, so the files land where its jobs will read them
        import ray

        from jobs._ray import init_ray

        init_ray(args.address)
        manifest = ray.get(ray.remote(generate).remote(config, args.out))
    else:
        manifest = generate(config, args.out, on_progress=progress)
    print(f"Wrote {manifest.events.rows:,} event rows ({manifest.clean_events:,} clean) to {args.out}")
    for kind, count in manifest.injected.model_dump().items():
        if count:
            print(f"  injected {kind:<22}{count:>10,}")


JOBS: tuple[tuple[str, str, str], ...] = (
    ("pipeline", "jobs.pipeline", "the main job: preprocess, evaluate, build the bundle, serve"),
    ("preprocess", "jobs.preprocess", "validate, clean and featurise raw data into Parquet"),
    ("evaluate", "jobs.evaluate", "evaluate model families offline: metrics.json and report.html"),
    ("tune", "jobs.tune", "tune every family on Ray Tune, ensemble them, publish the champion model"),
    ("serve", "jobs.serve", "serve recommendations over HTTP with Ray Serve"),
    ("ab-replay", "jobs.ab_replay", "replay logged events through an experiment's variants offline"),
    ("keys", "jobs.keys", "create, list and revoke API keys of the HTTP API (stored hashed)"),
    ("stream-ingest", "jobs.stream_ingest", "apply events from a Redis Stream, at least once"),
    ("retrain", "jobs.retrain", "retrain on the serving log; promote the challenger only if it wins"),
)
"""Subcommands that are jobs: (name, module with add_arguments/run, one-line help)."""


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="wayfinder", description="Wayfinder: a real-time personalization engine on Ray."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, summary in JOBS:
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(action=module.run)

    data = commands.add_parser("data", help="data utilities")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    synth = data_commands.add_parser(
        "synthesize", help="write a seeded synthetic dataset with planted structure and dirt"
    )
    _synthesize_arguments(synth)
    synth.set_defaults(action=_synthesize)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(lambda: args.action(args))


if __name__ == "__main__":
    sys.exit(main())
