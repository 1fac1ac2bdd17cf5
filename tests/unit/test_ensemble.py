"""Blending and stacking on planted cases, the ensemble recommender, and the no-leakage guarantee."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.ensemble import Blender, EnsembleConfig, EnsembleRecommender, Stacker, build_ensemble
from recsys.ensemble.candidates import candidate_labels, ranking_metrics, top_k_candidates
from recsys.errors import ConfigError
from recsys.evaluation.protocol import prepare_recbole
from recsys.models import build


class LinearMember:
    """A fake fitted family: scores = history @ weights."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights

    def score(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows @ self.weights, dtype=np.float32)


def planted(n_users: int, seed: int, n_seen: int = 6) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """160 items with two independent 4-way attributes; each user likes the 10 items of one combination.

    Returns the users' history rows (``n_seen`` liked items), their truth rows (the other liked items)
    and each item's two attributes.
    """
    rng = np.random.default_rng(seed)
    items = np.arange(160)
    attributes = np.stack([items % 4, (items // 4) % 4], axis=1)
    history, truth = np.zeros((n_users, 160)), np.zeros((n_users, 160))
    for user in range(n_users):
        liked = items[(attributes[:, 0] == rng.integers(4)) & (attributes[:, 1] == rng.integers(4))]
        liked = rng.permutation(liked)
        history[user, liked[:n_seen]] = 1.0
        truth[user, liked[n_seen:]] = 1.0
    return sp.csr_matrix(history, dtype=np.float32), sp.csr_matrix(truth, dtype=np.float32), attributes


def same(attribute: np.ndarray) -> np.ndarray:
    return (attribute[:, None] == attribute[None, :]).astype(np.float32)


def jitter(seed: int) -> np.ndarray:
    """A fixed tiny per-item score, so ties inside an attribute group break the same way for all."""
    return np.random.default_rng(seed).uniform(0, 1e-3, (160, 160)).astype(np.float32)


def ensemble(members: dict[str, object], combiner: Blender | Stacker | None = None) -> EnsembleRecommender:
    return EnsembleRecommender(members=members, item_popularity=np.ones(160), combiner=combiner, top_n=40)


def test_blending_gives_the_weight_to_the_informative_family() -> None:
    history, truth, attributes = planted(150, seed=0)
    both = same(attributes[:, 0]) * same(attributes[:, 1])
    informative = LinearMember(both + jitter(1))
    noise = LinearMember(np.random.default_rng(2).normal(size=(160, 160)).astype(np.float32))
    batch = ensemble({"informative": informative, "noise": noise}).candidates(history)

    blender = Blender().fit(batch, truth)

    assert blender.weights_["informative"] == pytest.approx(1.0)
    assert blender.weights_["noise"] == 0.0


def test_stacking_beats_the_best_single_member_on_a_planted_case() -> None:
    members = {
        "first": LinearMember(same(planted(1, 0)[2][:, 0]) + jitter(3)),
        "second": LinearMember(same(planted(1, 0)[2][:, 1]) + jitter(4)),
    }
    train_history, train_truth, _ = planted(200, seed=5)
    stacker = Stacker().fit(ensemble(members).candidates(train_history), train_truth)

    history, truth, _ = planted(200, seed=6)  # other users: out of sample
    batch = ensemble(members).candidates(history)
    stacked = ranking_metrics(top_k_candidates(batch, stacker.decision(batch), 10)[0], truth)["ndcg@10"]
    singles = {
        name: ranking_metrics(top_k_candidates(batch, batch.column(f"{name}:z"), 10)[0], truth)["ndcg@10"]
        for name in members
    }
    assert stacked > max(singles.values()) + 0.3
    assert stacked > 0.9


def test_pairwise_stacking_learns_the_same_order() -> None:
    members = {
        "first": LinearMember(same(planted(1, 0)[2][:, 0]) + jitter(3)),
        "second": LinearMember(same(planted(1, 0)[2][:, 1]) + jitter(4)),
    }
    history, truth, _ = planted(200, seed=5)
    batch = ensemble(members).candidates(history)
    stacker = Stacker(objective="pairwise", pairs_per_positive=5).fit(batch, truth)
    ids, _ = top_k_candidates(batch, stacker.decision(batch), 10)
    assert ranking_metrics(ids, truth)["ndcg@10"] > 0.9
    assert Stacker.from_state(stacker.to_state()).decision(batch) == pytest.approx(stacker.decision(batch))


def test_candidates_exclude_seen_and_denied_items_and_label_truth() -> None:
    history, truth, attributes = planted(20, seed=7)
    model = ensemble({"both": LinearMember(same(attributes[:, 0]) * same(attributes[:, 1]))})
    batch = model.candidates(history, deny=np.array([0, 1, 2]))
    seen = history.tocoo()
    seen_pairs = set(zip(seen.row.tolist(), seen.col.tolist(), strict=True))
    assert not seen_pairs & set(zip(batch.rows.tolist(), batch.items.tolist(), strict=True))
    assert not np.isin(batch.items, [0, 1, 2]).any()
    labels = candidate_labels(batch, truth)
    assert labels.sum() == truth.nnz - np.isin(truth.tocoo().col, [0, 1, 2]).sum()


def ratings(seed: int = 0, n_users: int = 120, n_items: int = 60) -> pd.DataFrame:
    """Explicit ratings with planted taste groups: each user rates mostly items of its group highly."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        group = user % 4
        for item in rng.choice(n_items, size=20, replace=False):
            liked = item % 4 == group
            rows.append((user, int(item), 5.0 if liked or rng.random() < 0.15 else 1.0))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])


TUNED = {"popularity": {}, "itemknn": {"k": 20}, "ease": {"l2": 10.0}}


def test_the_meta_learner_never_sees_test_items() -> None:
    split = prepare_recbole(ratings(), min_count=1)
    config = EnsembleConfig(meta_folds=3, signals=None)
    first = build_ensemble(split, TUNED, config=config)
    scrambled_test = sp.csr_matrix(np.random.default_rng(9).random(split.test.shape) < 0.05, dtype=np.float32)
    second = build_ensemble(dataclasses.replace(split, test=scrambled_test), TUNED, config=config)

    for method in ("blending", "stacking"):
        a, b = first.report["methods"][method], second.report["methods"][method]
        assert a["valid"] == b["valid"]
        assert a.get("weights") == b.get("weights")
        assert a.get("coefficients") == b.get("coefficients")
    assert first.report["test"] != second.report["test"]  # the test part really was different


def test_build_ensemble_reports_every_family_and_method(tmp_path: Path) -> None:
    split = prepare_recbole(ratings(), min_count=1)
    result = build_ensemble(split, TUNED, config=EnsembleConfig(meta_folds=3, signals=None, max_members=2))
    report = result.report
    assert set(report["families"]) == set(TUNED)
    assert len(report["members"]) == 2 and set(result.model.members) == set(report["members"])
    assert set(report["methods"]) == {"blending", "stacking"}
    assert report["method"] in report["methods"]
    assert report["test"] == report["methods"][report["method"]]["test"]
    for family in TUNED:
        assert 0.0 <= report["families"][family]["test"]["ndcg@10"] <= 1.0
    # the champion recommends exactly what the report scored, also after a save/load round trip
    model = result.model
    model.save(tmp_path / "ensemble")
    loaded = EnsembleRecommender.load(tmp_path / "ensemble")
    users = np.flatnonzero(np.diff(split.test.indptr))
    ids, scores = model.recommend(split.train_valid[users], 10)
    again, again_scores = loaded.recommend(split.train_valid[users], 10)
    assert np.array_equal(ids, again) and np.allclose(scores, again_scores)
    assert ranking_metrics(ids, split.test[users])["ndcg@10"] == pytest.approx(report["test"]["ndcg@10"])


def test_ensemble_without_combiner_refuses_to_recommend() -> None:
    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    model = EnsembleRecommender(
        members={"popularity": build("popularity").fit(X)}, item_popularity=np.ones(4)
    )
    with pytest.raises(ConfigError, match="no combiner"):
        model.recommend(X, 2)


def test_top_k_breaks_ties_by_lower_item_and_pads_short_rows() -> None:
    from recsys.ensemble import CandidateBatch

    rows, items = np.array([1, 0, 0, 0, 1]), np.array([7, 5, 3, 9, 2])  # deliberately unsorted
    batch = CandidateBatch(rows, items, np.zeros((5, 1), dtype=np.float32), ("x",), 3)
    ids, scores = top_k_candidates(batch, np.array([1.0, 2.0, 2.0, 3.0, 1.0]), 3)
    assert ids.tolist() == [[9, 3, 5], [2, 7, -1], [-1, -1, -1]]
    assert scores[1, 2] == -np.inf and scores[0].tolist() == [3.0, 2.0, 2.0]
