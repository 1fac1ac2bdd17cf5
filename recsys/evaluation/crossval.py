"""K-fold cross-validation over users (strong generalisation by default).

Users are partitioned into folds (:func:`~recsys.evaluation.splits.kfold_users`). For each fold a
fresh model is fitted on the other users' interactions; the fold's users are then new users whose
history rows go to ``recommend`` (history items masked) and whose held-out items are the truth.
With ``fit_on_history=True`` the fold users' histories are also in the fitting data (weak
generalisation), for models that cannot rank users they were not fitted on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.evaluation._models import FitsAndRanks, recommend_and_score
from recsys.evaluation.protocol import PROTOCOL_METRICS
from recsys.evaluation.splits import kfold_users, to_csr

__all__ = ["CrossValResult", "cross_validate"]


@dataclass(frozen=True)
class CrossValResult:
    """Per-fold metrics and their mean and standard deviation (``ddof=0``, as scikit-learn).

    Attributes
    ----------
    per_fold : list of dict
        ``metric@k -> value`` for each fold, in fold order.
    mean, std : dict
        Across folds.
    """

    per_fold: list[dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]


def cross_validate(
    model_factory: Callable[[], FitsAndRanks],
    interactions: pd.DataFrame,
    n_users: int,
    n_items: int,
    *,
    n_folds: int = 5,
    holdout_ratio: float = 0.2,
    seed: int = 0,
    k: int = 10,
    metrics: Sequence[str] = PROTOCOL_METRICS,
    value_col: str | None = None,
    fit_on_history: bool = False,
) -> CrossValResult:
    """K-fold cross-validation over users of a model family.

    Parameters
    ----------
    model_factory : callable
        Returns a fresh unfitted model each call (e.g. ``lambda: EASE(l2=250.0)``).
    interactions : DataFrame
        ``user_id``, ``item_id`` dense integer indices, plus ``value_col`` if given.
    n_users, n_items : int
        Matrix shape; every fold's matrices are ``n_users x n_items``.
    n_folds, holdout_ratio, seed
        See :func:`~recsys.evaluation.splits.kfold_users`.
    k, metrics
        Cut-off and metric names, as for :func:`~recsys.evaluation.metrics.evaluate_ranking`.
    value_col : str, optional
        Column of confidences to fit on; the truth is always binary.
    fit_on_history : bool
        Also fit on the fold users' histories (weak generalisation).

    Examples
    --------
    >>> # result = cross_validate(lambda: EASE(l2=250.0), positives.frame, n_users, n_items)
    >>> # result.mean["ndcg@10"], result.std["ndcg@10"]
    """
    per_fold = []
    for fold in kfold_users(interactions, n_folds, seed=seed, holdout_ratio=holdout_ratio):
        fit_rows = np.concatenate([fold.train, fold.history]) if fit_on_history else fold.train
        fit_matrix = to_csr(interactions.iloc[fit_rows], n_users, n_items, value_col)
        history = to_csr(interactions.iloc[fold.history], n_users, n_items, value_col)
        truth = to_csr(interactions.iloc[fold.heldout], n_users, n_items)
        model = model_factory().fit(fit_matrix)
        per_fold.append(recommend_and_score(model, history, truth, k=k, metrics=metrics))
    keys = list(per_fold[0])
    table = np.array([[fold_metrics[key] for key in keys] for fold_metrics in per_fold])
    return CrossValResult(
        per_fold=per_fold,
        mean=dict(zip(keys, table.mean(axis=0).tolist(), strict=True)),
        std=dict(zip(keys, table.std(axis=0).tolist(), strict=True)),
    )
