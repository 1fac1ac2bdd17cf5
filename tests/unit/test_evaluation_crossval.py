"""K-fold cross-validation over users."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.evaluation.crossval import cross_validate
from tests.unit.test_evaluation_protocol import Popularity


def _block_interactions() -> pd.DataFrame:
    """Two taste groups: users 0..39 like items 0..19, users 40..79 like items 20..39; item 0 is a hit."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(80):
        base = 0 if user < 40 else 20
        items = rng.choice(np.arange(base, base + 20), size=10, replace=False)
        rows += [(user, int(item)) for item in items] + [(user, 0)] * (0 not in items)
    return pd.DataFrame(rows, columns=["user_id", "item_id"]).drop_duplicates()


class RecordsFit(Popularity):
    seen_users: ClassVar[list[np.ndarray]] = []

    def fit(self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None) -> RecordsFit:
        RecordsFit.seen_users.append(np.flatnonzero(np.diff(interactions.indptr)))
        super().fit(interactions)
        return self


def test_cross_validate_reports_mean_and_std_per_metric() -> None:
    df = _block_interactions()
    result = cross_validate(Popularity, df, 80, 40, n_folds=4, k=5, metrics=("ndcg", "recall"), seed=3)
    assert len(result.per_fold) == 4
    assert set(result.mean) == set(result.std) == {"ndcg@5", "recall@5"}
    values = np.array([fold["ndcg@5"] for fold in result.per_fold])
    assert result.mean["ndcg@5"] == pytest.approx(values.mean())
    assert result.std["ndcg@5"] == pytest.approx(values.std())
    assert 0 < result.mean["recall@5"] <= 1
    again = cross_validate(Popularity, df, 80, 40, n_folds=4, k=5, metrics=("ndcg", "recall"), seed=3)
    assert again.per_fold == result.per_fold


def test_strong_generalisation_keeps_fold_users_out_of_fit() -> None:
    df = _block_interactions()
    RecordsFit.seen_users = []
    cross_validate(RecordsFit, df, 80, 40, n_folds=4, k=5, seed=1)
    assert all(users.size == 60 for users in RecordsFit.seen_users)
    RecordsFit.seen_users = []
    cross_validate(RecordsFit, df, 80, 40, n_folds=4, k=5, seed=1, fit_on_history=True)
    assert all(users.size == 80 for users in RecordsFit.seen_users)


def test_cross_validate_rejects_bad_arguments() -> None:
    df = _block_interactions()
    with pytest.raises(ConfigError, match="n_folds"):
        cross_validate(Popularity, df, 80, 40, n_folds=1)
    with pytest.raises(ConfigError, match="unknown metric"):
        cross_validate(Popularity, df, 80, 40, metrics=("ndcg", "accuracy"))
