"""One family's evaluation on a prepared split: the task :mod:`recsys.evaluation.runner` fans out.

Private. Everything here is a plain function of picklable inputs so an executor can run it in
another process (a Ray task) and send back a small dict; fitted models never leave the task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from recsys.evaluation.crossval import cross_validate
from recsys.evaluation.metrics import evaluate_ranking, popularity_share
from recsys.evaluation.protocol import PROTOCOL_METRICS, RecboleSplit, select_and_test

LIST_METRICS: tuple[str, ...] = ("coverage", "novelty")
"""Beyond-accuracy metrics recorded beside :data:`PROTOCOL_METRICS` at every k."""
HEAD_SHARE = 0.1
"""The "head" of the catalogue for popularity bias: the 10% most popular items."""


def output_name(metric_key: str) -> str:
    """``hit_rate@10`` -> ``hit@10`` (the name ``metrics.json`` uses); other keys unchanged."""
    return metric_key.replace("hit_rate@", "hit@")


@dataclass(frozen=True)
class SharedData:
    """What every family task reads: the split and the item features aligned to its columns.

    Attributes
    ----------
    split : RecboleSplit
        The protocol's train / validation / test matrices.
    item_features : csr_matrix or None
        Row ``j`` describes split column ``j``; ``None`` when the data has no feature matrix.
    """

    split: RecboleSplit
    item_features: sp.csr_matrix | None


class _WithFeatures:
    """A model whose ``fit(X)`` passes the item features and records how long fitting took.

    :func:`~recsys.evaluation.protocol.select_and_test` and
    :func:`~recsys.evaluation.crossval.cross_validate` call ``fit(X)`` only; content-based
    families need the feature matrix as well, and the runner reports fit time.
    """

    def __init__(self, model: Any, item_features: sp.csr_matrix | None) -> None:
        self.model = model
        self.item_features = item_features
        self.fit_seconds = float("nan")

    def fit(self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None) -> _WithFeatures:
        started = time.perf_counter()
        self.model.fit(interactions, item_features if item_features is not None else self.item_features)
        self.fit_seconds = time.perf_counter() - started
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
        return self.model.recommend(user_rows, k, filter_seen=filter_seen, allow=allow, deny=deny)


def popularity_profile(ids: np.ndarray, counts: np.ndarray) -> dict[str, float | None]:
    """Popularity bias of a set of item ids (``-1`` padding ignored).

    Parameters
    ----------
    ids : ndarray of int
        Recommended (or consumed) item ids, any shape.
    counts : ndarray, shape (n_items,)
        Training popularity of each item (number of users).

    Returns
    -------
    dict
        ``head_share``: share of the ids among the :data:`HEAD_SHARE` most popular items (ties
        with the last of them included, never-seen items excluded); ``mean_percentile``: mean
        popularity percentile of the ids in [0, 1] (1 = most popular, ties averaged).
        Both are ``None`` when there is no id.

    Examples
    --------
    >>> profile = popularity_profile(np.array([[0, 1]]), np.array([5.0, 1.0] + [0.0] * 8))
    >>> profile["head_share"], round(profile["mean_percentile"], 3)
    (0.5, 0.944)
    """
    counts = np.asarray(counts, dtype=np.float64)
    percentile = (rankdata(counts, method="average") - 1.0) / max(counts.size - 1, 1)
    n_head = max(1, math.ceil(HEAD_SHARE * counts.size))
    threshold = np.sort(counts)[::-1][n_head - 1] if counts.size else 0.0
    head = (counts >= threshold) & (counts > 0)  # items tied with the last head item are head too
    flat = np.asarray(ids).ravel()
    flat = flat[flat >= 0]
    if flat.size == 0:
        return {"head_share": None, "mean_percentile": None}
    return {"head_share": float(head[flat].mean()), "mean_percentile": float(percentile[flat].mean())}


def _test_lists(model: _WithFeatures, split: RecboleSplit, k: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Top-``k`` lists of the users with a test item (train+valid masked) and their test rows."""
    users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    ids, _ = model.recommend(split.train_valid[users], k, filter_seen=True)
    return np.asarray(ids), split.test[users]


def evaluate_family(
    family: str,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    shared: SharedData,
    *,
    factory: Callable[..., Any],
    k_values: Sequence[int],
    cv_folds: int | None,
    seed: int,
) -> dict[str, Any]:
    """Select on validation, test at every k, and optionally cross-validate one family.

    Parameters
    ----------
    family : str
        Registry name (only used in the result).
    grid : dict of lists or list of dicts
        Hyperparameter grid, as :func:`~recsys.evaluation.protocol.select_and_test` takes it.
    shared : SharedData
        The split and aligned item features.
    factory : callable
        ``factory(**params)`` returns an unfitted model (``recsys.models.build`` bound to a family).
    k_values : sequence of int
        Cut-offs of the test metrics; selection is always on NDCG@10.
    cv_folds : int or None
        Folds of a user-level cross-validation of the chosen parameters (``None``: none).
    seed : int
        Seed of the cross-validation folds.

    Returns
    -------
    dict
        ``metric@k`` for every metric and k (``hit@k`` for the hit rate), ``params``,
        ``fit_seconds`` (the refit on train+valid), ``seconds`` (the whole family),
        ``valid_ndcg@10``, ``grid_size``, ``popularity`` (bias of the top-10 lists) and, with
        ``cv_folds``, ``cv``.
    """
    started = time.perf_counter()
    split = shared.split

    def build(**params: Any) -> _WithFeatures:
        return _WithFeatures(factory(**params), shared.item_features)

    selection = select_and_test(build, grid, split, k=10, metrics=("ndcg",))
    model = selection.model
    assert isinstance(model, _WithFeatures)
    ids, truth = _test_lists(model, split, max(k_values))
    item_popularity = popularity_share(split.train_valid)
    metrics = evaluate_ranking(
        ids, truth, k_values, (*PROTOCOL_METRICS, *LIST_METRICS), item_popularity=item_popularity
    )
    result: dict[str, Any] = {output_name(key): value for key, value in metrics.items()}
    result.update(
        params=selection.best_params,
        fit_seconds=model.fit_seconds,
        grid_size=len(selection.valid_scores),
        popularity=popularity_profile(ids[:, :10], _user_counts(split.train_valid)),
    )
    result["valid_ndcg@10"] = max(scores["ndcg@10"] for _, scores in selection.valid_scores)
    if cv_folds:
        result["cv"] = _cross_validate(selection.best_params, shared, build, cv_folds, seed)
    result["seconds"] = time.perf_counter() - started
    return result


def _user_counts(matrix: sp.csr_matrix) -> np.ndarray:
    return np.asarray((matrix > 0).sum(axis=0)).ravel()


def _cross_validate(
    params: Mapping[str, Any],
    shared: SharedData,
    build: Callable[..., _WithFeatures],
    folds: int,
    seed: int,
) -> dict[str, Any]:
    split = shared.split
    every = (split.train_valid + split.test).tocoo()
    frame = pd.DataFrame({"user_id": every.row.astype(np.int64), "item_id": every.col.astype(np.int64)})
    outcome = cross_validate(
        lambda: build(**params), frame, split.n_users, split.n_items, n_folds=folds, seed=seed, k=10
    )
    return {
        "folds": folds,
        "mean": {output_name(key): value for key, value in outcome.mean.items()},
        "std": {output_name(key): value for key, value in outcome.std.items()},
    }
