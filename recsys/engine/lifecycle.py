"""Retraining: fresh events from the serving log, one evaluation protocol, the promotion rule.

The protocol (the same for champion and challenger, so their numbers compare):

1. **Fresh events** are every event in the store's log (:func:`read_fresh_events`), weighted by the
   one weighting function (:func:`recsys.features.weights.event_weights`, default settings, as
   preprocessing does).
2. **Hold-out** (:func:`holdout_split`): each log user with at least ``min_history + holdout``
   positive events on known items has their latest ``holdout`` positive events held out (everything
   from the first held-out event on is hidden), provided they are newer than the log sequence the
   champion was trained through. The rest is their history.
3. **Challenger** = the champion's bundle settings fitted on the original preprocessed interactions
   plus the fresh events that are *not* held out (:func:`training_interactions`; log users unknown
   to the data get new rows; events for items the data does not know are dropped and counted).
4. **Scoring** (:func:`evaluate_bundle`): for every held-out user, the bundle's own embedding
   updater folds the history into a state (exactly what serving does with the log) and its ranker
   returns the top ``k`` (seen items filtered); NDCG/recall/hit-rate/MRR at ``k`` against the
   held-out items (:func:`recsys.evaluation.evaluate_ranking`). The champion never saw the held-out
   events (they are newer than its data), and neither did the challenger.
5. **Decision** (:func:`decide`): promote only when ``challenger - champion > margin`` on the
   chosen metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.ids import IdIndex
from recsys.embeddings import EmbeddingUpdater, UpdaterConfig, UserState
from recsys.engine.bundle import BundleParts
from recsys.engine.rederive import update_event
from recsys.errors import ConfigError
from recsys.evaluation.metrics import evaluate_ranking
from recsys.features.weights import WeightConfig, event_weights
from recsys.ranking import Filters, Ranker, RankerConfig, RequestContext
from recsys.store.base import Event, EventLog

__all__ = [
    "Decision",
    "HoldoutSplit",
    "decide",
    "evaluate_bundle",
    "holdout_split",
    "read_fresh_events",
    "training_interactions",
]

EVAL_METRICS = ("ndcg", "recall", "hit_rate", "mrr")


def read_fresh_events(
    log: EventLog, *, after_seq: int = 0, weights: WeightConfig | None = None
) -> pd.DataFrame:
    """The log's events after ``after_seq`` as a frame, oldest first, with their signed ``weight``.

    Columns: ``seq``, ``user_id``, ``item_id``, ``event_type``, ``value``, ``timestamp_ms``,
    ``weight``, and ``event`` (the stored :class:`~recsys.store.Event`, for replaying histories).
    """
    rows = [
        (
            s.seq,
            s.event.user_id,
            s.event.item_id,
            s.event.event_type,
            s.event.value,
            s.event.timestamp_ms,
            s.event,
        )
        for s in log.iter_events(after_seq=after_seq)
    ]
    frame = pd.DataFrame(
        rows, columns=["seq", "user_id", "item_id", "event_type", "value", "timestamp_ms", "event"]
    )
    if frame.empty:
        return frame.assign(weight=np.zeros(0, dtype=np.float32))
    values = frame["value"].astype("float64").to_numpy()
    frame["weight"] = event_weights(frame["event_type"], values=values, config=weights)
    return frame


@dataclass
class HoldoutSplit:
    """Fresh events split by :func:`holdout_split`."""

    train: pd.DataFrame
    """Fresh events the challenger may learn from (everything not hidden)."""
    histories: dict[str, list[Event]]
    """Per evaluation user, their events before the first held-out one, oldest first."""
    truth: dict[str, list[str]]
    """Per evaluation user, the item ids of their held-out positive events."""
    hidden: int = 0
    """How many events were hidden (held-out positives and anything after the first of them)."""

    @property
    def users(self) -> list[str]:
        return sorted(self.truth)


def holdout_split(
    fresh: pd.DataFrame, known_items: IdIndex, *, holdout: int = 2, min_history: int = 2, newer_than: int = 0
) -> HoldoutSplit:
    """Hold out each log user's latest ``holdout`` positive events on known items (see module doc).

    Only events with a sequence above ``newer_than`` (the log sequence the champion was trained
    through) may be held out, so the champion has never seen what it is scored on; a user whose
    latest positives are older is not evaluated.
    """
    if holdout < 1 or min_history < 1:
        raise ConfigError(f"holdout ({holdout}) and min_history ({min_history}) must be at least 1")
    if fresh.empty:
        return HoldoutSplit(fresh, {}, {})
    ordered = fresh.sort_values(["user_id", "timestamp_ms", "seq"], kind="stable")
    known = known_items.lookup(ordered["item_id"].astype(str)) >= 0
    positive = (ordered["weight"].to_numpy() > 0) & known
    keep = np.ones(len(ordered), dtype=bool)
    histories: dict[str, list[Event]] = {}
    truth: dict[str, list[str]] = {}
    users = ordered["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    events = ordered["event"].to_numpy()
    items = ordered["item_id"].astype(str).to_numpy()
    seqs = ordered["seq"].to_numpy()
    for start, end in zip(starts, ends, strict=True):
        rows = np.flatnonzero(positive[start:end]) + start
        if len(rows) < min_history + holdout or seqs[rows[-holdout]] <= newer_than:
            continue
        first_hidden = int(rows[-holdout])
        user = str(users[start])
        truth[user] = [str(items[r]) for r in rows[-holdout:]]
        histories[user] = [events[r] for r in range(start, first_hidden)]
        keep[first_hidden:end] = False
    train = ordered[keep].sort_values("seq", kind="stable").reset_index(drop=True)
    return HoldoutSplit(train, histories, truth, hidden=int((~keep).sum()))


def training_interactions(
    fresh: pd.DataFrame, users: IdIndex, items: IdIndex
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Fresh events as ``user_idx``, ``item_idx``, ``weight`` rows for :func:`~recsys.engine.train_bundle`.

    Users the data does not know get rows after the data's last user (sorted, so the mapping is
    deterministic); events on items the data does not know are dropped. Returns the rows and counts.
    """
    if fresh.empty:
        empty = pd.DataFrame({"user_idx": [], "item_idx": [], "weight": []})
        return empty, {"events": 0, "used": 0, "unknown_item": 0, "new_users": 0}
    item_idx = items.lookup(fresh["item_id"].astype(str))
    user_ids = fresh["user_id"].astype(str)
    user_idx = users.lookup(user_ids)
    new = sorted(set(user_ids[user_idx < 0]))
    extra_rows = {user: len(users) + i for i, user in enumerate(new)}
    user_idx = np.where(user_idx >= 0, user_idx, user_ids.map(extra_rows).fillna(-1).to_numpy(np.int64))
    used = item_idx >= 0
    rows = pd.DataFrame(
        {
            "user_idx": user_idx[used].astype(np.int64),
            "item_idx": item_idx[used].astype(np.int64),
            "weight": fresh["weight"].to_numpy(np.float32)[used],
        }
    )
    counts = {
        "events": len(fresh),
        "used": int(used.sum()),
        "unknown_item": int((~used).sum()),
        "new_users": len(new),
    }
    return rows, counts


