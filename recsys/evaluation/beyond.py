"""Metrics beyond top-k accuracy: AUC, coverage, diversity, novelty, and rating errors.

All are vectorised over users; the dense ones (AUC, diversity) work through the users in row blocks
so memory stays bounded on large catalogues.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from recsys.errors import ConfigError, DataError

__all__ = [
    "auc_per_user",
    "catalogue_coverage",
    "intra_list_diversity",
    "mae",
    "novelty",
    "popularity_share",
    "rmse",
]

_BLOCK_CELLS = 1 << 24  # about 128 MB of float64 per block of users


def _block_size(cells_per_row: int) -> int:
    """Rows per block so that a block holds about ``_BLOCK_CELLS`` numbers."""
    return max(1, _BLOCK_CELLS // max(1, cells_per_row))


def auc_per_user(
    scores: np.ndarray,
    truth: sp.spmatrix | sp.sparray,
    exclude: sp.spmatrix | sp.sparray | None = None,
) -> np.ndarray:
    """Per-user ROC AUC of a full score matrix, the ``exclude`` items (e.g. train) left out.

    Positives are the user's truth items, negatives every other item not excluded; ties count one
    half (Mann-Whitney). An item both in truth and in ``exclude`` is excluded.

    Parameters
    ----------
    scores : ndarray, shape (n, n_items)
        Scores for every item, e.g. from :meth:`SupportsScoring.score`. Must not contain NaN.
    truth : sparse matrix, shape (n, n_items)
        Relevant items (positive entries).
    exclude : sparse matrix, shape (n, n_items), optional
        Items to leave out of each user's ranking (non-zero entries).

    Returns
    -------
    ndarray of float64, shape (n,)
        ``nan`` for users with no positive or no negative item.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> scores = np.array([[0.9, 0.1, 0.5, 0.7]])
    >>> truth = sp.csr_matrix(np.array([[0.0, 0.0, 1.0, 0.0]]))
    >>> auc_per_user(scores, truth, exclude=sp.csr_matrix(np.array([[1.0, 0, 0, 0]])))
    array([0.5])
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ConfigError(f"scores must be 2-D (n_users, n_items), got shape {scores.shape}")
    if truth.shape != scores.shape or (exclude is not None and exclude.shape != scores.shape):
        raise ConfigError(
            f"scores {scores.shape}, truth {truth.shape} and exclude "
            f"{None if exclude is None else exclude.shape} must have the same shape"
        )
    if np.isnan(scores).any():
        raise DataError("scores contain NaN; a ranking model must score every item")
    truth_csr = sp.csr_matrix(truth)
    exclude_csr = None if exclude is None else sp.csr_matrix(exclude)
    out = np.empty(scores.shape[0])
    step = _block_size(scores.shape[1])
    for start in range(0, scores.shape[0], step):
        stop = min(start + step, scores.shape[0])
        block = scores[start:stop].astype(np.float64)
        positive = truth_csr[start:stop].toarray() > 0
        if exclude_csr is not None:
            excluded = exclude_csr[start:stop].toarray() != 0
            block[excluded] = np.nan
            positive &= ~excluded
        ranks = rankdata(block, axis=1, nan_policy="omit")
        n_pos = positive.sum(axis=1)
        n_neg = (~np.isnan(block)).sum(axis=1) - n_pos
        rank_sum = np.where(positive, ranks, 0.0).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
        out[start:stop] = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return out


def catalogue_coverage(ids: np.ndarray, n_items: int) -> float:
    """Share of the catalogue recommended to at least one user (padding ``-1`` ignored).

    Examples
    --------
    >>> import numpy as np
    >>> catalogue_coverage(np.array([[0, 1], [1, -1]]), n_items=4)
    0.5
    """
    if n_items <= 0:
        raise ConfigError(f"n_items must be positive, got {n_items}")
    ids = np.asarray(ids)
    return float(np.unique(ids[ids >= 0]).size / n_items)


