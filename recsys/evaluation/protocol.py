"""The ``recbole`` offline protocol of ``docs/benchmarks.md`` section 1, exactly.

1. Ratings ``>= 3`` become implicit positives (value dropped, weight 1); duplicate
   (user, item) pairs are removed, the first kept.
2. 5-core filter: users and items with fewer than 5 positives are dropped together, repeatedly,
   until nothing changes (ml-latest-small: 608 users, 3,012 items, 72,402 positives).
3. Users and items are re-indexed densely in the order of their original ids.
4. Per user, a seeded random 80/10/10 split (:func:`~recsys.evaluation.splits.ratio_split`, with
   RecBole's rounding: see :func:`~recsys.evaluation.splits.split_counts`).
5. Validation ranks with the train items masked against the validation items; test refits on
   train+validation and ranks with those masked against the test items. Full ranking over all
   items; metrics @k averaged over users with at least one truth item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.model_selection import ParameterGrid

from recsys.errors import ConfigError, DataError, SchemaError
from recsys.evaluation._models import FitsAndRanks, RanksUsers, recommend_and_score
from recsys.evaluation.splits import ratio_split, to_csr

__all__ = [
    "PROTOCOL_METRICS",
    "Positives",
    "RecboleSplit",
    "SelectionResult",
    "evaluate_model",
    "prepare_recbole",
    "recbole_positives",
    "select_and_test",
]

PROTOCOL_METRICS: tuple[str, ...] = ("ndcg", "recall", "precision", "hit_rate", "map", "mrr")


@dataclass(frozen=True)
class Positives:
    """Implicit positives after thresholding and k-core filtering.

    Attributes
    ----------
    frame : DataFrame
        ``user_id``, ``item_id`` (dense ``int64``) and the timestamp column when the input had one,
        sorted by (user, item).
    user_ids, item_ids : ndarray
        Original id of each dense index.
    """

    frame: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray


def recbole_positives(
    ratings: pd.DataFrame,
    *,
    threshold: float = 3.0,
    min_count: int = 5,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str = "rating",
    time_col: str = "timestamp",
) -> Positives:
    """Steps 1-3 of the protocol: positives, deduplicated, k-core filtered, densely re-indexed.

    Examples
    --------
    >>> import pandas as pd
    >>> ratings = pd.DataFrame({"user_id": [7, 7, 9], "item_id": [1, 2, 1], "rating": [4, 2, 5]})
    >>> recbole_positives(ratings, min_count=1).frame.to_dict("list")
    {'user_id': [0, 1], 'item_id': [0, 0]}
    """
    missing = [c for c in (user_col, item_col, rating_col) if c not in ratings.columns]
    if missing:
        raise SchemaError(
            f"ratings lack column(s) {missing}; present: {list(ratings.columns)}. "
            "Pass user_col/item_col/rating_col to name them"
        )
    keep = [user_col, item_col] + ([time_col] if time_col in ratings.columns else [])
    frame = ratings.loc[ratings[rating_col] >= threshold, keep]
    frame = frame.drop_duplicates([user_col, item_col], keep="first")
    while True:
        user_counts = frame[user_col].map(frame[user_col].value_counts())
        item_counts = frame[item_col].map(frame[item_col].value_counts())
        kept = frame[(user_counts >= min_count) & (item_counts >= min_count)]
        if len(kept) == len(frame):
            break
        frame = kept
    if frame.empty:
        raise DataError(f"no positives left after threshold {threshold} and {min_count}-core filtering")
    user_index, user_ids = pd.factorize(frame[user_col], sort=True)
    item_index, item_ids = pd.factorize(frame[item_col], sort=True)
    out = pd.DataFrame({"user_id": user_index.astype(np.int64), "item_id": item_index.astype(np.int64)})
    if time_col in frame.columns:
        out["timestamp"] = frame[time_col].to_numpy()
    out = out.sort_values(["user_id", "item_id"], kind="stable").reset_index(drop=True)
    return Positives(frame=out, user_ids=np.asarray(user_ids), item_ids=np.asarray(item_ids))


@dataclass(frozen=True)
class RecboleSplit:
    """Train / validation / test matrices of the protocol (float32 CSR, all ``n_users x n_items``).

    Attributes
    ----------
    train, valid, test : csr_matrix
        Binary positives of each part.
    train_valid : csr_matrix
        ``train + valid``: the fitting data and the masked history for the test stage.
    user_ids, item_ids : ndarray
        Original id of each dense row / column index.
    seed : int
        The split seed.
    """

    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    train_valid: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    seed: int

    @property
    def n_users(self) -> int:
        """Number of users (rows)."""
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items (columns)."""
        return int(self.train.shape[1])


