"""The cold-start curve (docs/benchmarks.md section 2), offline, through the pure updater + ranker.

Data: ml-latest-small ratings -> positives (>= 3, dedup, 5-core), 20% of users held out with
``default_rng(0).random(n_users) < 0.2`` (never seen by any model or tuning step), models fitted on
the other 80%. Each held-out user with >= 25 positives is replayed in timestamp order (stable);
after n in {0, 1, 3, 5, 10, 20} revealed events the top 10 excluding revealed items is scored by
NDCG@10 against the next 10 positives. The three references run in the same process:

* popularity (positive counts of the training users);
* ALS exact fold-in (implicit, 64 factors, reg 0.01, 15 iterations: least squares on the revealed
  items), popularity at n = 0;
* EASE fold-in (lambda 250, history x B), popularity at n = 0;

and ours: every revealed positive goes through ``EmbeddingUpdater.apply`` as a ``rating`` event
(with its value), every page through ``Ranker.recommend`` (seen items filtered) and ``served``.

Settings (``DEFAULTS``) were chosen with ``--tune``: the same protocol on 5 folds of the *training*
users (407 validation users with >= 25 positives, each fold's users held out from that fold's
models), objective = mean NDCG@10 over all six checkpoints, two coordinate-wise stages
(``TUNE_STAGES``); the test users are not used for any choice. Where validation tied
(``interest_quota`` 0.0 vs 0.5: 0.18860 vs 0.18858) the multi-interest setting was kept.

    python -m benchmarks.coldstart_offline [--data DIR] [--tune] [--ablations] [--timing] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks._report import write_section
from recsys.embeddings import (
    EmbeddingSpace,
    EmbeddingUpdater,
    Event,
    ItemMetadata,
    StagePopularity,
    UpdaterConfig,
    UserState,
)
from recsys.embeddings.coldstart import (
    CHECKPOINTS,
    ColdStartData,
    PopularityReference,
    curve,
    fold_in_reference,
    holdout_mask,
    mean_curve,
    prepare,
    validation_folds,
)
from recsys.features.weights import WeightConfig
from recsys.models import ALSRecommender, EASERecommender
from recsys.ranking import (
    BlendConfig,
    Filters,
    ItemItemScorer,
    JourneyConfig,
    JourneyStage,
    Ranker,
    RankerConfig,
)

REPO = Path(__file__).resolve().parents[1]
ML_SMALL = REPO / "data" / "ml-latest-small"
REFERENCES = {  # docs/benchmarks.md section 2, NDCG@10 at n = 0, 1, 3, 5, 10, 20
    "popularity": (0.111, 0.102, 0.094, 0.097, 0.100, 0.089),
    "als_fold_in": (0.111, 0.163, 0.182, 0.154, 0.155, 0.107),
    "ease_fold_in": (0.111, 0.149, 0.180, 0.164, 0.162, 0.107),
}
ALS_PARAMS: dict[str, Any] = {"factors": 64, "regularization": 0.01, "iterations": 15, "random_state": 0}


@dataclass(frozen=True)
class EngineParams:
    """What the engine is built with (updater, item-item scorers, blend, journey)."""

    rating_values: bool = True
    embedding_weight: float = 0.5
    fold_in_weight: float = 0.5
    next_items_weight: float = 1.0
    session_weight: float = 0.5
    ease_weight: float = 0.0
    confidence_half: float = 2.0
    stage_prior: bool = True
    focus_lambda: float = 0.95
    focus_explore: float = 0.0
    cold_lambda: float = 1.0
    cold_max_per_region: int | None = 4
    interest_quota: float = 0.5
    spawn_threshold: float = 0.3
    half_life_events: float | None = 20.0


DEFAULTS = EngineParams()


# ----------------------------------------------------------------------------- agents
class EngineAgent:
    """The real path: events through the updater, pages through the ranker."""

    def __init__(self, updater: EmbeddingUpdater, ranker: Ranker, rating_values: bool) -> None:
        self.updater, self.ranker, self.rating_values = updater, ranker, rating_values

    def reset(self, user: int) -> None:
        self.user = user
        self.state = UserState(str(user))

    def observe(self, item: int, timestamp: float, rating: float, position: int) -> None:
        event = Event(item, "rating", timestamp, value=rating if self.rating_values else None,
                      event_id=f"{self.user}:{position}")  # fmt: skip
        self.updater.apply(self.state, event)

    def recommend(self, k: int) -> np.ndarray:
        page = self.ranker.recommend(self.state, k, Filters(exclude_seen=True))
        self.ranker.served(self.state, page)
        return np.array([r.item for r in page], dtype=np.int64)


# ----------------------------------------------------------------------------- fitting
@dataclass
class Fitted:
    popularity: np.ndarray
    als: ALSRecommender
    ease: EASERecommender
    space: EmbeddingSpace
    next_items: ItemItemScorer
    session: ItemItemScorer


def fit_models(data: ColdStartData, fit_users: np.ndarray, metadata: ItemMetadata | None) -> Fitted:
    matrix = data.interactions(fit_users)
    popularity = np.asarray(matrix.sum(axis=0)).ravel()
    als = ALSRecommender(**ALS_PARAMS, device="cpu").fit(matrix)
    ease = EASERecommender(l2=250.0).fit(matrix)
    events = data.events(fit_users)
    arrays = (events["user_id"].to_numpy(), events["item_id"].to_numpy(), events["timestamp"].to_numpy())
    prior = StagePopularity.fit(*arrays, n_items=data.n_items)
    space = EmbeddingSpace.from_model(als, prior, metadata, random_state=0)
    next_items = ItemItemScorer.fit_next_items(
        *arrays, n_items=data.n_items, past=20, future=10, half_life=5.0, l2=200.0
    )
    session = ItemItemScorer.fit_session_ease(*arrays, n_items=data.n_items, window=10, stride=5, l2=500.0)
    return Fitted(popularity, als, ease, space, next_items, session)


def engine(fitted: Fitted, params: EngineParams) -> EngineAgent:
    weights = WeightConfig(rating_neutral=2.0) if params.rating_values else WeightConfig()
    updater = EmbeddingUpdater(
        fitted.space,
        UpdaterConfig(weights=weights, spawn_threshold=params.spawn_threshold,
                      half_life_events=params.half_life_events),
    )  # fmt: skip
    scorers = [
        dataclasses.replace(fitted.next_items, weight=params.next_items_weight),
        dataclasses.replace(fitted.session, weight=params.session_weight),
    ]
    if params.ease_weight > 0:
        scorers.append(ItemItemScorer.from_model(fitted.ease, weight=params.ease_weight))
    journey = JourneyConfig(
        cold=JourneyStage(
            name="cold", mmr_lambda=params.cold_lambda, max_per_region=params.cold_max_per_region
        ),
        stages=(
            JourneyStage(name="focus", explore_share=params.focus_explore, mmr_lambda=params.focus_lambda),
            JourneyStage(name="browse", min_pages_without_signal=2, explore_share=0.2, mmr_lambda=0.8),
            JourneyStage(name="explore", min_pages_without_signal=4, explore_share=0.4, mmr_lambda=0.6),
        ),
    )
    blend = BlendConfig(
        embedding_weight=params.embedding_weight,
        fold_in_weight=params.fold_in_weight,
        confidence_half=params.confidence_half,
        stage_prior=params.stage_prior,
    )
    config = RankerConfig(blend=blend, journey=journey, interest_quota=params.interest_quota)
    ranker = Ranker(fitted.space, scorers, config)
    return EngineAgent(updater, ranker, params.rating_values)


def load(data_dir: Path) -> tuple[ColdStartData, ItemMetadata | None]:
    ratings = pd.read_csv(data_dir / "ratings.csv").rename(
        columns={"userId": "user_id", "movieId": "item_id"}
    )
    data = prepare(ratings)
    metadata = None
    if (data_dir / "movies.csv").exists():
        movies = pd.read_csv(data_dir / "movies.csv").rename(
            columns={"movieId": "item_id", "genres": "categories"}
        )
        movies["item_id"] = movies["item_id"].astype(str)
        metadata = ItemMetadata.from_frame(movies, [str(i) for i in data.item_ids])
    return data, metadata


# ----------------------------------------------------------------------------- runs
def run_test(
    data: ColdStartData, metadata: ItemMetadata | None, ablations: bool
) -> dict[str, dict[int, float]]:
    held = holdout_mask(data.n_users)
    histories = data.histories(np.flatnonzero(held))
    started = time.perf_counter()
    fitted = fit_models(data, np.flatnonzero(~held), metadata)
    seconds = time.perf_counter() - started
    print(f"[coldstart] {len(histories)} held-out users; models fitted in {seconds:.1f}s", file=sys.stderr)
    agents: dict[str, Any] = {
        "popularity": PopularityReference(fitted.popularity),
        "als_fold_in": fold_in_reference(fitted.popularity, fitted.als),
        "ease_fold_in": fold_in_reference(fitted.popularity, fitted.ease),
        "ours": engine(fitted, DEFAULTS),
    }
    if ablations:
        for name, change in ABLATIONS.items():
            agents[f"ours {name}"] = engine(fitted, dataclasses.replace(DEFAULTS, **change))
    return {name: mean_curve(curve(agent, histories)) for name, agent in agents.items()}


ABLATIONS: dict[str, dict[str, Any]] = {
    "-next_items": {"next_items_weight": 0.0},
    "-session_ease": {"session_weight": 0.0},
    "-embedding": {"embedding_weight": 0.0, "fold_in_weight": 0.0},
    "-stage_prior": {"stage_prior": False},
    "+ease": {"ease_weight": 0.5},
    "no_diversity": {"cold_lambda": 1.0, "cold_max_per_region": None, "focus_lambda": 1.0},
}
TUNE_STAGES: list[dict[str, list[Any]]] = [  # tuned one stage after the other (coordinate-wise)
    {
        "rating_values": [True, False],
        "embedding_weight": [0.0, 0.5, 1.0],
        "session_weight": [0.5, 1.0],
        "confidence_half": [1.0, 2.0, 5.0],
    },
    {
        "focus_lambda": [0.9, 0.95, 1.0],
        "focus_explore": [0.0, 0.1],
        "interest_quota": [0.0, 0.5],
        "cold_lambda": [0.85, 1.0],
    },
]


def tune(data: ColdStartData, metadata: ItemMetadata | None) -> None:
    """Choose EngineParams on validation folds of the training users (test users never used).

    Objective: mean NDCG@10 over the checkpoints, pooled over the validation users of 5 folds.
    """
    train_users = np.flatnonzero(~holdout_mask(data.n_users))
    folds = []
    for fit_users, valid_users in validation_folds(train_users):
        folds.append((fit_models(data, fit_users, metadata), data.histories(valid_users)))
    print(f"[tune] {sum(len(h) for _, h in folds)} validation users in {len(folds)} folds", file=sys.stderr)
    best = DEFAULTS
    for stage in TUNE_STAGES:
        results = []
        for values in itertools.product(*stage.values()):
            params = dataclasses.replace(best, **dict(zip(stage, values, strict=True)))
            pooled: dict[int, list[np.ndarray]] = {}
            for fitted, histories in folds:
                for n, scores in curve(engine(fitted, params), histories).items():
                    pooled.setdefault(n, []).append(scores)
            means = {n: float(np.concatenate(v).mean()) for n, v in pooled.items()}
            results.append((float(np.mean(list(means.values()))), params, means))
        results.sort(key=lambda r: -r[0])
        for objective, params, means in results[:5]:
            shown = {key: getattr(params, key) for key in stage}
            print(f"{objective:.4f}  " + " ".join(f"{means[n]:.3f}" for n in CHECKPOINTS) + f"  {shown}")
        best = results[0][1]
    print(f"[tune] chosen: {best}")


def timing(n_items: int = 10_000, dim: int = 64, repeats: int = 4000) -> dict[str, float]:
    """Microseconds per event update (d=64, exact ALS fold-in on) and per ranking call (k=10).

    Synthetic ALS-like space of ``n_items`` items with a Gram matrix, a user with 4 interests and
    30 signals; the ranker has two item-item scorers pruned to 100 entries per row. Reported: the
    minimum over many short runs (robust to other load on a shared machine).
    """
    import timeit

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32) / np.sqrt(dim)
    gram = vectors.T.astype(np.float64) @ vectors
    popularity = rng.integers(1, 1000, n_items).astype(np.float64)
    space = EmbeddingSpace.from_vectors(vectors, popularity, gram=gram, regularization=0.1, n_regions=16)
    updater = EmbeddingUpdater(space, UpdaterConfig(weights=WeightConfig(rating_neutral=2.0)))
    state = UserState("timing")
    for step in range(30):
        updater.apply(state, Event(int(rng.integers(n_items)), "like", float(step)))
    events = [Event(int(i), "like", 100.0 + j) for j, i in enumerate(rng.integers(0, n_items, repeats))]
    iterator = iter(events)
    update_us = min(
        timeit.repeat(lambda: updater.apply(state, next(iterator)), number=repeats // 20, repeat=20)
    )
    update_us *= 1e6 / (repeats // 20)
    sparse = sp.random(
        n_items, n_items, density=100 / n_items, format="csr", random_state=0, dtype=np.float32
    )
    scorers = [ItemItemScorer("a", sparse), ItemItemScorer("b", sparse, weight=0.5)]
    ranker = Ranker(space, scorers)
    calls = 20  # min over many short runs: robust to other load on a shared machine
    rank_us = min(timeit.repeat(lambda: ranker.recommend(state, 10), number=calls, repeat=30)) * 1e6 / calls
    return {"update_us": update_us, "recommend_us": rank_us, "interests": float(len(state.interests))}


def table(results: dict[str, dict[int, float]]) -> str:
    lines = ["| method | " + " | ".join(f"n={n}" for n in CHECKPOINTS) + " |"]
    lines.append("|---" * (len(CHECKPOINTS) + 1) + "|")
    for name, means in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{means[n]:.3f}" for n in CHECKPOINTS) + " |")
    for name, values in REFERENCES.items():
        lines.append(f"| {name} (docs) | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    best = {n: max(results[r][n] for r in REFERENCES) for n in CHECKPOINTS}
    lines.append("| ours / best reference | " + " | ".join(
        f"{results['ours'][n] / best[n]:.2f}" for n in CHECKPOINTS) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ML_SMALL)
    parser.add_argument("--tune", action="store_true", help="choose settings on validation folds")
    parser.add_argument("--ablations", action="store_true", help="also run ablations of ours")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--timing", action="store_true", help="also time one update and one ranking call")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    data, metadata = load(args.data)
    if args.tune:
        tune(data, metadata)
        return 0
    results = run_test(data, metadata, args.ablations)
    print(table(results))
    section = [
        "## Cold start, offline (docs/benchmarks.md section 2)",
        "",
        "`python -m benchmarks.coldstart_offline --timing`: NDCG@10 against each held-out user's next 10 "
        "positives after n revealed events, through the pure updater and ranker (no HTTP); the references "
        "are computed in the same run. The curve through the HTTP API: `benchmarks/coldstart.py`.",
        "",
        table(results),
    ]
    if args.timing:
        times = timing()
        line = (
            f"one update (d=64, exact ALS fold-in): {times['update_us']:.0f} us; "
            f"one recommend (k=10, 10k items): {times['recommend_us']:.0f} us"
        )
        print(line)
        section += ["", f"In-process cost, minimum over repeated runs: {line}."]
    write_section("coldstart_offline", "\n".join(section))  # "coldstart" is benchmarks/coldstart.py's
    print(f"[coldstart] total {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"results": results, "params": dataclasses.asdict(DEFAULTS)}, indent=2)
        )
    best = {n: max(results[r][n] for r in REFERENCES) for n in CHECKPOINTS}
    ok = all(results["ours"][n] >= best[n] for n in CHECKPOINTS)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
