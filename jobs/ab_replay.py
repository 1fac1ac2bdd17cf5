"""Offline A/B replay: compare an experiment's variants on logged events before going live.

Run it as ``wayfinder ab-replay --data out/data --out out/ab-replay`` (the experiment defaults to
the first one in ``serving/config.yaml``; ``--experiment FILE`` reads another YAML/JSON experiment
or Serve config) or, against a running cluster, ``ray job submit --working-dir . -- python -m
jobs.ab_replay --data ... --out ...``. The space is fitted once on the events before the temporal
cutoff; the test users are replayed through every variant's updater and ranker as Ray tasks (one
chunk of users each). The protocol is documented in :mod:`recsys.experiments.replay`; the result
is ``report.json`` (the serving report's shape, plus the split) and a printed table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from jobs.preprocess import add_address_argument
from recsys.data.ids import IdIndex
from recsys.data.storage import Location, write_json
from recsys.embeddings import EmbeddingSpace, ItemMetadata, UpdaterConfig
from recsys.errors import ConfigError, DataError
from recsys.experiments import Experiment, experiment_report
from recsys.experiments.replay import COLUMNS, ReplaySplit, arms, merge_counts, replay_users, temporal_split
from recsys.models import build
from recsys.ranking import RankerConfig

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXPERIMENT = REPO / "serving" / "config.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="preprocessed data directory (wayfinder preprocess)")
    parser.add_argument("--out", required=True, help="output directory for report.json")
    parser.add_argument(
        "--experiment",
        default=str(DEFAULT_EXPERIMENT),
        help="YAML/JSON experiment, or a Serve config (its first experiment); default: serving/config.yaml",
    )
    parser.add_argument("--k", type=int, default=10, help="page size served before each positive event")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="latest share of events replayed")
    parser.add_argument("--max-users", type=int, default=200, help="test users sampled (seeded)")
    parser.add_argument(
        "--max-test-events", type=int, default=100, help="each test user's first events after the cutoff"
    )
    parser.add_argument("--factors", type=int, default=32, help="ALS factors of the replay space")
    parser.add_argument("--iterations", type=int, default=10, help="ALS iterations")
    parser.add_argument(
        "--conversion-rating", type=float, default=4.5, help="a hit on a rating >= this converts"
    )
    parser.add_argument("--chunks", type=int, default=4, help="Ray tasks (chunks of users)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the user sample and the model")
    parser.add_argument("--serial", action="store_true", help="replay in this process, not on Ray")
    add_address_argument(parser)


def _say(line: str) -> None:
    print(f"[ab-replay] {line}", file=sys.stderr, flush=True)


def load_experiment(path: str) -> tuple[Experiment, RankerConfig, UpdaterConfig]:
    """The experiment and the base settings its overrides apply to."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"--experiment {path}: no such file")
    document = yaml.safe_load(file.read_text())
    ranker, updater = RankerConfig(), UpdaterConfig()
    if isinstance(document, dict) and "applications" in document:
        args = document["applications"][0].get("args") or {}
        if not args.get("experiments"):
            raise ConfigError(f"--experiment {path}: the Serve config's args have no experiments")
        document = args["experiments"][0]
        ranker = RankerConfig.model_validate(args.get("ranker") or {})
        updater = UpdaterConfig.model_validate(args.get("updater") or {})
    try:
        return Experiment.model_validate(document), ranker, updater
    except ValueError as exc:
        raise ConfigError(f"--experiment {path}: {exc}") from exc


