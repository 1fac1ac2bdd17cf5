"""The cold-start curve protocol of ``docs/benchmarks.md`` section 2, as reusable pieces.

1. Positives as in the recbole protocol (ratings ``>= 3``, deduplicated, 5-core, dense indices),
   keeping each positive's timestamp and rating value.
2. Hold out users with ``numpy.random.default_rng(seed).random(n_users) < fraction``: those users
   are never seen by any model or tuning step (this selection reproduces the reference numbers).
3. Replay each held-out user with at least ``min_positives`` positives in timestamp order (stable
   sort, ties in item-index order) through an :class:`Agent`; after ``n`` revealed events ask for
   the top ``k`` excluding the revealed items and score NDCG@k (binary gains) against the next
   ``horizon`` positives.

Tuning follows the same protocol inside the training users: :func:`validation_folds` splits them
into folds of validation users, each fold's models fitted on the other training users, so test
users are never used for a choice. :class:`PopularityReference` and :func:`fold_in_reference`
are the reference agents (popularity; ALS least squares / EASE ``history x B`` on the revealed
items, popularity at n = 0).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.protocol import recbole_positives
from recsys.ranking.retrieval import top_indices

CHECKPOINTS: tuple[int, ...] = (0, 1, 3, 5, 10, 20)


@dataclass(frozen=True)
class History:
    """One user's positives in replay order."""

    user: int
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray


@dataclass(frozen=True)
class ColdStartData:
    """Positives of the protocol (``user_id``, ``item_id``, ``timestamp``, ``rating``; dense ids)."""

    frame: pd.DataFrame
    n_users: int
    n_items: int
    item_ids: np.ndarray

    def interactions(self, users: np.ndarray) -> sp.csr_matrix:
        """Binary users x items matrix of the positives of ``users`` (all rows kept)."""
        part = self.frame[np.isin(self.frame["user_id"].to_numpy(), users)]
        values = np.ones(len(part), dtype=np.float32)
        shape = (self.n_users, self.n_items)
        return sp.csr_matrix((values, (part["user_id"].to_numpy(), part["item_id"].to_numpy())), shape=shape)

    def events(self, users: np.ndarray) -> pd.DataFrame:
        """Positives of ``users`` sorted by (user, timestamp), stable."""
        part = self.frame[np.isin(self.frame["user_id"].to_numpy(), users)]
        return part.sort_values(["user_id", "timestamp"], kind="stable")

    def histories(self, users: np.ndarray, min_positives: int = 25) -> list[History]:
        """Replay order of each user in ``users`` with at least ``min_positives`` positives."""
        out = []
        for _, group in self.events(users).groupby("user_id", sort=True):
            if len(group) >= min_positives:
                out.append(
                    History(
                        user=int(group["user_id"].iloc[0]),
                        items=group["item_id"].to_numpy(np.int64),
                        timestamps=group["timestamp"].to_numpy(np.float64),
                        ratings=group["rating"].to_numpy(np.float64),
                    )
                )
        return out


def prepare(ratings: pd.DataFrame, *, threshold: float = 3.0, min_count: int = 5) -> ColdStartData:
    """Protocol positives from raw ratings (``user_id``, ``item_id``, ``rating``, ``timestamp``).

    Examples
    --------
    >>> import pandas as pd
    >>> ratings = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 6, 5], "rating": [4.0, 2.0, 5.0],
    ...                         "timestamp": [10, 11, 12]})
    >>> prepare(ratings, min_count=1).frame["rating"].tolist()
    [4.0, 5.0]
    """
    positives = recbole_positives(ratings, threshold=threshold, min_count=min_count)
    frame = positives.frame.copy()
    keyed = ratings.drop_duplicates(["user_id", "item_id"]).set_index(["user_id", "item_id"])["rating"]
    original = pd.MultiIndex.from_arrays(
        [positives.user_ids[frame["user_id"].to_numpy()], positives.item_ids[frame["item_id"].to_numpy()]]
    )
    frame["rating"] = keyed.reindex(original).to_numpy(np.float64)
    return ColdStartData(frame, positives.user_ids.size, positives.item_ids.size, positives.item_ids)