def intra_list_diversity(ids: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Per-user mean pairwise cosine distance (1 - cosine) between the recommended items.

    Zero vectors count as orthogonal to everything. Padding ``-1`` is ignored; users with fewer
    than two items get ``nan``.

    Examples
    --------
    >>> import numpy as np
    >>> vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> intra_list_diversity(np.array([[0, 1], [0, 2], [0, -1]]), vectors)
    array([ 1.,  0., nan])
    """
    ids = np.asarray(ids)
    vectors = np.asarray(item_vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ConfigError(f"item_vectors must be 2-D (n_items, d), got shape {vectors.shape}")
    if ids.size and ids.max() >= vectors.shape[0]:
        raise ConfigError(f"id {ids.max()} has no row in item_vectors ({vectors.shape[0]} rows)")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    n, k = ids.shape
    valid = ids >= 0
    off_diagonal = ~np.eye(k, dtype=bool)
    out = np.empty(n)
    step = _block_size(k * max(k, vectors.shape[1]))
    for start in range(0, n, step):
        stop = min(start + step, n)
        emb = unit[np.where(valid[start:stop], ids[start:stop], 0)]
        cosine = np.einsum("nkd,njd->nkj", emb, emb)
        pairs = valid[start:stop, :, None] & valid[start:stop, None, :] & off_diagonal
        n_pairs = pairs.sum(axis=(1, 2))
        total = np.where(pairs, 1.0 - cosine, 0.0).sum(axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:stop] = np.where(n_pairs > 0, total / n_pairs, np.nan)
    return out


def popularity_share(interactions: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Share of users with a positive interaction on each item, for :func:`novelty`.

    Items nobody interacted with count as one user, so their novelty is the largest finite value,
    ``log2(n_users)``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> popularity_share(sp.csr_matrix(np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])))
    array([1. , 0.5, 0.5])
    """
    csr = sp.csr_matrix(interactions)
    n_users = csr.shape[0]
    if n_users == 0:
        raise ConfigError("interactions has no users; popularity is undefined")
    counts = np.asarray((csr > 0).sum(axis=0)).ravel()
    return np.maximum(counts, 1) / n_users


def novelty(ids: np.ndarray, item_popularity: np.ndarray) -> np.ndarray:
    """Per-user mean self-information ``-log2(popularity share)`` of the recommended items.

    Padding ``-1`` is ignored; users with no item get ``nan``.

    Examples
    --------
    >>> import numpy as np
    >>> novelty(np.array([[0, 1], [1, -1]]), np.array([0.5, 0.25]))
    array([1.5, 2. ])
    """
    ids = np.asarray(ids)
    share = np.asarray(item_popularity, dtype=np.float64)
    if share.ndim != 1 or (share.size and (share.min() <= 0 or share.max() > 1)):
        raise ConfigError("item_popularity must be 1-D shares in (0, 1]; build it with popularity_share")
    if ids.size and ids.max() >= share.size:
        raise ConfigError(f"id {ids.max()} has no entry in item_popularity ({share.size} items)")
    valid = ids >= 0
    information = np.where(valid, -np.log2(share[np.where(valid, ids, 0)]), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid.any(axis=1), information.sum(axis=1) / valid.sum(axis=1), np.nan)


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape or true.size == 0:
        raise ConfigError(f"y_true {true.shape} and y_pred {pred.shape} must be non-empty, same shape")
    if not (np.isfinite(true).all() and np.isfinite(pred).all()):
        raise DataError("ratings contain NaN or infinity")
    return true, pred


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error of rating predictions.

    Examples
    --------
    >>> rmse([4.0, 2.0], [3.0, 2.0])
    0.7071067811865476
    """
    true, pred = _check_pair(np.asarray(y_true), np.asarray(y_pred))
    return float(np.sqrt(np.mean((true - pred) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error of rating predictions.

    Examples
    --------
    >>> mae([4.0, 2.0], [3.0, 2.5])
    0.75
    """
    true, pred = _check_pair(np.asarray(y_true), np.asarray(y_pred))
    return float(np.mean(np.abs(true - pred)))
