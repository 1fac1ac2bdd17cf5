"""Interaction signals: the fitting matrix keeps the protocol's positives and adds only seen non-positives."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.storage import Location, write_frame
from recsys.ensemble import SignalConfig, confidence_matrix, load_signals
from recsys.ensemble.signals import item_columns
from recsys.errors import DataError
from recsys.evaluation.protocol import prepare_recbole


def dataset(root: Path) -> pd.DataFrame:
    """A preprocessed-like interactions table: 3 users x 6 items, one low rating per user."""
    rows = []
    for user in range(3):
        for item in range(6):
            rating = 1.0 if item == user else 3.0 + (item % 3)
            rows.append((f"u{user}", f"{item + 10}", item + 100, rating, 86_400 * (user + item)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "item_idx", "value", "seconds"])
    frame["event_type"] = "rating"
    frame["weight"] = ((frame["value"] - 3.0) / 2.0).astype("float32")
    frame["timestamp"] = pd.to_datetime(frame.pop("seconds"), unit="s", utc=True)
    write_frame(frame, Location.parse(str(root / "interactions" / "part-00000.parquet")))
    return frame.rename(columns={"value": "rating"})


def test_seen_low_ratings_are_added_and_positives_weighted(tmp_path: Path) -> None:
    frame = dataset(tmp_path)
    split = prepare_recbole(frame, min_count=1)
    signals = load_signals(str(tmp_path), split)
    assert signals.keys.size == 18 and (~signals.positive).sum() == 3
    matrix = confidence_matrix(split.train, signals, SignalConfig(positive_gain=1.0, seen_weight=0.25))
    seen = signals.seen_pairs()
    assert sp.csr_matrix(matrix.multiply(seen)).sum() == pytest.approx(0.25 * 3)
    positives = matrix.multiply(split.train).tocsr()
    assert positives.nnz == split.train.nnz  # every train positive kept
    assert positives.data.min() >= 1.0 and positives.data.max() <= 2.0  # 1 + gain * log2(1 + w), w <= 1
    assert matrix.multiply(split.test).nnz == 0 and matrix.multiply(split.valid).nnz == 0


def test_without_signals_the_matrix_is_the_binary_part(tmp_path: Path) -> None:
    split = prepare_recbole(dataset(tmp_path), min_count=1)
    assert confidence_matrix(split.train, None, SignalConfig()) is split.train
    assert confidence_matrix(split.train, load_signals(str(tmp_path), split), None) is split.train


def test_recency_decay_halves_per_half_life(tmp_path: Path) -> None:
    split = prepare_recbole(dataset(tmp_path), min_count=1)
    signals = load_signals(str(tmp_path), split)
    config = SignalConfig(positive_gain=0.0, seen_weight=0.0, half_life_days=1.0)
    matrix = confidence_matrix(split.train_valid, signals, config).toarray()
    row = matrix[0][matrix[0] > 0]
    assert row.max() == pytest.approx(1.0) and set(np.round(np.log2(row), 6)) <= set(-np.arange(6.0))


def test_item_columns_map_split_columns_to_dataset_ids(tmp_path: Path) -> None:
    split = prepare_recbole(dataset(tmp_path), min_count=1)
    ids, idx = item_columns(str(tmp_path), split)
    assert ids == [str(i) for i in split.item_ids] and idx.tolist() == [int(i) + 90 for i in split.item_ids]


def test_signals_of_another_dataset_are_refused(tmp_path: Path) -> None:
    split = prepare_recbole(dataset(tmp_path), min_count=1)
    signals = load_signals(str(tmp_path), split)
    keep = np.arange(signals.keys.size) != np.flatnonzero(signals.positive)[0]  # forget one positive pair
    unknown = dataclasses.replace(
        signals,
        keys=signals.keys[keep],
        weight=signals.weight[keep],
        days=signals.days[keep],
        positive=signals.positive[keep],
    )
    with pytest.raises(DataError, match="no signal"):
        confidence_matrix(split.train_valid + split.test, unknown, SignalConfig())
