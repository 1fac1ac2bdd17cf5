"""Biased MF on explicit ratings: rating accuracy on MovieLens, exact fold-in, ``predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.evaluation.metrics import mae, rmse
from recsys.models import BiasedMFRecommender, build


def rating_matrix(n_users: int = 50, n_items: int = 30, seed: int = 0) -> sp.csr_matrix:
    """Ratings 1-5 from a rank-2 taste model, about 40% observed."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(n_users, 2)) @ rng.normal(size=(2, n_items))
    dense = np.clip(np.round(3 + taste), 1, 5) * (rng.random((n_users, n_items)) < 0.4)
    return sp.csr_matrix(dense.astype(np.float32))


def _bias_baseline(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n: tuple[int, int]) -> tuple:
    """Damped user + item biases (Koren's baseline predictor), two alternating passes."""
    mu, b_u = ratings.mean(), np.zeros(n[0])
    for _ in range(2):
        b_i = np.bincount(items, ratings - mu - b_u[users], n[1]) / (np.bincount(items, minlength=n[1]) + 10)
        b_u = np.bincount(users, ratings - mu - b_i[items], n[0]) / (np.bincount(users, minlength=n[0]) + 15)
    return mu, b_u, b_i


@pytest.mark.slow
def test_movielens_rmse_beats_the_baselines(ml_small: Path) -> None:
    file = ml_small / "ratings.csv"
    if not file.exists():
        pytest.skip(f"{file} not present")
    frame = pd.read_csv(file)
    users = frame.userId.astype("category").cat.codes.to_numpy()
    items = frame.movieId.astype("category").cat.codes.to_numpy()
    ratings = frame.rating.to_numpy(np.float64)
    test = np.random.default_rng(0).random(ratings.size) < 0.1
    train, shape = ~test, (int(users.max()) + 1, int(items.max()) + 1)
    R = sp.csr_matrix((ratings[train], (users[train], items[train])), shape=shape, dtype=np.float32)

    model = BiasedMFRecommender(random_state=0).fit(R)
    got = rmse(ratings[test], model.predict(users[test], items[test]))
    folded = rmse(ratings[test], np.clip(model.score(R)[users[test], items[test]], 0.5, 5.0))
    mu, b_u, b_i = _bias_baseline(users[train], items[train], ratings[train], shape)
    global_mean = rmse(ratings[test], np.full(test.sum(), mu))
    biases = rmse(ratings[test], np.clip(mu + b_u[users[test]] + b_i[items[test]], 0.5, 5.0))
    assert got < 0.90 and folded < 0.90, (got, folded)
    assert biases < global_mean - 0.1, (biases, global_mean)
    assert got < biases - 0.01, (got, biases)
    assert mae(ratings[test], model.predict(users[test], items[test])) < 0.70


def test_fold_in_is_the_ridge_solve_of_the_training_objective() -> None:
    R = rating_matrix()
    model = BiasedMFRecommender(factors=3, epochs=30, fold_in_regularization=0.3, random_state=0).fit(R)
    row = sp.csr_matrix(([5.0, 1.0, 4.0], ([0, 0, 0], [2, 7, 11])), shape=(1, 30), dtype=np.float32)
    X = np.hstack([np.ones((3, 1)), model.item_factors_[[2, 7, 11]].astype(np.float64)])
    target = np.array([5.0, 1.0, 4.0]) - model.global_mean_ - model.item_bias_[[2, 7, 11]]
    w = np.linalg.solve(X.T @ X + 0.3 * 3 * np.eye(4), X.T @ target)
    np.testing.assert_allclose(model.fold_in(row)[0], np.append(w[1:], 1.0), rtol=1e-4, atol=1e-5)
    expected = model.global_mean_ + w[0] + model.item_bias_ + model.item_factors_ @ w[1:]
    np.testing.assert_allclose(model.score(row)[0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        model.predict(row, np.array([[0, 29]]))[0], np.clip(expected[[0, 29]], 1, 5), rtol=1e-4
    )
    empty = model.score(sp.csr_matrix((1, 30), dtype=np.float32))[0]
    np.testing.assert_allclose(empty, model.global_mean_ + model.item_bias_, rtol=1e-6)


def test_predict_uses_trained_users_or_rows_and_clips_to_the_rating_range() -> None:
    R = rating_matrix()
    model = build("biased_mf", factors=4, epochs=20, random_state=0).fit(R)
    assert model.rating_range_.tolist() == [1.0, 5.0]
    pairs = model.predict(np.array([0, 1, 2]), np.array([3, 4, 5]))
    expected = (
        model.global_mean_
        + model.user_bias_[[0, 1, 2]]
        + model.item_bias_[[3, 4, 5]]
        + (model.user_factors_[[0, 1, 2]] * model.item_factors_[[3, 4, 5]]).sum(axis=1)
    )
    np.testing.assert_allclose(pairs, np.clip(expected, 1, 5), rtol=1e-5)
    grid = model.predict(R[:2], np.array([[0, 1, 2], [3, 4, 5]]))
    assert grid.shape == (2, 3) and grid.dtype == np.float32 and ((grid >= 1) & (grid <= 5)).all()
    with pytest.raises(ConfigError, match="user indices"):
        model.predict(np.array([50]), np.array([0]))
    with pytest.raises(DataError, match="item_ids"):
        model.predict(np.array([0, 1]), np.array([0]))


def test_explicit_zeros_are_unobserved_and_bad_settings_raise() -> None:
    R = rating_matrix()
    with_zeros = R.copy()
    with_zeros.data[::4] = 0.0
    dropped = with_zeros.copy()
    dropped.eliminate_zeros()
    params = {"factors": 2, "epochs": 3, "random_state": 0}
    a, b = BiasedMFRecommender(**params).fit(with_zeros), BiasedMFRecommender(**params).fit(dropped)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    with pytest.raises(ConfigError, match="regularization"):
        BiasedMFRecommender(regularization=0.0).fit(R)
    with pytest.raises(ConfigError, match="batch_size"):
        BiasedMFRecommender(batch_size=0).fit(R)
    with pytest.raises(DataError, match="at least one rating"):
        BiasedMFRecommender().fit(sp.csr_matrix((3, 4), dtype=np.float32))
