"""The recbole protocol on ml-latest-small, with a local popularity model (no recsys.models import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError, SchemaError
from recsys.evaluation.protocol import (
    RecboleSplit,
    evaluate_model,
    prepare_recbole,
    recbole_positives,
    select_and_test,
)

REPO_RATINGS = Path(__file__).resolve().parents[2] / "data" / "ml-latest-small" / "ratings.csv"


class Popularity:
    """Ranks items by how many users have them in the fitted matrix; ``noise`` blurs the counts."""

    def __init__(self, *, noise: float = 0.0, random_state: int = 0) -> None:
        self.noise = noise
        self.random_state = random_state

    def fit(self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None) -> Popularity:
        self.fitted_nnz_ = interactions.nnz
        counts = np.asarray((interactions > 0).sum(axis=0), dtype=np.float64).ravel()
        rng = np.random.default_rng(self.random_state)
        self.scores_ = counts + self.noise * rng.normal(size=counts.size) * counts.std()
        return self

    def recommend(
        self,
        user_rows: sp.csr_matrix,
        k: int = 10,
        *,
        filter_seen: bool = True,
        allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.tile(self.scores_, (user_rows.shape[0], 1))
        if filter_seen:
            scores[user_rows.nonzero()] = -np.inf
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores, ids, axis=1)
        return np.where(np.isfinite(top), ids, -1), top


def _ratings_path() -> Path:
    return REPO_RATINGS


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    raw = pd.read_csv(_ratings_path())
    return raw.rename(columns={"userId": "user_id", "movieId": "item_id"})


@pytest.fixture(scope="module")
def split(ratings: pd.DataFrame) -> RecboleSplit:
    return prepare_recbole(ratings, seed=0)


def test_positives_and_5core_match_benchmarks_md(ratings: pd.DataFrame, split: RecboleSplit) -> None:
    positives = recbole_positives(ratings)
    assert (positives.user_ids.size, positives.item_ids.size, len(positives.frame)) == (608, 3012, 72402)
    assert (split.n_users, split.n_items) == (608, 3012)
    assert split.train.nnz + split.valid.nnz + split.test.nnz == 72402
    assert "timestamp" in positives.frame.columns
    item_counts = np.bincount(positives.frame.item_id, minlength=3012)
    assert item_counts.min() >= 5 and np.bincount(positives.frame.user_id).min() >= 5


def test_split_is_disjoint_and_every_user_has_valid_and_test(split: RecboleSplit) -> None:
    train, valid, test = (m.astype(bool) for m in (split.train, split.valid, split.test))
    assert train.multiply(valid).nnz == train.multiply(test).nnz == valid.multiply(test).nnz == 0
    assert (split.train_valid != (split.train + split.valid)).nnz == 0
    assert np.diff(split.valid.indptr).min() >= 1 and np.diff(split.test.indptr).min() >= 1
    # RecBole rounding: floor(0.1 n) for valid and test, bumped to 1 for users with fewer than 10.
    sizes = np.diff(train.indptr) + np.diff(valid.indptr) + np.diff(test.indptr)
    np.testing.assert_array_equal(np.diff(split.test.indptr), np.maximum(sizes // 10, 1))


def test_popularity_lands_on_the_reference(split: RecboleSplit) -> None:
    model = Popularity().fit(split.train_valid)
    test = evaluate_model(model, split, "test", k=10)
    # benchmarks.md, seed 0: NDCG@10 0.118, Recall@10 0.092 (seed-to-seed spread here is ~0.005).
    assert test["ndcg@10"] == pytest.approx(0.118, abs=0.02)
    assert test["recall@10"] == pytest.approx(0.092, abs=0.02)
    assert test["precision@10"] <= test["hit_rate@10"]
    valid = evaluate_model(Popularity().fit(split.train), split, "valid")
    assert 0.05 < valid["ndcg@10"] < 0.2


def test_evaluate_model_masks_the_history(split: RecboleSplit) -> None:
    class ChecksMasking(Popularity):
        def recommend(self, user_rows, k=10, *, filter_seen=True, allow=None, deny=None):
            assert filter_seen
            return super().recommend(user_rows, k, filter_seen=filter_seen)

    valid = evaluate_model(ChecksMasking().fit(split.train), split, "valid", k=5)
    assert set(valid) == {f"{m}@5" for m in ("ndcg", "recall", "precision", "hit_rate", "map", "mrr")}
    with pytest.raises(ConfigError, match="stage"):
        evaluate_model(Popularity().fit(split.train), split, "train")  # type: ignore[arg-type]


def test_select_and_test_picks_on_valid_and_refits_on_train_valid(split: RecboleSplit) -> None:
    result = select_and_test(Popularity, {"noise": [3.0, 0.0]}, split, metrics=("ndcg", "recall"))
    assert result.best_params == {"noise": 0.0}
    assert [p for p, _ in result.valid_scores] == [{"noise": 3.0}, {"noise": 0.0}]
    assert result.valid_scores[1][1]["ndcg@10"] > result.valid_scores[0][1]["ndcg@10"]
    assert isinstance(result.model, Popularity)
    assert result.model.fitted_nnz_ == split.train_valid.nnz
    assert result.test_metrics == evaluate_model(result.model, split, "test", metrics=("ndcg", "recall"))
    with pytest.raises(ConfigError, match="selection_metric"):
        select_and_test(Popularity, {"noise": [0.0]}, split, selection_metric="auc")


def test_contract_violations_and_bad_input_raise(split: RecboleSplit) -> None:
    class Short(Popularity):
        def recommend(self, user_rows, k=10, *, filter_seen=True, allow=None, deny=None):
            ids, scores = super().recommend(user_rows, k, filter_seen=filter_seen)
            return ids[:, :-1], scores[:, :-1]

    with pytest.raises(DataError, match="shape"):
        evaluate_model(Short().fit(split.train), split, "valid")
    with pytest.raises(SchemaError, match="rating"):
        prepare_recbole(pd.DataFrame({"user_id": [1], "item_id": [1]}))
    with pytest.raises(DataError, match="no positives"):
        prepare_recbole(pd.DataFrame({"user_id": [1], "item_id": [1], "rating": [5.0]}))


def test_small_frame_end_to_end() -> None:
    ratings = pd.DataFrame(
        {
            "user_id": np.repeat(["a", "b", "c"], 10),
            "item_id": np.tile(np.arange(100, 110), 3),
            "rating": np.where(np.arange(30) % 7 == 0, 1.0, 4.0),
        }
    )
    split = prepare_recbole(ratings, min_count=1)
    assert split.user_ids.tolist() == ["a", "b", "c"]
    assert split.item_ids.tolist() == list(range(100, 110))
    assert split.train.nnz + split.valid.nnz + split.test.nnz == 30 - 5
