"""Ranking metrics @k, vectorised over users.

Inputs are the ``(n, k)`` recommended ids of :meth:`Recommender.recommend` (padding id ``-1``) and
the ground truth as an ``n x n_items`` CSR matrix whose positive entries are the relevant items
(binary relevance; the values are used as graded gains only by ``ndcg_at_k(..., graded=True)``).
Ids must be unique within a row, as ``recommend`` guarantees.

Definitions, with ``hits@k`` the number of relevant items among the first ``k`` and ``|T|`` the
number of relevant items of the user:

* precision = hits / k (padding counts as a miss); recall = hits / |T|; F1 their harmonic mean;
* MAP: AP@k = sum over relevant ranks i <= k of precision@i, divided by min(|T|, k);
* NDCG: binary gains, discount 1 / log2(rank + 1), IDCG over min(|T|, k) relevant items;
* MRR: 1 / rank of the first relevant item within k (0 if none); hit rate: 1 if any hit.

Per-user functions return ``nan`` for users without relevant items (every metric is undefined
there); :func:`evaluate_ranking` averages over the users with at least one.
Beyond-accuracy metrics (AUC, coverage, diversity, novelty, RMSE, MAE) are in
:mod:`recsys.evaluation.beyond` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.evaluation._ranked import Ranked, check_truth, count_relevant, relevance
from recsys.evaluation.beyond import (
    auc_per_user,
    catalogue_coverage,
    intra_list_diversity,
    mae,
    novelty,
    popularity_share,
    rmse,
)

__all__ = [
    "BEYOND_ACCURACY_METRICS",
    "DEFAULT_METRICS",
    "RANKING_METRICS",
    "auc_per_user",
    "average_precision_at_k",
    "catalogue_coverage",
    "evaluate_ranking",
    "evaluate_ranking_per_user",
    "f1_at_k",
    "hit_rate_at_k",
    "intra_list_diversity",
    "mae",
    "ndcg_at_k",
    "novelty",
    "popularity_share",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "relevance",
    "rmse",
]

RANKING_METRICS: tuple[str, ...] = ("precision", "recall", "f1", "map", "ndcg", "mrr", "hit_rate")
"""Accuracy metrics computed from the recommended ids and the truth."""
BEYOND_ACCURACY_METRICS: tuple[str, ...] = ("coverage", "diversity", "novelty")
"""List-level metrics; ``diversity`` needs ``item_vectors``, ``novelty`` needs ``item_popularity``."""
DEFAULT_METRICS: tuple[str, ...] = RANKING_METRICS


def precision_at_k(ids: np.ndarray, truth: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user hits@k / k.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> precision_at_k(np.array([[0, 1]]), sp.csr_matrix(np.array([[1.0, 0.0, 1.0]])), 2)
    array([0.5])
    """
    return Ranked(ids, truth).precision(k)