def holdout_mask(n_users: int, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """``True`` for the held-out (test) users."""
    return np.random.default_rng(seed).random(n_users) < fraction


def validation_folds(
    train_users: np.ndarray, n_folds: int = 5, seed: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(fit_users, validation_users)`` folds over the training users only."""
    fold = np.random.default_rng(seed).integers(0, n_folds, train_users.size)
    for index in range(n_folds):
        yield train_users[fold != index], train_users[fold == index]


def ndcg_at_k(ranked: Sequence[int] | np.ndarray, truth: Sequence[int] | np.ndarray, k: int = 10) -> float:
    """NDCG@k with binary gains and IDCG over ``min(|truth|, k)``.

    Examples
    --------
    >>> round(ndcg_at_k([3, 1], [1, 2]), 4)
    0.3869
    """
    ranked = np.asarray(ranked)[:k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.isin(ranked, np.asarray(truth)).astype(np.float64)
    ideal = discounts[: min(len(truth), k)].sum()
    return float((gains * discounts[: gains.size]).sum() / ideal) if ideal > 0 else 0.0


class Agent(Protocol):
    """Something that learns a user online and recommends (a reference or the real engine)."""

    def reset(self, user: int) -> None:
        """Start a new user with no history."""

    def observe(self, item: int, timestamp: float, rating: float, position: int) -> None:
        """Reveal the user's next positive."""

    def recommend(self, k: int) -> np.ndarray:
        """Top-``k`` item indices, excluding revealed items."""
        ...


class PopularityReference:
    """Reference agent: the same popularity ranking for everyone (revealed items excluded).

    Subclasses override :meth:`personal_scores` (used once at least one item is revealed).
    """

    def __init__(self, popularity: np.ndarray) -> None:
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.revealed: list[int] = []

    def reset(self, user: int) -> None:
        self.revealed = []

    def observe(self, item: int, timestamp: float, rating: float, position: int) -> None:
        self.revealed.append(item)

    def personal_scores(self) -> np.ndarray:
        return self.popularity.copy()

    def recommend(self, k: int) -> np.ndarray:
        scores = self.personal_scores() if self.revealed else self.popularity.copy()
        scores[self.revealed] = -np.inf
        return top_indices(scores, k)


class _FoldInReference(PopularityReference):
    def __init__(self, popularity: np.ndarray, model: Any) -> None:
        super().__init__(popularity)
        self.model = model

    def personal_scores(self) -> np.ndarray:
        n = len(self.revealed)
        values = (np.ones(n, np.float32), (np.zeros(n, np.int64), np.asarray(self.revealed)))
        row = sp.csr_matrix(values, shape=(1, self.popularity.size))
        return np.asarray(self.model.score(row), dtype=np.float64).ravel()


def fold_in_reference(popularity: np.ndarray, model: Any) -> PopularityReference:
    """Reference agent scoring the binary revealed history with a fitted model's own fold-in.

    ALS: exact least squares on the revealed items; EASE: history x B. Popularity at n = 0.
    """
    return _FoldInReference(popularity, model)


def curve(
    agent: Agent,
    histories: Sequence[History],
    *,
    checkpoints: Sequence[int] = CHECKPOINTS,
    k: int = 10,
    horizon: int = 10,
) -> dict[int, np.ndarray]:
    """Per-user NDCG@k at each checkpoint (``{n: array over histories}``)."""
    scores: dict[int, list[float]] = {n: [] for n in checkpoints}
    last = max(checkpoints)
    for history in histories:
        agent.reset(history.user)
        for n in range(last + 1):
            if n in scores:
                page = agent.recommend(k)
                scores[n].append(ndcg_at_k(page, history.items[n : n + horizon], k))
            if n < last and n < history.items.size:
                agent.observe(
                    int(history.items[n]), float(history.timestamps[n]), float(history.ratings[n]), n
                )
    return {n: np.asarray(values) for n, values in scores.items()}


def mean_curve(results: Mapping[int, np.ndarray]) -> dict[int, float]:
    """Mean NDCG per checkpoint."""
    return {n: float(values.mean()) for n, values in results.items()}
