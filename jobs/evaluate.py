"""Offline evaluation job: every model family on one split, in parallel on Ray; metrics.json + report.html.

Run it as ``wayfinder evaluate --data out/data --families ease,itemknn,als --out out/eval`` or, against
a running cluster, ``ray job submit --working-dir . -- python -m jobs.evaluate --data ... --out ...``.
Each family (grid search on validation, refit, test, optional cross-validation) is one Ray task with one
CPU; the split travels inside the task's closure (it is small).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from jobs.preprocess import add_address_argument
from recsys.data.runner import SerialExecutor
from recsys.data.storage import Location, write_json
from recsys.errors import ConfigError
from recsys.evaluation.runner import PROTOCOLS, evaluate_families, load_shared_data, resolve_families


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="preprocessed data directory or URI (wayfinder preprocess)"
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="recbole", help="offline protocol")
    parser.add_argument(
        "--families",
        default="all",
        help="comma-separated model families, e.g. ease,itemknn,als (default: all available here)",
    )
    parser.add_argument(
        "--out", required=True, help="output directory or URI for metrics.json and report.html"
    )
    parser.add_argument("--k", default="5,10,20", help="comma-separated cut-offs (10 is always included)")
    parser.add_argument(
        "--cv-folds", type=int, help="also cross-validate the chosen parameters (N >= 2 folds)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the folds and the models")
    parser.add_argument("--serial", action="store_true", help="run the families in this process, not on Ray")
    add_address_argument(parser)


def _families(text: str) -> list[str] | None:
    if text.strip().lower() == "all":
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"--families expects comma-separated family names or 'all', got {text!r}")
    return names


def _k_values(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--k expects comma-separated positive integers such as 5,10,20, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise ConfigError(f"--k expects comma-separated positive integers such as 5,10,20, got {text!r}")
    return values


def _say(line: str) -> None:
    print(f"[evaluate] {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the job for parsed arguments; return the ``metrics.json`` payload."""
    families = _families(args.families)
    k_values = _k_values(args.k)
    if args.cv_folds is not None and args.cv_folds < 2:
        raise ConfigError(f"--cv-folds must be at least 2, got {args.cv_folds}")
    resolve_families(families)  # unknown names fail here, before any data or cluster work
    out = Location.parse(args.out)
    started = time.perf_counter()
    shared = load_shared_data(args.data, protocol=args.protocol, seed=args.seed)
    counts = shared[1]
    _say(f"split ready: {counts['users']} users, {counts['items']} items, {counts['interactions']} positives")

    def progress(stage: str, done: int, total: int) -> None:
        _say(f"{stage}: {done}/{total}")

    if args.serial:
        executor: Any = SerialExecutor(progress)
    else:
        from jobs._executor import RayDataExecutor
        from jobs._ray import init_ray

        init_ray(args.address)
        executor = RayDataExecutor(num_cpus=1.0, label="evaluate")
    metrics = evaluate_families(
        shared,
        families,
        protocol=args.protocol,
        k_values=k_values,
        cv_folds=args.cv_folds,
        seed=args.seed,
        executor=executor,
        on_message=_say,
    )
    write_outputs(metrics, out)
    print_summary(metrics, out, time.perf_counter() - started)
    return metrics


def write_outputs(metrics: dict[str, Any], out: Location) -> None:
    """Write ``metrics.json`` and the self-contained ``report.html`` under ``out``."""
    from recsys.evaluation.report import render_report

    out.mkdir()
    write_json(metrics, out.child("metrics.json"))
    with out.fs.open_output_stream(out.child("report.html").path) as stream:
        stream.write(render_report(metrics).encode("utf-8"))


def print_summary(metrics: dict[str, Any], out: Location, seconds: float) -> None:
    """One line per family, best NDCG@10 first."""
    lines = [f"Evaluated {len(metrics['families'])} families into {out.uri} in {seconds:.1f} s"]
    lines.append(f"  {'family':<18}{'ndcg@10':>9}{'recall@10':>11}{'hit@10':>8}{'fit s':>8}")
    ranked = sorted(metrics["families"].items(), key=lambda pair: -pair[1]["ndcg@10"])
    for family, result in ranked:
        lines.append(
            f"  {family:<18}{result['ndcg@10']:>9.4f}{result['recall@10']:>11.4f}"
            f"{result['hit@10']:>8.3f}{result['fit_seconds']:>8.2f}"
        )
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
