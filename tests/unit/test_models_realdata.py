"""Sanity check on real data: EASE must beat popularity by a wide margin on ml-latest-small.

Self-contained on purpose (no dependency on recsys.data or recsys.evaluation): ratings >= 3 are
positives, items with fewer than 5 positives are dropped (keeps the EASE inversion ~3k items, ~1 s),
each user's positives are split 80/20 at random (seeded), NDCG@10 with binary gains over all items
with the train items masked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.models import EASERecommender, PopularityRecommender
from tests.conftest import ML_LATEST_SMALL

RATINGS = ML_LATEST_SMALL / "ratings.csv"


def _split(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    frame = pd.read_csv(RATINGS, usecols=["userId", "movieId", "rating"])
    frame = frame[frame.rating >= 3].drop_duplicates(["userId", "movieId"])
    counts = frame.movieId.value_counts()
    frame = frame[frame.movieId.isin(counts[counts >= 5].index)]
    users = frame.userId.astype("category").cat.codes.to_numpy()
    items = frame.movieId.astype("category").cat.codes.to_numpy()
    order = np.lexsort((np.random.default_rng(seed).random(users.size), users))
    per_user = np.bincount(users)
    position = np.arange(users.size) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    in_train = np.empty(users.size, dtype=bool)
    in_train[order] = position < np.ceil(0.8 * per_user[users[order]])
    shape = (int(users.max()) + 1, int(items.max()) + 1)

    def matrix(mask: np.ndarray) -> sp.csr_matrix:
        ones = np.ones(int(mask.sum()), dtype=np.float32)
        return sp.csr_matrix((ones, (users[mask], items[mask])), shape=shape)

    return matrix(in_train), matrix(~in_train)


def _ndcg_at_10(ids: np.ndarray, test: sp.csr_matrix) -> float:
    discounts = 1.0 / np.log2(np.arange(2, 12))
    values = []
    for user in range(test.shape[0]):
        relevant = test.indices[test.indptr[user] : test.indptr[user + 1]]
        if relevant.size:
            gains = np.isin(ids[user], relevant)
            values.append((gains * discounts).sum() / discounts[: min(relevant.size, 10)].sum())
    return float(np.mean(values))


def test_ease_beats_popularity_on_movielens() -> None:
    train, test = _split()
    popularity = _ndcg_at_10(PopularityRecommender().fit(train).recommend(train, k=10)[0], test)
    ease = _ndcg_at_10(EASERecommender(l2=250.0).fit(train).recommend(train, k=10)[0], test)
    assert 0.05 < popularity < 0.3
    assert ease > 1.5 * popularity and ease > popularity + 0.1, (ease, popularity)