def evaluate_bundle(
    parts: BundleParts,
    split: HoldoutSplit,
    *,
    k: int = 10,
    updater_config: UpdaterConfig | None = None,
    ranker_config: RankerConfig | None = None,
) -> dict[str, float]:
    """Metrics at ``k`` of one bundle on the held-out users (module doc, step 4)."""
    users = split.users
    if not users:
        return {f"{name}@{k}": 0.0 for name in EVAL_METRICS} | {"users": 0.0}
    updater = EmbeddingUpdater(parts.space, updater_config)
    ranker = Ranker(parts.space, parts.scorers, ranker_config)
    ids = np.full((len(users), k), -1, dtype=np.int64)
    truth_rows, truth_cols = [], []
    for row, user in enumerate(users):
        state = UserState(user)
        now = 0.0
        for event in split.histories[user]:
            index = int(parts.item_ids.lookup([event.item_id])[0])
            if index >= 0:
                updater.apply(state, update_event(event, index))
            now = max(now, event.timestamp_ms / 1000.0)
        page = ranker.recommend(state, k, Filters(exclude_seen=True), RequestContext(now=now))
        ids[row, : len(page)] = [item.item for item in page]
        for item_id in split.truth[user]:
            index = int(parts.item_ids.lookup([item_id])[0])
            if index >= 0:
                truth_rows.append(row)
                truth_cols.append(index)
    truth = sp.csr_matrix(
        (np.ones(len(truth_rows), dtype=np.float32), (truth_rows, truth_cols)),
        shape=(len(users), parts.space.n_items),
    )
    truth.data[:] = 1.0  # an item held out twice counts once
    metrics = evaluate_ranking(ids, truth, k_values=(k,), metrics=EVAL_METRICS)
    return {name: float(value) for name, value in metrics.items()} | {"users": float(len(users))}


@dataclass(frozen=True)
class Decision:
    """Whether the challenger replaces the champion, and why."""

    promote: bool
    metric: str
    champion: float
    challenger: float
    margin: float
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def delta(self) -> float:
        return self.challenger - self.champion


def decide(
    champion: Mapping[str, float] | None,
    challenger: Mapping[str, float],
    *,
    metric: str = "ndcg@10",
    margin: float = 0.0,
) -> Decision:
    """Promote when ``challenger[metric] - champion[metric] > margin`` (always, without a champion)."""
    if metric not in challenger:
        raise ConfigError(f"metric {metric!r} is not among the evaluated ones: {sorted(challenger)}")
    new = float(challenger[metric])
    if champion is None:
        return Decision(
            True, metric, float("nan"), new, margin, "no champion yet: the challenger is the first"
        )
    old = float(champion[metric])
    if challenger.get("users", 1.0) == 0:
        return Decision(False, metric, old, new, margin, "no log user has enough events to evaluate on")
    if new - old > margin:
        return Decision(
            True, metric, old, new, margin, f"{metric} {new:.4f} beats {old:.4f} by more than {margin}"
        )
    return Decision(
        False, metric, old, new, margin, f"{metric} {new:.4f} does not beat {old:.4f} by more than {margin}"
    )
