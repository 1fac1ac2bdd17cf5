"""What evaluation needs from a model, and the shared "recommend then score" step.

Evaluation asks for the smallest abilities it uses, so any :class:`recsys.models.base.Recommender`
qualifies without this package importing the model families.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from recsys.errors import DataError
from recsys.evaluation.metrics import evaluate_ranking


class RanksUsers(Protocol):
    """Anything with the batch ``recommend`` of the Recommender protocol."""

    def recommend(
        self,
        user_rows: sp.csr_matrix,
        k: int = 10,
        *,
        filter_seen: bool = True,
        allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


class FitsAndRanks(RanksUsers, Protocol):
    """A :class:`RanksUsers` that can also be fitted on an interactions matrix."""

    def fit(
        self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None
    ) -> FitsAndRanks: ...


def recommend_and_score(
    model: RanksUsers,
    history: sp.csr_matrix,
    truth: sp.csr_matrix,
    *,
    k: int,
    metrics: Sequence[str],
    batch_size: int = 4096,
) -> dict[str, float]:
    """Top-``k`` for the users with a truth item (history masked), averaged ``metric@k``."""
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if users.size == 0:
        raise DataError("no user has a truth item; there is nothing to evaluate")
    ids = np.empty((users.size, k), dtype=np.int64)
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        got, _ = model.recommend(history[batch], k, filter_seen=True)
        got = np.asarray(got)
        if got.shape != (batch.size, k):
            raise DataError(
                f"{type(model).__name__}.recommend returned ids of shape {got.shape}, "
                f"expected {(batch.size, k)} (pad short lists with -1)"
            )
        ids[start : start + batch.size] = got
    return evaluate_ranking(ids, truth[users], k_values=(k,), metrics=metrics)
