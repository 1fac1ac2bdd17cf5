"""Preprocessing job: raw events -> validated, deduplicated, featurised Parquet, on Ray Data.

Run it as ``wayfinder preprocess --source movielens:data/ml-latest-small --out out/data`` or, against
a running cluster, ``ray job submit --working-dir . -- python -m jobs.preprocess --source ... --out ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any

from recsys.data.cleaning import CleaningConfig
from recsys.data.pipeline import PreprocessConfig
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        required=True,
        help="movielens:DIR (100K, 1M, latest or 25M layout) or events:URI (CSV, Parquet or JSON-lines "
        "file or directory, local or s3://, gs://, hdfs://)",
    )
    parser.add_argument("--items", help="item catalogue URI for an events: source")
    parser.add_argument("--users", help="user attributes URI for an events: source")
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="take schema FIELD from source COLUMN (repeatable), e.g. --map user_id=uid",
    )
    parser.add_argument("--out", required=True, help="output directory or URI")
    parser.add_argument("--now", help="reference time (ISO-8601) for impossible future timestamps")
    parser.add_argument("--dedup-window-s", type=float, default=30.0, help="near-duplicate window (s)")
    parser.add_argument("--bot-max-per-minute", type=int, default=20, help="bot rule: events in one minute")
    parser.add_argument("--bot-volume-factor", type=float, default=50.0, help="bot rule: x median count")
    parser.add_argument("--batch-rows", type=int, default=262_144, help="rows per read batch")
    parser.add_argument(
        "--serial", action="store_true", help="run every stage in this process instead of on Ray"
    )
    add_address_argument(parser)


def add_address_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        help="Ray cluster to use, e.g. 127.0.0.1:6379 or auto (default: RAY_ADDRESS, else a new local one)",
    )


def _column_map(pairs: list[str]) -> dict[str, str] | None:
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise ConfigError(f"--map expects FIELD=COLUMN, got {pair!r}")
        mapping[column] = field
    return mapping or None


def _now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            f"--now must be an ISO-8601 time such as 2024-01-31T00:00:00Z, got {text!r}"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def config_from_args(args: argparse.Namespace) -> PreprocessConfig:
    try:
        cleaning = CleaningConfig(
            now=_now(args.now),
            dedup_window_s=args.dedup_window_s,
            bot_max_events_per_minute=args.bot_max_per_minute,
            bot_volume_factor=args.bot_volume_factor,
        )
        return PreprocessConfig(cleaning=cleaning, batch_rows=args.batch_rows)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid preprocessing settings: {exc}") from exc


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the job for parsed arguments; return the quality report."""
    source = parse_source(args.source, items=args.items, users=args.users, column_map=_column_map(args.map))
    config = config_from_args(args)
    out = Location.parse(args.out)

    def progress(stage: str, done: int, total: int) -> None:
        print(f"[preprocess] {stage}: {done}/{total}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    if args.serial:
        report = preprocess(source, out, config, executor=SerialExecutor(progress))
    else:
        from jobs._executor import RayDataExecutor
        from jobs._ray import init_ray

        init_ray(args.address)
        report = preprocess(source, out, config, executor=RayDataExecutor(label="preprocess"))
    report["seconds"]["total"] = round(time.perf_counter() - started, 3)
    print_summary(report, out)
    return report


def print_summary(report: dict[str, Any], out: Location) -> None:
    """The data-quality summary a person reads at the end of the job."""
    lines = [
        f"Preprocessed into {out.uri}",
        f"  rows in      {report['rows_in']:>12,}",
        f"  rows out     {report['rows_out']:>12,}",
        f"  quarantined  {report['quarantined']:>12,}",
        f"  duplicates   {report['duplicates']:>12,}",
        f"  users        {report['users']:>12,}",
        f"  items        {report['items']:>12,}",
    ]
    for reason, count in report["quarantine_reasons"].items():
        lines.append(f"    quarantine {reason:<22}{count:>10,}")
    for kind, count in report["duplicate_kinds"].items():
        lines.append(f"    duplicate  {kind:<22}{count:>10,}")
    lines.append("  seconds      " + json.dumps(report["seconds"]))
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.preprocess", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