def recall_at_k(ids: np.ndarray, truth: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user hits@k / number of relevant items.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> recall_at_k(np.array([[0, 1]]), sp.csr_matrix(np.array([[1.0, 0.0, 1.0]])), 2)
    array([0.5])
    """
    return Ranked(ids, truth).recall(k)


def f1_at_k(ids: np.ndarray, truth: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user harmonic mean of precision@k and recall@k (0 when both are 0).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> f1_at_k(np.array([[0, 1]]), sp.csr_matrix(np.array([[1.0, 0.0, 1.0]])), 2)
    array([0.5])
    """
    return Ranked(ids, truth).f1(k)


def average_precision_at_k(ids: np.ndarray, truth: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user AP@k, normalised by min(|relevant|, k).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> average_precision_at_k(np.array([[1, 0]]), sp.csr_matrix(np.array([[1.0, 0.0, 1.0]])), 2)
    array([0.25])
    """
    return Ranked(ids, truth).average_precision(k)


def ndcg_at_k(
    ids: np.ndarray, truth: sp.spmatrix | sp.sparray, k: int, *, graded: bool = False
) -> np.ndarray:
    """Per-user NDCG@k; binary gains, or the truth values as linear gains when ``graded``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> ndcg_at_k(np.array([[1, 0]]), sp.csr_matrix(np.array([[1.0, 0.0]])), 2).round(4)
    array([0.6309])
    """
    return Ranked(ids, truth).ndcg(k, graded=graded)


def reciprocal_rank_at_k(ids: np.ndarray, truth: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user 1 / rank of the first relevant item within k, 0 if none.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> reciprocal_rank_at_k(np.array([[1, 0]]), sp.csr_matrix(np.array([[1.0, 0.0]])), 2)
    array([0.5])
    """
    return Ranked(ids, truth).reciprocal_rank(k)


def hit_rate_at_k(ids: np.ndarray, truth: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user 1.0 if any of the first k items is relevant, else 0.0.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> hit_rate_at_k(np.array([[1, 0]]), sp.csr_matrix(np.array([[1.0, 0.0]])), 1)
    array([0.])
    """
    return Ranked(ids, truth).hit_rate(k)


def _check_metric_names(metrics: Sequence[str], allowed: Sequence[str]) -> None:
    if isinstance(metrics, str):
        raise ConfigError(f"metrics must be a sequence of names, not the string {metrics!r}")
    unknown = [m for m in metrics if m not in allowed]
    if unknown:
        raise ConfigError(f"unknown metric name(s) {unknown}; choose from {list(allowed)}")


def evaluate_ranking_per_user(
    ids: np.ndarray,
    truth: sp.spmatrix | sp.sparray,
    k_values: Sequence[int] = (5, 10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    item_vectors: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    graded: bool = False,
) -> dict[str, np.ndarray]:
    """Per-user values of each ``metric@k``, ``nan`` for users without relevant items.

    Takes the names of :data:`RANKING_METRICS` plus ``"diversity"`` and ``"novelty"``;
    ``"coverage"`` is catalogue-level and only :func:`evaluate_ranking` reports it.
    See :func:`evaluate_ranking` for the parameters.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> out = evaluate_ranking_per_user(np.array([[0, 1], [1, 0]]),
    ...                                 sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 0.0]])),
    ...                                 k_values=(1,), metrics=("recall",))
    >>> out["recall@1"]
    array([ 1., nan])
    """
    if "coverage" in metrics:
        raise ConfigError("coverage is a catalogue-level metric; ask evaluate_ranking for it")
    _check_metric_names(metrics, (*RANKING_METRICS, "diversity", "novelty"))
    if "diversity" in metrics and item_vectors is None:
        raise ConfigError("the 'diversity' metric needs item_vectors (n_items, d)")
    if "novelty" in metrics and item_popularity is None:
        raise ConfigError("the 'novelty' metric needs item_popularity (see popularity_share)")
    ranked = Ranked(ids, truth)
    ids = np.asarray(ids)
    compute = {
        "precision": ranked.precision,
        "recall": ranked.recall,
        "f1": ranked.f1,
        "map": ranked.average_precision,
        "ndcg": lambda k: ranked.ndcg(k, graded=graded),
        "mrr": ranked.reciprocal_rank,
        "hit_rate": ranked.hit_rate,
        "diversity": lambda k: ranked.undefined_to_nan(
            intra_list_diversity(ids[:, :k], np.asarray(item_vectors))
        ),
        "novelty": lambda k: ranked.undefined_to_nan(novelty(ids[:, :k], np.asarray(item_popularity))),
    }
    out: dict[str, np.ndarray] = {}
    for k in k_values:
        ranked.hits(k)  # validates k once, before any metric
        for name in metrics:
            out[f"{name}@{k}"] = compute[name](k)
    return out


def evaluate_ranking(
    ids: np.ndarray,
    truth: sp.spmatrix | sp.sparray,
    k_values: Sequence[int] = (5, 10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    item_vectors: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    graded: bool = False,
) -> dict[str, float]:
    """Mean of each ``metric@k`` over the users with at least one relevant item.

    Parameters
    ----------
    ids : ndarray of int, shape (n, K)
        Recommended ids per user, best first, ``-1`` padding; ``K >= max(k_values)``.
    truth : sparse matrix, shape (n, n_items)
        Relevant items per user (positive entries).
    k_values : sequence of int
        Cut-offs; each must be at most ``K``.
    metrics : sequence of str
        Names from :data:`RANKING_METRICS` and :data:`BEYOND_ACCURACY_METRICS`. Unknown names
        raise :class:`~recsys.errors.ConfigError`.
    item_vectors : ndarray, shape (n_items, d), optional
        Needed by ``"diversity"`` (mean pairwise cosine distance within a list).
    item_popularity : ndarray, shape (n_items,), optional
        Share of users per item in (0, 1], needed by ``"novelty"``.
    graded : bool
        Use the truth values as NDCG gains instead of binary relevance.

    Returns
    -------
    dict
        ``{"ndcg@10": 0.23, ...}``; ``coverage@k`` is the share of the catalogue that appears in
        the top-k lists of the evaluated users.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> truth = sp.csr_matrix(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    >>> ids = np.array([[0, 1], [0, 1], [2, 1]])
    >>> evaluate_ranking(ids, truth, k_values=(2,), metrics=("recall", "hit_rate", "coverage"))
    {'recall@2': 0.75, 'hit_rate@2': 1.0, 'coverage@2': 0.6666666666666666}
    """
    _check_metric_names(metrics, (*RANKING_METRICS, *BEYOND_ACCURACY_METRICS))
    per_user_names = [m for m in metrics if m != "coverage"]
    per_user = evaluate_ranking_per_user(
        ids,
        truth,
        k_values,
        per_user_names,
        item_vectors=item_vectors,
        item_popularity=item_popularity,
        graded=graded,
    )
    evaluated = count_relevant(check_truth(truth, np.asarray(ids).shape[0])) > 0
    if not evaluated.any():
        raise DataError("no user has a relevant item in truth; there is nothing to evaluate")
    ids = np.asarray(ids)
    out: dict[str, float] = {}
    for k in k_values:
        for name in metrics:
            key = f"{name}@{k}"
            if name == "coverage":
                out[key] = catalogue_coverage(ids[evaluated, :k], truth.shape[1])
            else:
                out[key] = float(np.nanmean(per_user[key][evaluated]))
    return out
