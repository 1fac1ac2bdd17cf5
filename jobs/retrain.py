"""Retraining job: a challenger from the original data plus the serving log, promoted only if it wins.

``wayfinder retrain --data out/data --bundles out/bundles --store sqlite:///out/store.db --promote``
reads the store's event log, holds out the latest events of the log's users, fits a challenger
bundle (the champion's settings) on the preprocessed interactions plus the other fresh events,
scores champion and challenger on the same held-out events, and, when the challenger beats the
champion by more than ``--margin`` on ``--metric``, publishes it as the next version of the bundle
registry and (with ``--promote``) moves the ``champion`` pointer. The protocol is documented in
:mod:`recsys.engine.lifecycle`. Training and the two evaluations run as Ray tasks; the decision is
written as JSON (``--report``). A running app picks the new champion up with
``wayfinder serve --bundle out/bundles --reload`` (an in-place ``reconfigure``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobs.preprocess import add_address_argument
from recsys.errors import ConfigError

SMOKE_SPACE = {"iterations": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="out/data", help="preprocessed data the champion came from")
    parser.add_argument("--bundles", default="out/bundles", help="bundle registry (versions/, champion)")
    parser.add_argument("--store", default="sqlite:///out/store.db", help="serving store with the event log")
    parser.add_argument(
        "--init-from", help="publish this plain bundle (e.g. out/bundle) as the first champion when empty"
    )
    parser.add_argument(
        "--metric", default="ndcg@10", help="decision metric: ndcg@K, recall@K, hit_rate@K, mrr@K"
    )
    parser.add_argument("--margin", type=float, default=0.0, help="the challenger must win by more than this")
    parser.add_argument("--holdout", type=int, default=2, help="latest positive events held out per log user")
    parser.add_argument(
        "--min-history", type=int, default=2, help="positive events a log user needs before them"
    )
    parser.add_argument("--promote", action="store_true", help="move the champion pointer when it wins")
    parser.add_argument("--report", help="decision report JSON (default: BUNDLES/reports/retrain-TIME.json)")
    parser.add_argument("--smoke-test", action="store_true", help="few training iterations (CI-sized)")
    add_address_argument(parser)


def _say(message: str) -> None:
    print(f"[retrain] {message}", flush=True)


def _k(metric: str) -> int:
    name, _, k = metric.partition("@")
    if name not in ("ndcg", "recall", "hit_rate", "mrr") or not k.isdigit() or int(k) < 1:
        raise ConfigError(f"--metric {metric!r} must look like ndcg@10 (ndcg, recall, hit_rate or mrr)")
    return int(k)


def _train(
    data: str, registry_root: str, settings: dict[str, Any], extra: Any, manifest: dict[str, Any]
) -> str:
    """Fit the challenger and publish it as a version (not champion); runs as a Ray task."""
    from recsys.engine import train_bundle
    from recsys.engine.versions import BundleRegistry

    def build(directory: Path) -> dict[str, Any]:
        return train_bundle(data, directory, space=settings["space"], scorer=settings["scorer"], extra=extra)

    return BundleRegistry(registry_root).publish_bundle(build, manifest)


def _evaluate(bundle_dir: str, split: Any, k: int) -> dict[str, float]:
    """Score one bundle on the held-out users; runs as a Ray task."""
    from recsys.engine import load_bundle
    from recsys.engine.lifecycle import evaluate_bundle

    return evaluate_bundle(load_bundle(bundle_dir), split, k=k)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from jobs._ray import init_ray
    from recsys.data.ids import IdIndex
    from recsys.data.storage import Location
    from recsys.engine.lifecycle import decide, holdout_split, read_fresh_events, training_interactions
    from recsys.engine.versions import BundleRegistry
    from recsys.registry import data_fingerprint
    from recsys.store import open_store

    k = _k(args.metric)
    started = time.monotonic()
    data = Path(args.data).resolve()
    registry = BundleRegistry(args.bundles)
    fingerprint = data_fingerprint(Location.parse(str(data)))
    if registry.champion() is None and args.init_from:
        first = registry.adopt(
            args.init_from, {"parent": None, "data": {"source": str(data), "fingerprint": fingerprint}}
        )
        registry.set_champion(first)
        _say(f"published {args.init_from} as {first}, the first champion")
    champion = registry.champion()
    champion_manifest = registry.manifest(champion) if champion else {}
    champion_settings = champion_manifest.get("bundle") or {}
    trained_through = int((champion_manifest.get("data") or {}).get("log_seq") or 0)
    space: dict[str, Any] = dict(champion_settings.get("space") or {"family": "als", "factors": 64})
    if args.smoke_test:
        space.update(SMOKE_SPACE)
    settings = {"space": space, "scorer": champion_settings.get("scorer") if champion else None}

    _say(f"reading the event log of {args.store}")
    store = open_store(args.store)
    try:
        log_seq = store.last_sequence()
        fresh = read_fresh_events(store)
    finally:
        store.close()
    users = IdIndex.load(data / "ids" / "users.parquet")
    items = IdIndex.load(data / "ids" / "items.parquet")
    split = holdout_split(
        fresh, items, holdout=args.holdout, min_history=args.min_history, newer_than=trained_through
    )
    extra, counts = training_interactions(split.train, users, items)
    _say(
        f"{len(fresh):,} fresh events from {fresh['user_id'].nunique() if len(fresh) else 0:,} users; "
        f"{len(split.users):,} users evaluated on {split.hidden:,} hidden events; "
        f"{counts['used']:,} events train the challenger ({counts['new_users']:,} new users, "
        f"{counts['unknown_item']:,} on unknown items dropped)"
    )

    init_ray(args.address)
    manifest = {
        "parent": champion,
        "data": {
            "source": str(data),
            "fingerprint": fingerprint,
            "log_seq": log_seq,
            "fresh_events": counts,
        },
    }
    _say(f"training the challenger ({space.get('family')} space) as a Ray task")
    challenger = ray.get(
        ray.remote(num_cpus=1)(_train).remote(str(data), str(registry.path), settings, extra, manifest)
    )
    _say(f"evaluating {champion or '(no champion)'} and {challenger} on the same held-out events")
    evaluate = ray.remote(num_cpus=1)(_evaluate)
    pending = {"challenger": evaluate.remote(str(registry.path / "versions" / challenger), split, k)}
    if champion:
        pending["champion"] = evaluate.remote(str(registry.bundle_dir(champion)), split, k)
    metrics = dict(zip(pending, ray.get(list(pending.values())), strict=True))
    decision = decide(metrics.get("champion"), metrics["challenger"], metric=args.metric, margin=args.margin)
    _record(registry, challenger, metrics, decision.promote)
    if decision.promote and args.promote:
        registry.set_champion(challenger)
        outcome = "promoted"
    elif decision.promote:
        outcome = "would_promote"
    else:
        _discard(registry, challenger)
        outcome = "kept_champion"
    report = {
        "outcome": outcome,
        "reason": decision.reason,
        "metric": decision.metric,
        "margin": decision.margin,
        "champion": {"version": champion, "metrics": metrics.get("champion")},
        "challenger": {
            "version": challenger if outcome != "kept_champion" else None,
            "metrics": metrics["challenger"],
        },
        "delta": None if math.isnan(decision.delta) else decision.delta,
        "champion_now": registry.champion(),
        "evaluation": {
            "users": len(split.users),
            "hidden_events": split.hidden,
            "holdout": args.holdout,
            "newer_than_seq": trained_through,
        },
        "fresh_events": counts,
        "log_seq": log_seq,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 2),
    }
    path = (
        Path(args.report)
        if args.report
        else registry.path / "reports" / f"retrain-{time.strftime('%Y%m%dT%H%M%S')}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True))
    champion_metric = metrics.get("champion", {}).get(args.metric)
    _say(
        f"{args.metric}: champion {champion_metric if champion_metric is not None else '-'}, challenger "
        f"{metrics['challenger'][args.metric]:.4f} -> {outcome} ({decision.reason}); report {path}"
    )
    return report


def _record(registry: Any, version: str, metrics: dict[str, Any], wins: bool) -> None:
    """Add the evaluation to the version's manifest (before any pointer points at it)."""
    path = registry.path / "versions" / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["metrics"] = metrics
    manifest["won"] = wins
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    temporary.replace(path)


def _discard(registry: Any, version: str) -> None:
    """A losing challenger is not kept as a version (its numbers are in the report)."""
    import shutil

    shutil.rmtree(registry.path / "versions" / version, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.retrain", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