def load_events(data: str) -> tuple[pd.DataFrame, int, int, ItemMetadata | None]:
    """The interactions as replay columns, the id counts, and item metadata when present."""
    root = Path(data)
    if not (root / "interactions").exists():
        raise DataError(f"--data {data}: no interactions/ directory (run wayfinder preprocess first)")
    frame = pd.read_parquet(
        root / "interactions", columns=["user_idx", "item_idx", "event_type", "timestamp", "value", "weight"]
    )
    frame["ts"] = (frame["timestamp"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    frame["event_type"] = frame["event_type"].astype(str)
    frame["value"] = frame["value"].astype("float64")
    frame["weight"] = frame["weight"].astype("float64")
    item_ids = IdIndex.load(root / "ids" / "items.parquet")
    n_users = len(IdIndex.load(root / "ids" / "users.parquet"))
    metadata = None
    if (root / "items").exists():
        metadata = ItemMetadata.from_frame(pd.read_parquet(root / "items"), item_ids.ids)
    return frame[list(COLUMNS)], n_users, len(item_ids), metadata


def fit_space(
    split: ReplaySplit, n_users: int, n_items: int, metadata: ItemMetadata | None, args: argparse.Namespace
) -> EmbeddingSpace:
    """ALS on the training period only (the signed weights, as the serving bundle does)."""
    train = split.train
    matrix = sp.csr_matrix(
        (train["weight"].to_numpy(np.float32), (train["user_idx"].to_numpy(), train["item_idx"].to_numpy())),
        shape=(n_users, n_items),
    )
    matrix.sum_duplicates()
    popularity = np.asarray((matrix > 0).sum(axis=0), dtype=np.float32).ravel()
    model = build(
        family="als",
        factors=args.factors,
        regularization=0.05,
        iterations=args.iterations,
        random_state=args.seed,
    )
    model.fit(matrix)
    return EmbeddingSpace.from_model(model, popularity, metadata, random_state=args.seed)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the job for parsed arguments; return the report."""
    if min(args.k, args.chunks, args.max_users, args.max_test_events) < 1:
        raise ConfigError("--k, --chunks, --max-users and --max-test-events must be at least 1")
    experiment, ranker, updater = load_experiment(args.experiment)
    try:
        variant_arms = arms(experiment, updater, ranker)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    started = time.perf_counter()
    events, n_users, n_items, metadata = load_events(args.data)
    try:
        split = temporal_split(
            events,
            test_fraction=args.test_fraction,
            max_users=args.max_users,
            max_test_events=args.max_test_events,
            seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError(f"--test-fraction: {exc}") from exc
    if len(split.users) == 0:
        raise DataError(f"--data {args.data}: no user has a positive event after the temporal cutoff")
    space = fit_space(split, n_users, n_items, metadata, args)
    _say(
        f"space fitted on {len(split.train):,} events; "
        f"replaying {len(split.users)} users x {len(variant_arms)} variants"
    )
    chunks = [c for c in np.array_split(split.users, min(args.chunks, len(split.users))) if len(c)]
    options = {
        "k": args.k,
        "conversion_types": experiment.conversion_events,
        "conversion_rating": args.conversion_rating,
    }

    def frames(users: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
        return split.train[split.train["user_idx"].isin(users)], split.test[
            split.test["user_idx"].isin(users)
        ]

    if args.serial:
        parts = [replay_users(space, variant_arms, *frames(c), c.tolist(), **options) for c in chunks]
    else:
        import ray

        from jobs._ray import init_ray

        init_ray(args.address)
        task = ray.remote(num_cpus=1)(replay_users)
        space_ref = ray.put(space)
        parts = ray.get(
            [task.remote(space_ref, variant_arms, *frames(c), c.tolist(), **options) for c in chunks]
        )
    counts = merge_counts(parts)
    report = experiment_report(experiment, counts)
    report["replay"] = {
        "data": str(args.data),
        "users": len(split.users),
        "train_events": len(split.train),
        "test_events": len(split.test),
        "cutoff": pd.Timestamp(split.cutoff, unit="s", tz="UTC").isoformat(),
        "k": args.k,
        "chunks": len(chunks),
        "seconds": round(time.perf_counter() - started, 2),
    }
    out = Location.parse(args.out)
    out.mkdir()
    write_json(report, out.child("report.json"))
    print(table(report), flush=True)
    return report


def table(report: dict[str, Any]) -> str:
    """The printed summary: one line per variant."""
    replay = report["replay"]
    lines = [
        f"A/B replay of {report['experiment']}: {replay['users']} users, k={replay['k']}, "
        f"cutoff {replay['cutoff']}, {replay['seconds']} s",
        f"  {'variant':<16}{'pages':>7}{'click rate':>12}{'95% CI':>18}{'conv rate':>11}{'p vs control':>14}",
    ]
    for row in report["variants"]:
        ctr = row["click_through"]
        low, high = ctr["ci95"]
        p_value = row.get("vs_control", {}).get("click_through", {}).get("p_value")
        lines.append(
            f"  {row['variant']:<16}{row['exposures']:>7}{ctr['rate']:>12.4f}{f'[{low:.4f}, {high:.4f}]':>18}"
            f"{row['conversion']['rate']:>11.4f}{'-' if p_value is None else f'{p_value:.4f}':>14}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.ab_replay", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
