"""Seeded splits: RecBole's rounding, determinism, order invariance, temporal and per-user folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import ConfigError, DataError, SchemaError
from recsys.evaluation.splits import (
    kfold_users,
    leave_last_k,
    ratio_split,
    split_counts,
    temporal_split,
    to_csr,
)


def _recbole_calcu_split_counts(tot: int, ratios: list[float]) -> list[int]:
    """RecBole's ``Dataset._calcu_split_ids`` (v1.x), returning the counts instead of cut points."""
    total = sum(ratios)
    ratios = [r / total for r in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


@pytest.mark.parametrize("ratios", [[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.8, 0.2], [8, 1, 1], [0.6, 0.3, 0.1]])
def test_split_counts_match_recbole(ratios: list[float]) -> None:
    sizes = np.arange(0, 400)
    ours = split_counts(sizes, ratios)
    reference = [_recbole_calcu_split_counts(int(n), list(ratios)) for n in sizes]
    np.testing.assert_array_equal(ours, reference)


def test_split_counts_examples() -> None:
    got = split_counts(np.array([1, 2, 5, 9, 10, 19, 20, 25]), (0.8, 0.1, 0.1)).tolist()
    assert got == [[1, 0, 0], [1, 0, 1], [3, 1, 1], [7, 1, 1], [8, 1, 1], [17, 1, 1], [16, 2, 2], [21, 2, 2]]
    with pytest.raises(ConfigError):
        split_counts(np.array([3]), (1.0,))


def _interactions(seed: int = 0, n_users: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        n = int(rng.integers(1, 40))
        for item in rng.choice(200, size=n, replace=False):
            rows.append((user, int(item), int(rng.integers(0, 50)), float(rng.random())))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "value"])


def _pairs(df: pd.DataFrame, idx: np.ndarray) -> set[tuple[int, int]]:
    part = df.iloc[idx]
    return set(zip(part.user_id.tolist(), part.item_id.tolist(), strict=True))


def test_ratio_split_partitions_with_recbole_counts_per_user() -> None:
    df = _interactions()
    parts = ratio_split(df, (0.8, 0.1, 0.1), seed=0)
    together = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(together), np.arange(len(df)))
    sizes = df.groupby("user_id").size()
    expected = split_counts(sizes.to_numpy(), (0.8, 0.1, 0.1))
    got = np.stack([np.bincount(df.user_id.to_numpy()[p], minlength=sizes.size) for p in parts], axis=1)
    np.testing.assert_array_equal(got, expected)


def test_ratio_split_is_seeded_and_independent_of_row_order() -> None:
    df = _interactions()
    first = ratio_split(df, seed=7)
    for a, b in zip(first, ratio_split(df, seed=7), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _pairs(df, first[2]) != _pairs(df, ratio_split(df, seed=8)[2])
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for a, b in zip(first, ratio_split(shuffled, seed=7), strict=True):
        assert _pairs(df, a) == _pairs(shuffled, b)


def test_temporal_split_keeps_instants_together() -> None:
    df = _interactions()
    train, test = temporal_split(df, (0.8, 0.2))
    assert len(train) + len(test) == len(df)
    assert df.timestamp.iloc[train].max() < df.timestamp.iloc[test].min()
    assert abs(len(test) - 0.2 * len(df)) < df.timestamp.value_counts().max() + 1
    three = temporal_split(df, (0.8, 0.1, 0.1))
    assert df.timestamp.iloc[three[1]].max() < df.timestamp.iloc[three[2]].min()


def test_leave_last_k_takes_latest_with_stable_ties() -> None:
    df = pd.DataFrame({"user_id": [0, 0, 0, 0, 1, 2, 2], "timestamp": [5, 9, 9, 1, 3, 2, 1]})
    history, heldout = leave_last_k(df, k=2)
    assert heldout.tolist() == [1, 2, 5]  # user 0's two time-9 rows; user 2 keeps one in history
    assert history.tolist() == [0, 3, 4, 6]
    _, heldout_all = leave_last_k(df, k=2, min_history=0)
    assert heldout_all.tolist() == [1, 2, 4, 5, 6]


def test_kfold_users_partitions_users_and_interactions() -> None:
    df = _interactions(n_users=23)
    folds = kfold_users(df, 4, seed=1, holdout_ratio=0.2)
    all_users = np.concatenate([f.users for f in folds])
    np.testing.assert_array_equal(np.sort(all_users), np.arange(23))
    users = df.user_id.to_numpy()
    for fold in folds:
        fold_rows = np.flatnonzero(np.isin(users, fold.users))
        np.testing.assert_array_equal(np.sort(np.concatenate([fold.history, fold.heldout])), fold_rows)
        np.testing.assert_array_equal(fold.train, np.setdiff1d(np.arange(len(df)), fold_rows))
        assert not np.isin(users[fold.train], fold.users).any()
    again = kfold_users(df, 4, seed=1, holdout_ratio=0.2)
    assert all(np.array_equal(a.heldout, b.heldout) for a, b in zip(folds, again, strict=True))
    with pytest.raises(ConfigError):
        kfold_users(df, 1, seed=0)


def test_to_csr_sums_duplicates_and_validates() -> None:
    df = pd.DataFrame({"user_id": [0, 0, 1], "item_id": [1, 1, 2], "value": [2.0, 3.0, 1.0]})
    matrix = to_csr(df, 2, 3, "value")
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix.toarray(), [[0, 5, 0], [0, 0, 1]])
    np.testing.assert_array_equal(to_csr(df, 2, 3).toarray(), [[0, 2, 0], [0, 0, 1]])
    with pytest.raises(DataError, match="n_items"):
        to_csr(df, 2, 2)
    with pytest.raises(SchemaError, match="dense integer"):
        to_csr(df.assign(user_id=["a", "a", "b"]), 2, 3)
    with pytest.raises(SchemaError, match="missing"):
        to_csr(df, 2, 3, "weight")
