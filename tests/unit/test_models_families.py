"""Behaviour particular to each family (the shared contract is in test_models_contract.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.models import (
    ALSRecommender,
    BPRRecommender,
    ContentRecommender,
    EASERecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    PureSVDRecommender,
    SupportsPartialFit,
    SwitchingHybrid,
    UserKNNRecommender,
    WeightedHybrid,
    load,
    windowed_interactions,
)
from recsys.models.hybrid import normalize_rows


def random_matrix(
    n_users: int = 60, n_items: int = 40, density: float = 0.15, seed: int = 0
) -> sp.csr_matrix:
    matrix = sp.random(n_users, n_items, density=density, random_state=seed, format="csr", dtype=np.float32)
    matrix.data[:] = 1.0
    return matrix


# popularity ---------------------------------------------------------------------------------------


def test_popularity_ignores_dislikes_and_weights_confidences() -> None:
    X = sp.csr_matrix([[3.0, -5.0, 1.0], [1.0, -1.0, 0.0]], dtype=np.float32)
    assert PopularityRecommender().fit(X).popularity_.tolist() == [2.0, 0.0, 1.0]
    assert PopularityRecommender(mode="weight").fit(X).popularity_.tolist() == [4.0, 0.0, 1.0]
    with pytest.raises(ConfigError, match="mode"):
        PopularityRecommender(mode="median").fit(X)


def test_windowed_interactions_keep_the_recent_window() -> None:
    days = np.array(["2024-01-01", "2024-01-09", "2024-01-10", "2024-01-11"], dtype="datetime64[ms]")
    X = windowed_interactions(
        np.array([0, 0, 1, 1]),
        np.array([0, 1, 1, 2]),
        np.ones(4),
        days,
        now=np.datetime64("2024-01-10"),
        window_days=7,
        shape=(2, 3),
    )
    assert X.toarray().tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    trending = PopularityRecommender().fit(X)
    assert trending.recommend(sp.csr_matrix((1, 3), dtype=np.float32), k=1)[0].tolist() == [[1]]
    with pytest.raises(ConfigError):
        windowed_interactions(
            np.array([0]), np.array([0]), np.ones(1), np.zeros(1), now=0, window_days=0, shape=(1, 1)
        )


# neighbourhood models -----------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["cosine", "tfidf", "bm25"])
def test_itemknn_keeps_at_most_k_neighbours_and_never_itself(weighting: str) -> None:
    model = ItemKNNRecommender(k=5, weighting=weighting).fit(random_matrix())
    sim = model.similarity_
    assert np.diff(sim.indptr).max() <= 5 and (sim.data > 0).all()
    assert not sim.diagonal().any()


def test_itemknn_cosine_matches_dense_reference() -> None:
    X = random_matrix()
    model = ItemKNNRecommender(k=39, shrinkage=2.0).fit(X)
    dense = X.T.toarray() @ X.toarray()
    norms = np.sqrt(np.diag(dense))
    reference = dense / (norms[:, None] * norms[None, :] + 2.0)
    np.fill_diagonal(reference, 0.0)
    np.testing.assert_allclose(model.similarity_.toarray(), reference, rtol=1e-5, atol=1e-6)


def test_itemknn_scores_use_the_candidates_neighbourhood() -> None:
    X = random_matrix()
    model = ItemKNNRecommender(k=3).fit(X)
    S = model.similarity_.toarray()
    assert ((S > 0).sum(axis=1) <= 3).all()
    rows = random_matrix(4, 40, seed=5)
    np.testing.assert_allclose(model.score(rows), rows.toarray() @ S.T, rtol=1e-5, atol=1e-6)


def test_itemknn_dislikes_push_neighbours_down() -> None:
    X = random_matrix()
    model = ItemKNNRecommender(k=10).fit(X)
    liked = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 40), dtype=np.float32)
    disliked = sp.csr_matrix(([-1.0], ([0], [0])), shape=(1, 40), dtype=np.float32)
    np.testing.assert_allclose(model.score(disliked), -model.score(liked))
    with pytest.raises(ConfigError, match="weighting"):
        ItemKNNRecommender(weighting="jaccard").fit(X)


def test_userknn_matches_dense_reference() -> None:
    X = random_matrix()
    rows = random_matrix(5, 40, seed=3)
    scores = UserKNNRecommender(k=4, shrinkage=1.0).fit(X).score(rows)
    q, t = rows.toarray(), X.toarray()
    sims = (q @ t.T) / (np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(t, axis=1)[None, :] + 1.0)
    weights = np.zeros_like(sims)
    for r in range(5):
        best = np.argsort(-sims[r], kind="stable")[:4]
        weights[r, best] = sims[r, best]
    np.testing.assert_allclose(scores, weights @ t, rtol=1e-5, atol=1e-6)


# EASE and PureSVD ---------------------------------------------------------------------------------


def test_ease_matches_the_closed_form() -> None:
    X = random_matrix()
    model = EASERecommender(l2=5.0).fit(X)
    P = np.linalg.inv(X.T.toarray().astype(np.float64) @ X.toarray() + 5.0 * np.eye(40))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    np.testing.assert_allclose(model.weights_, B, rtol=1e-4, atol=1e-6)
    assert model.weights_.dtype == np.float32
    with pytest.raises(ConfigError, match="l2"):
        EASERecommender(l2=0.0).fit(X)


def test_puresvd_fold_in_is_a_projection() -> None:
    X = random_matrix()
    model = PureSVDRecommender(factors=6, random_state=0).fit(X)
    V = model.item_embeddings
    np.testing.assert_allclose(V.T @ V, np.eye(6), atol=1e-5)
    np.testing.assert_allclose(model.fold_in(X[:3]), X[:3].toarray() @ V, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="factors"):
        PureSVDRecommender(factors=60).fit(X)


# implicit: ALS and BPR ----------------------------------------------------------------------------


def test_als_partial_fit_continues_exactly_and_reports_epochs(tmp_path: Path) -> None:
    X = random_matrix()
    params: dict[str, Any] = {"factors": 4, "iterations": 6, "device": "cpu", "random_state": 1}
    straight = ALSRecommender(**params).fit(X)
    seen: list[int] = []

    def on_epoch(epoch: int, model: Any) -> None:
        seen.append(epoch)
        assert model.recommend(X[:1], k=3)[0].shape == (1, 3)

    stepped = ALSRecommender(**{**params, "iterations": 2}).fit(X, on_epoch=on_epoch)
    stepped.partial_fit(X, epochs=1, on_epoch=on_epoch)
    stepped.save(tmp_path / "als")
    resumed = load(tmp_path / "als")
    assert isinstance(resumed, SupportsPartialFit)
    resumed.partial_fit(X, epochs=3)
    assert seen == [1, 2, 3] and resumed.epochs_done_ == straight.epochs_done_ == 6
    np.testing.assert_allclose(resumed.item_factors_, straight.item_factors_, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="partial_fit"):
        resumed.partial_fit(random_matrix(10, 40), epochs=1)


def test_als_fold_in_is_the_exact_least_squares_solve() -> None:
    X = random_matrix()
    model = ALSRecommender(factors=4, regularization=0.5, alpha=2.0, device="cpu", random_state=0).fit(X)
    Y = model.item_embeddings.astype(np.float64)
    row = sp.csr_matrix(([1.0, 3.0, -2.0], ([0, 0, 0], [1, 5, 7])), shape=(1, 40), dtype=np.float32)
    confidence = np.ones(40)
    confidence[[1, 5, 7]] = 2.0 * np.abs(row.data)
    preference = np.zeros(40)
    preference[[1, 5]] = 1.0
    A = Y.T @ (confidence[:, None] * Y) + 0.5 * np.eye(4)
    expected = np.linalg.solve(A, Y.T @ (confidence * preference))
    np.testing.assert_allclose(model.fold_in(row)[0], expected, rtol=1e-3, atol=1e-5)


def test_bpr_drops_dislikes_and_folds_in_by_averaging() -> None:
    X = random_matrix()
    X_with_dislikes = X.copy()
    X_with_dislikes.data[::5] = -1.0
    params: dict[str, Any] = {"factors": 4, "iterations": 5, "device": "cpu", "random_state": 0}
    a = BPRRecommender(**params).fit(X_with_dislikes)
    b = BPRRecommender(**params).fit(sp.csr_matrix(np.maximum(X_with_dislikes.toarray(), 0)))
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    row = sp.csr_matrix(([2.0, -1.0], ([0, 0], [3, 4])), shape=(1, 40), dtype=np.float32)
    expected = (2.0 * a.item_factors_[3, :-1] - a.item_factors_[4, :-1]) / 3.0
    np.testing.assert_allclose(a.fold_in(row)[0], np.append(expected, 1.0), rtol=1e-6)
    a.partial_fit(X_with_dislikes, epochs=2)
    assert a.epochs_done_ == 7


# content ------------------------------------------------------------------------------------------


def test_content_recommends_items_nobody_touched_and_needs_features() -> None:
    X = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 4), dtype=np.float32)
    features = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0.05], [0.1, 1]], dtype=np.float32))
    model = ContentRecommender().fit(X, item_features=features)
    history = sp.csr_matrix(([1.0, -1.0], ([0, 0], [0, 1])), shape=(1, 4), dtype=np.float32)
    assert model.recommend(history, k=2)[0].tolist() == [[2, 3]]
    assert model.score(history)[0, 2] > 0 > model.score(history)[0, 3]
    with pytest.raises(ConfigError, match="item_features"):
        ContentRecommender().fit(X)
    with pytest.raises(DataError, match="rows"):
        ContentRecommender().fit(X, item_features=features[:3])


# hybrids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["minmax", "zscore", "rank"])
def test_normalize_rows_is_monotone_and_handles_constant_rows(method: str) -> None:
    scores = np.array([[3.0, 1.0, 2.0], [5.0, 5.0, 5.0]], dtype=np.float32)
    out = normalize_rows(scores, method)
    assert np.argsort(out[0]).tolist() == [1, 2, 0]
    if method != "rank":
        assert (out[1] == 0).all()


def test_weighted_hybrid_with_zero_weight_is_its_other_member() -> None:
    X = random_matrix()
    hybrid = WeightedHybrid(
        members={"ease": {"l2": 5.0}, "pop": {"family": "popularity"}}, weights={"ease": 1.0, "pop": 0.0}
    ).fit(X)
    ease = EASERecommender(l2=5.0).fit(X)
    np.testing.assert_array_equal(hybrid.recommend(X[:5], k=5)[0], ease.recommend(X[:5], k=5)[0])
    with pytest.raises(ConfigError, match="weights"):
        WeightedHybrid(members={"ease": {}}, weights={"als": 1.0}).fit(X)
    with pytest.raises(ConfigError, match="unknown model family"):
        WeightedHybrid(members={"x": {"family": "slim"}}).fit(X)
    with pytest.raises(ConfigError, match="name"):
        WeightedHybrid(members={"../evil": {"family": "ease"}}).fit(X)


def test_switching_hybrid_routes_short_histories_to_the_fallback() -> None:
    X = random_matrix()
    model = SwitchingHybrid(primary={"family": "ease", "l2": 5.0}, min_history=3).fit(X)
    rows = sp.csr_matrix(
        ([1.0, 1.0, 1.0, 1.0, 1.0, -1.0], ([0, 1, 1, 1, 2, 2], [0, 1, 2, 3, 4, 5])),
        shape=(3, 40),
        dtype=np.float32,
    )
    assert model.uses_fallback(rows).tolist() == [True, False, True]
    scores = model.score(rows)
    np.testing.assert_array_equal(scores[1], EASERecommender(l2=5.0).fit(X).score(rows[1])[0])
    np.testing.assert_array_equal(scores[0], PopularityRecommender().fit(X).score(rows[0])[0])
