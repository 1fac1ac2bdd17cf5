"""Ranking and beyond-accuracy metrics: hand-computed cases and scikit-learn where definitions agree."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import mean_absolute_error, mean_squared_error, ndcg_score, roc_auc_score

from recsys.errors import ConfigError, DataError
from recsys.evaluation.metrics import (
    auc_per_user,
    average_precision_at_k,
    catalogue_coverage,
    evaluate_ranking,
    evaluate_ranking_per_user,
    f1_at_k,
    hit_rate_at_k,
    intra_list_diversity,
    mae,
    ndcg_at_k,
    novelty,
    popularity_share,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    relevance,
    rmse,
)


def _truth(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items))
    for user, items in enumerate(rows):
        dense[user, items] = 1.0
    return sp.csr_matrix(dense)


# User 0: relevant {1, 2}; list [3, 1, 0, -1] hits at rank 2 only.
# User 1: relevant {0, 2, 4}; list [0, 3, 2, 4] hits at ranks 1, 3 (and 4, beyond k=3).
# User 2: nothing relevant: undefined everywhere.
IDS = np.array([[3, 1, 0, -1], [0, 3, 2, 4], [1, 2, 3, 4]])
TRUTH = _truth([[1, 2], [0, 2, 4], []], n_items=5)
D = [1 / math.log2(r + 1) for r in range(1, 5)]  # discounts of ranks 1..4


def test_hand_computed_values_at_3() -> None:
    expected = {
        precision_at_k: [1 / 3, 2 / 3],
        recall_at_k: [1 / 2, 2 / 3],
        f1_at_k: [2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2), 2 / 3],
        average_precision_at_k: [(1 / 2) / 2, (1 + 2 / 3) / 3],
        ndcg_at_k: [D[1] / (D[0] + D[1]), (D[0] + D[2]) / (D[0] + D[1] + D[2])],
        reciprocal_rank_at_k: [1 / 2, 1.0],
        hit_rate_at_k: [1.0, 1.0],
    }
    for metric, values in expected.items():
        got = metric(IDS, TRUTH, 3)
        np.testing.assert_allclose(got[:2], values, err_msg=metric.__name__)
        assert np.isnan(got[2]), metric.__name__


def test_padding_is_a_miss_and_idcg_uses_min_of_truth_and_k() -> None:
    ids = np.array([[0, -1, -1]])
    truth = _truth([[0]], n_items=3)
    assert precision_at_k(ids, truth, 3)[0] == pytest.approx(1 / 3)
    assert ndcg_at_k(ids, truth, 3)[0] == pytest.approx(1.0)
    assert average_precision_at_k(ids, truth, 3)[0] == pytest.approx(1.0)
    # More relevant items than k: recall is capped by k, NDCG/MAP are not.
    many = _truth([[0, 1, 2, 3]], n_items=5)
    assert recall_at_k(np.array([[0, 1]]), many, 2)[0] == pytest.approx(0.5)
    assert ndcg_at_k(np.array([[0, 1]]), many, 2)[0] == pytest.approx(1.0)
    assert average_precision_at_k(np.array([[0, 1]]), many, 2)[0] == pytest.approx(1.0)


def test_relevance_returns_graded_values_and_ignores_padding() -> None:
    truth = sp.csr_matrix(np.array([[0.0, 2.0, 5.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(relevance(np.array([[2, 1, -1], [1, 0, 2]]), truth), [[5, 2, 0], [0, 1, 0]])
    assert relevance(np.array([[0, 1]]), sp.csr_matrix((1, 3))).sum() == 0


def test_ndcg_matches_sklearn_binary_and_graded() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, k = 40, 30, 10
    scores = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(float)  # no ties
    binary = (rng.random((n_users, n_items)) < 0.2).astype(float)
    binary[:, 0] = 1.0  # every user has a relevant item
    graded = binary * rng.integers(1, 6, size=binary.shape)
    ids = np.argsort(-scores, axis=1)[:, :k]
    for truth, is_graded in ((binary, False), (graded, True)):
        ours = ndcg_at_k(ids, sp.csr_matrix(truth), k, graded=is_graded)
        theirs = [ndcg_score(truth[u : u + 1], scores[u : u + 1], k=k) for u in range(n_users)]
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_auc_matches_sklearn_per_user_with_train_excluded() -> None:
    rng = np.random.default_rng(1)
    n_users, n_items = 25, 40
    scores = rng.normal(size=(n_users, n_items))
    scores[:, :5] = 0.5  # some ties
    train = sp.csr_matrix(rng.random((n_users, n_items)) < 0.2)
    truth_dense = (rng.random((n_users, n_items)) < 0.15) & ~train.toarray()
    truth_dense[:, 7] = ~train.toarray()[:, 7]
    truth_dense[3] = False  # no positive: undefined
    ours = auc_per_user(scores, sp.csr_matrix(truth_dense), exclude=train)
    for u in range(n_users):
        keep = ~train.toarray()[u]
        y = truth_dense[u, keep]
        if y.all() or not y.any():
            assert np.isnan(ours[u])
        else:
            assert ours[u] == pytest.approx(roc_auc_score(y, scores[u, keep]), rel=1e-12)
    assert np.isnan(ours[3])


def test_auc_rejects_nan_scores_and_shape_mismatch() -> None:
    truth = _truth([[0]], 2)
    with pytest.raises(DataError):
        auc_per_user(np.array([[np.nan, 1.0]]), truth)
    with pytest.raises(ConfigError):
        auc_per_user(np.zeros((1, 3)), truth)


def test_coverage_diversity_novelty() -> None:
    assert catalogue_coverage(np.array([[0, 1], [1, -1]]), 5) == pytest.approx(0.4)
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    got = intra_list_diversity(np.array([[0, 1, 2], [0, 3, -1], [2, -1, -1]]), vectors)
    c = 1 / math.sqrt(2)
    np.testing.assert_allclose(got[:2], [(1 + (1 - c) + (1 - c)) / 3, 1.0])
    assert np.isnan(got[2])
    share = popularity_share(sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])))
    np.testing.assert_allclose(share, [1.0, 0.5, 0.5])  # unseen item 2 counts as one user
    np.testing.assert_allclose(novelty(np.array([[0, 1], [2, -1]]), share), [0.5, 1.0])
    with pytest.raises(ConfigError):
        novelty(np.array([[0]]), np.array([0.0]))


def test_rmse_and_mae_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    y, p = rng.uniform(1, 5, 50), rng.uniform(1, 5, 50)
    assert rmse(y, p) == pytest.approx(math.sqrt(mean_squared_error(y, p)))
    assert mae(y, p) == pytest.approx(mean_absolute_error(y, p))
    with pytest.raises(ConfigError):
        rmse(np.ones(3), np.ones(2))


def test_evaluate_ranking_averages_over_users_with_truth() -> None:
    out = evaluate_ranking(IDS, TRUTH, k_values=(3,), metrics=("precision", "recall", "ndcg", "coverage"))
    assert list(out) == ["precision@3", "recall@3", "ndcg@3", "coverage@3"]
    assert out["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert out["recall@3"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert out["coverage@3"] == pytest.approx(4 / 5)  # items 0..3 in the lists of users 0 and 1
    per_user = evaluate_ranking_per_user(IDS, TRUTH, k_values=(1, 3), metrics=("mrr",))
    np.testing.assert_allclose(per_user["mrr@1"], [0.0, 1.0, np.nan])


def test_evaluate_ranking_beyond_accuracy_needs_inputs() -> None:
    vectors = np.eye(5)
    share = np.full(5, 0.5)
    out = evaluate_ranking(
        IDS, TRUTH, (2,), ("diversity", "novelty"), item_vectors=vectors, item_popularity=share
    )
    assert out == {"diversity@2": pytest.approx(1.0), "novelty@2": pytest.approx(1.0)}
    with pytest.raises(ConfigError, match="item_vectors"):
        evaluate_ranking(IDS, TRUTH, (2,), ("diversity",))
    with pytest.raises(ConfigError, match="item_popularity"):
        evaluate_ranking(IDS, TRUTH, (2,), ("novelty",))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": ("ndcg", "nDCG")}, "unknown metric"),
        ({"metrics": "ndcg"}, "sequence of names"),
        ({"k_values": (5,)}, "k=5"),
        ({"k_values": (0,)}, "k=0"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        evaluate_ranking(IDS, TRUTH, **kwargs)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ConfigError, match="coverage"):
        evaluate_ranking_per_user(IDS, TRUTH, (2,), ("coverage",))
    with pytest.raises(ConfigError, match="rows"):
        evaluate_ranking(IDS[:2], TRUTH, (2,))
    with pytest.raises(ConfigError, match="padding"):
        evaluate_ranking(np.array([[5, 0], [0, 1], [0, 1]]), TRUTH, (2,))
    with pytest.raises(DataError, match="nothing to evaluate"):
        evaluate_ranking(IDS, sp.csr_matrix(TRUTH.shape), (2,))


def test_vectorised_on_many_users() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items, k = 20_000, 2_000, 20
    ids = np.argsort(rng.random((n_users, 50)), axis=1)[:, :k] * 40
    rows = np.repeat(np.arange(n_users), 20)
    truth = sp.csr_matrix(
        (np.ones(rows.size), (rows, rng.integers(0, n_items, rows.size))), (n_users, n_items)
    )
    start = time.perf_counter()
    out = evaluate_ranking(ids, truth, k_values=(5, 10, 20))
    assert time.perf_counter() - start < 2.0  # about 0.05 s: no Python loop per user
    assert len(out) == 21
    assert all(0.0 <= v <= 1.0 for v in out.values())
