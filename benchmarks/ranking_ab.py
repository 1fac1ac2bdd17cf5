"""Pure ranking before and after: a base revision's ``recsys.ranking`` against this tree's.

Same bundle (the serving benchmark's, ml-latest-small), same user states (200 users, half with 20
events, each at three journey stages: 0, 2 and 5 pages since the last signal), same process: the
base revision is extracted with ``git archive`` and imported beside the current package. Reports
how many pages are identical (items, scores, provenance, explanations) and the microseconds per
``Ranker.recommend(k=10)`` in two cases: the blend computed in the call, and the blend kept from an
earlier call of the same state (``scored=``, as the engine does for repeat pages). The two
rankers are interleaved over several rounds so machine noise hits both alike. Writes the
``ranking-ab`` section of BENCHMARKS.md.

    python -m benchmarks.ranking_ab [--base 76f3963] [--workdir /tmp/wf-bench-serving]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.serving import ENV, POOL, SEED_EVENTS, SEED_TYPES, catalogue, ensure_bundle, fresh_db

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 5
STAGES = (0, 2, 5)
CASES = {"fresh": "blend computed in the call", "kept": "blend kept from an earlier call (repeat page)"}


def states(bundle: Path, workdir: Path) -> list[bytes]:
    """State blobs of the pool: half the users with :data:`SEED_EVENTS` events, at each stage."""
    from recsys.engine import Engine, IncomingEvent, load_bundle
    from recsys.store import open_store

    parts = load_bundle(bundle)
    store = open_store(f"sqlite:///{fresh_db(workdir / 'ranking-ab.db')}?synchronous=NORMAL")
    engine = Engine(space=parts.space, item_ids=parts.item_ids, store=store, scorers=parts.scorers)
    rng, items, now = random.Random(1), catalogue(bundle), time.time()
    users = [f"u{n:03d}" for n in range(POOL)]
    events = [
        IncomingEvent(user, rng.choice(items), kind, now + n * 1e-3, event_id=f"{user}-{n}")
        for user in users[: POOL // 2]
        for n, kind in enumerate(SEED_TYPES[:SEED_EVENTS])
    ]
    engine.ingest(events)
    blobs = []
    for user in users:
        for pages in STAGES:
            state = engine.state(user)[0]
            state.pages_since_signal = pages
            blobs.append(state.to_bytes())
    return blobs


def base_ranking(revision: str, into: Path) -> ModuleType:
    """``recsys.ranking.ranker`` of ``revision``, imported beside (not over) the current package."""
    archive = subprocess.run(
        ["git", "archive", revision, "recsys"], cwd=REPO, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    current = {name: module for name, module in sys.modules.items() if name.startswith("recsys.ranking")}
    for name in current:
        del sys.modules[name]
    import recsys

    recsys.__path__.insert(0, str(into / "recsys"))
    try:
        module = importlib.import_module("recsys.ranking.ranker")
    finally:
        recsys.__path__.pop(0)
        for name in [n for n in sys.modules if n.startswith("recsys.ranking")]:
            del sys.modules[name]
        sys.modules.update(current)
    return module


def measure(base: str, workdir: Path) -> dict[str, Any]:
    from recsys.embeddings import UserState
    from recsys.engine import load_bundle
    from recsys.ranking import Filters, Ranker, RankerConfig, RequestContext

    bundle, _ = ensure_bundle(workdir)
    blobs = states(bundle, workdir)
    parts = load_bundle(bundle)
    with tempfile.TemporaryDirectory(prefix="wf-ranking-ab-") as tmp:
        old = base_ranking(base, Path(tmp))
    now = time.time()
    rankers: dict[str, tuple[Any, Any, Any]] = {
        "before": (
            old.Ranker(parts.space, parts.scorers, old.RankerConfig()),
            old.Filters,
            old.RequestContext(now=now),
        ),
        "after": (Ranker(parts.space, parts.scorers, RankerConfig()), Filters, RequestContext(now=now)),
    }
    parsed = [UserState.from_bytes(b) for b in blobs]
    kept = {name: [ranker.scores(state) for state in parsed] for name, (ranker, _, _) in rankers.items()}

    def page(name: str, case: str, index: int) -> list[Any]:
        ranker, filters, context = rankers[name]
        scored = kept[name][index] if case == "kept" else None
        return ranker.recommend(parsed[index], 10, filters(), context, scored=scored)

    def content(ranked: list[Any]) -> list[tuple[Any, ...]]:
        return [(r.item, r.score, r.provenance, r.explanation, r.because, r.campaign_id) for r in ranked]

    identical = {
        case: sum(
            content(page("before", case, i)) == content(page("after", case, i)) for i in range(len(parsed))
        )
        for case in CASES
    }
    samples: dict[tuple[str, str], list[int]] = {(name, case): [] for case in CASES for name in rankers}
    for _ in range(ROUNDS):
        for name, case in samples:
            for index in range(len(parsed)):
                started = time.perf_counter_ns()
                page(name, case, index)
                samples[name, case].append(time.perf_counter_ns() - started)
    stats = {}
    for (name, case), values in samples.items():
        ordered = sorted(values)
        stats[f"{name}, {case}"] = {
            "min_us": ordered[0] / 1e3,
            "median_us": ordered[len(ordered) // 2] / 1e3,
            "p90_us": ordered[int(0.9 * len(ordered))] / 1e3,
        }
    return {"base": base, "pages": len(blobs), "identical": identical, "stats": stats,
            "load": os.getloadavg()[0], "items": parts.space.n_items}  # fmt: skip


def render(result: dict[str, Any]) -> str:
    rows = [
        f"| {name} | {s['min_us']:,.0f} | {s['median_us']:,.0f} | {s['p90_us']:,.0f} |"
        for name, s in result["stats"].items()
    ]
    return "\n".join(
        [
            "## Ranking before and after (pure `Ranker.recommend`, k=10)",
            "",
            f"`python -m benchmarks.ranking_ab --base {result['base']}`: the ranker of revision "
            f"`{result['base']}` against this tree's on the serving bundle ({result['items']:,} items), "
            f"{result['pages']} states (200 users, half with {SEED_EVENTS} events, each at 0, 2 and 5 pages "
            f"since the last signal), interleaved over {ROUNDS} rounds in one process; load average "
            f"{result['load']:.1f} (shared machine: the minimum is the least disturbed).",
            "",
            "**Identical pages** (items, scores, provenance, explanations): "
            + ", ".join(
                f"{n} of {result['pages']} with the {CASES[case]}" for case, n in result["identical"].items()
            )
            + ".",
            "",
            "| ranker, blend | min µs | median µs | p90 µs |",
            "|---|---:|---:|---:|",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base", default="76f3963", help="revision to compare with (default: before the change)"
    )
    parser.add_argument("--workdir", default="/tmp/wf-bench-serving")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    for name, value in ENV.items():
        os.environ.setdefault(name, value)
    from benchmarks._report import write_section

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result = measure(args.base, workdir)
    (workdir / "ranking-ab.json").write_text(json.dumps(result, indent=1))
    report = render(result)
    if not args.no_write:
        write_section("ranking-ab", report)
    print(report)


if __name__ == "__main__":
    main()