def prepare_recbole(
    ratings: pd.DataFrame,
    *,
    seed: int = 0,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    threshold: float = 3.0,
    min_count: int = 5,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str = "rating",
) -> RecboleSplit:
    """Build the protocol's split from raw explicit ratings.

    Parameters
    ----------
    ratings : DataFrame
        One row per rating, with user, item and rating columns (any id type).
    seed : int
        Seed of the per-user random split.
    ratios, threshold, min_count
        The protocol's 80/10/10, ``>= 3`` and 5-core; change them only for other experiments.

    Examples
    --------
    >>> import pandas as pd
    >>> ratings = pd.DataFrame({"user_id": [1] * 10, "item_id": range(10), "rating": [4.0] * 10})
    >>> split = prepare_recbole(ratings, min_count=1)
    >>> split.train.nnz, split.valid.nnz, split.test.nnz
    (8, 1, 1)
    """
    positives = recbole_positives(
        ratings,
        threshold=threshold,
        min_count=min_count,
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
    )
    frame = positives.frame
    n_users, n_items = positives.user_ids.size, positives.item_ids.size
    parts = ratio_split(frame, ratios, seed=seed)
    if len(parts) != 3:
        raise ConfigError(f"the protocol needs three ratios (train, valid, test), got {ratios}")
    train, valid, test = (to_csr(frame.iloc[idx], n_users, n_items) for idx in parts)
    return RecboleSplit(
        train=train,
        valid=valid,
        test=test,
        train_valid=(train + valid).tocsr(),
        user_ids=positives.user_ids,
        item_ids=positives.item_ids,
        seed=seed,
    )


def evaluate_model(
    model: RanksUsers,
    split: RecboleSplit,
    stage: Literal["valid", "test"] = "valid",
    k: int = 10,
    *,
    metrics: Sequence[str] = PROTOCOL_METRICS,
    batch_size: int = 4096,
) -> dict[str, float]:
    """Score a fitted model on the validation or test stage of the protocol.

    ``valid``: history = train, truth = valid (fit the model on ``split.train``).
    ``test``: history = train + valid, truth = test (fit it on ``split.train_valid``).

    Returns
    -------
    dict
        ``{"ndcg@10": ..., "recall@10": ..., ...}`` averaged over users with a truth item.

    Examples
    --------
    >>> # metrics = evaluate_model(model.fit(split.train), split, "valid")
    """
    if stage == "valid":
        history, truth = split.train, split.valid
    elif stage == "test":
        history, truth = split.train_valid, split.test
    else:
        raise ConfigError(f"stage must be 'valid' or 'test', got {stage!r}")
    return recommend_and_score(model, history, truth, k=k, metrics=metrics, batch_size=batch_size)


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of :func:`select_and_test`.

    Attributes
    ----------
    best_params : dict
        The parameters with the best validation score (first in grid order on ties).
    valid_scores : list of (dict, dict)
        ``(params, validation metrics)`` for every grid point, in grid order.
    test_metrics : dict
        Test metrics of the best parameters refitted on train + validation.
    model : object
        That refitted model.
    """

    best_params: dict[str, Any]
    valid_scores: list[tuple[dict[str, Any], dict[str, float]]]
    test_metrics: dict[str, float]
    model: FitsAndRanks = field(repr=False)


def select_and_test(
    family_factory: Callable[..., FitsAndRanks],
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    split: RecboleSplit,
    *,
    k: int = 10,
    selection_metric: str = "ndcg",
    metrics: Sequence[str] = PROTOCOL_METRICS,
) -> SelectionResult:
    """Fit every grid point on train, pick the best on validation, refit on train+valid, test it.

    Parameters
    ----------
    family_factory : callable
        ``family_factory(**params)`` returns an unfitted model (e.g. the model class).
    param_grid : dict of lists or list of dicts
        As :class:`sklearn.model_selection.ParameterGrid` takes it.
    selection_metric : str
        Metric name (one of ``metrics``) compared at ``k`` on validation; higher is better.

    Examples
    --------
    >>> # result = select_and_test(EASE, {"l2": [100.0, 250.0, 500.0]}, split)
    >>> # result.best_params, result.test_metrics["ndcg@10"]
    """
    if selection_metric not in metrics:
        raise ConfigError(f"selection_metric {selection_metric!r} must be one of metrics {list(metrics)}")
    grid = list(ParameterGrid(param_grid))
    if not grid:
        raise ConfigError("param_grid is empty")
    key = f"{selection_metric}@{k}"
    valid_scores = []
    for params in grid:
        model = family_factory(**params).fit(split.train)
        valid_scores.append((params, evaluate_model(model, split, "valid", k, metrics=metrics)))
    best_params = max(valid_scores, key=lambda pair: pair[1][key])[0]
    best = family_factory(**best_params).fit(split.train_valid)
    return SelectionResult(
        best_params=best_params,
        valid_scores=valid_scores,
        test_metrics=evaluate_model(best, split, "test", k, metrics=metrics),
        model=best,
    )
