"""Offline replay of logged events through each variant, to compare them before going live.

Protocol
--------
1. **Temporal split**: events before the ``1 - test_fraction`` quantile of timestamps train the
   space (ALS on the signed weights of those events only, so no variant sees the future); test
   users are those with at least one positive event (``weight > 0``) after the cutoff.
2. **Replay**: every test user goes through *every* variant (a paired comparison): a fresh state
   folds in the user's training events in time order through the variant's updater, then walks the
   test events in time order; before each positive event the variant's ranker serves a page of
   ``k`` (seen items filtered) and that page is one exposure; it is a **click** when the event's
   item is on the page, and a **conversion** when that event is also a strong one (its type is a
   conversion type of the experiment, or a rating of at least ``conversion_rating``). The event is
   then applied, so the next page reflects it, as in serving.
3. **Report**: per variant exposures, click rate (= hit rate at k) and conversion rate with Wilson
   intervals, and the two-proportion z-test against the control. Pages of one user are correlated,
   and the same users appear under every variant, so read the p-values as indicative.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.embeddings import EmbeddingSpace, EmbeddingUpdater, UpdaterConfig, UserState
from recsys.embeddings import Event as UpdateEvent
from recsys.experiments.attribution import CLICKS, CONVERSIONS, EXPOSURES
from recsys.experiments.config import Experiment, apply_overrides
from recsys.ranking import Filters, Ranker, RankerConfig, RequestContext

COLUMNS = ("user_idx", "item_idx", "event_type", "ts", "value", "weight")
"""The event columns a replay reads (``ts`` in epoch seconds)."""


@dataclass(frozen=True)
class ReplaySplit:
    """Events before and after the cutoff, and the users to replay."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: float
    users: np.ndarray


def temporal_split(
    events: pd.DataFrame,
    *,
    test_fraction: float = 0.2,
    max_users: int | None = None,
    max_test_events: int | None = None,
    seed: int = 0,
) -> ReplaySplit:
    """Split at the timestamp quantile; sample at most ``max_users`` test users (seeded) and keep
    each one's first ``max_test_events`` events after the cutoff (bounds the work per user)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    frame = events.sort_values(["ts", "user_idx"], kind="stable").reset_index(drop=True)
    cutoff = float(np.quantile(frame["ts"].to_numpy(), 1.0 - test_fraction))
    after = frame["ts"].to_numpy() > cutoff
    train, test = frame[~after], frame[after]
    users = np.unique(test.loc[test["weight"] > 0, "user_idx"].to_numpy())
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    test = test[test["user_idx"].isin(users)]
    if max_test_events is not None:
        test = test.groupby("user_idx", sort=False).head(max_test_events)
    return ReplaySplit(train, test, cutoff, users)


@dataclass(frozen=True)
class VariantArm:
    """What a variant replays with."""

    name: str
    updater: UpdaterConfig
    ranker: RankerConfig


def arms(experiment: Experiment, updater: UpdaterConfig, ranker: RankerConfig) -> list[VariantArm]:
    """Each variant's settings: the base with its overrides (a variant's own bundle is refused)."""
    out = []
    for variant in experiment.variants:
        if variant.bundle is not None:
            raise ValueError(
                f"variant {variant.name!r} names a bundle; the replay fits one space on the training "
                "period for every variant (a bundle trained on all data would see the test events)"
            )
        out.append(
            VariantArm(
                variant.name,
                apply_overrides(updater, variant.updater),
                apply_overrides(ranker, variant.ranker),
            )
        )
    return out


def _event(row: tuple[int, str, float, float | None], position: str) -> UpdateEvent:
    item, kind, ts, value = row
    return UpdateEvent(
        int(item), str(kind), float(ts), None if value is None or np.isnan(value) else float(value), position
    )


def replay_user(
    updater: EmbeddingUpdater,
    ranker: Ranker,
    history: pd.DataFrame,
    future: pd.DataFrame,
    *,
    k: int,
    conversion_types: Iterable[str],
    conversion_rating: float,
) -> dict[str, int]:
    """Counts (``exposures``, ``clicks``, ``conversions``) of one user under one variant."""
    strong = set(conversion_types)
    state = UserState("replay")
    columns = ["item_idx", "event_type", "ts", "value"]
    for n, row in enumerate(history[columns].itertuples(index=False, name=None)):
        state, _ = updater.apply(state, _event(row, f"h{n}"))
    counts = {EXPOSURES: 0, CLICKS: 0, CONVERSIONS: 0}
    for n, (row, weight) in enumerate(
        zip(future[columns].itertuples(index=False, name=None), future["weight"].to_numpy(), strict=True)
    ):
        item, kind, ts, value = row
        if weight > 0:
            page = ranker.recommend(state, k, Filters(exclude_seen=True), RequestContext(now=float(ts)))
            counts[EXPOSURES] += 1
            if int(item) in {r.item for r in page}:
                counts[CLICKS] += 1
                rated = kind == "rating" and value is not None and value >= conversion_rating
                counts[CONVERSIONS] += int(kind in strong or bool(rated))
            state = ranker.served(state, page)
        state, _ = updater.apply(state, _event(row, f"f{n}"))
    return counts


def replay_users(
    space: EmbeddingSpace,
    variant_arms: Sequence[VariantArm],
    split_train: pd.DataFrame,
    split_test: pd.DataFrame,
    users: Sequence[int],
    *,
    k: int = 10,
    conversion_types: Iterable[str] = (),
    conversion_rating: float = 4.5,
) -> dict[str, dict[str, int]]:
    """Summed counts per variant over ``users`` (one unit of parallel work)."""
    totals = {arm.name: {EXPOSURES: 0, CLICKS: 0, CONVERSIONS: 0} for arm in variant_arms}
    wanted = set(int(u) for u in users)
    history = {u: f for u, f in split_train[split_train["user_idx"].isin(wanted)].groupby("user_idx")}
    future = {u: f for u, f in split_test[split_test["user_idx"].isin(wanted)].groupby("user_idx")}
    empty = split_train.iloc[:0]
    types = tuple(conversion_types)
    engines = [
        (arm, EmbeddingUpdater(space, arm.updater), Ranker(space, (), arm.ranker)) for arm in variant_arms
    ]
    for user in sorted(wanted):
        if user not in future:
            continue
        for arm, updater, ranker in engines:
            counts = replay_user(
                updater,
                ranker,
                history.get(user, empty),
                future[user],
                k=k,
                conversion_types=types,
                conversion_rating=conversion_rating,
            )
            for key, value in counts.items():
                totals[arm.name][key] += value
    return totals


def merge_counts(parts: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum per-variant counts from several chunks."""
    total: dict[str, dict[str, int]] = {}
    for part in parts:
        for variant, counts in part.items():
            into = total.setdefault(variant, {})
            for key, value in counts.items():
                into[key] = into.get(key, 0) + value
    return total
