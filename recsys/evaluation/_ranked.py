"""Relevance of recommended lists and the per-user ranking metrics computed from it.

Private: the public functions live in :mod:`recsys.evaluation.metrics`, which documents the
definitions. :class:`Ranked` looks the truth up once so many metrics can share it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError


def check_ids(ids: np.ndarray, n_items: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"ids must be a 2-D integer array (n_users, k); got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        raise ConfigError(
            f"ids must lie in [0, {n_items}) or be the padding id -1; found {ids.min()}..{ids.max()}"
        )
    return ids


def check_truth(truth: sp.spmatrix | sp.sparray, n_rows: int) -> sp.csr_matrix:
    if not sp.issparse(truth):
        raise ConfigError(f"truth must be a scipy sparse matrix (CSR), got {type(truth).__name__}")
    csr = sp.csr_matrix(truth, dtype=np.float64)
    if csr.shape[0] != n_rows:
        raise ConfigError(f"truth has {csr.shape[0]} rows but ids has {n_rows}; pass one row per user")
    if not csr.has_canonical_format:
        csr = csr.copy()  # canonicalising works in place: leave the caller's matrix alone
        csr.sum_duplicates()
    return csr


def count_relevant(truth: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(truth.shape[0]), np.diff(truth.indptr))
    return np.bincount(rows, weights=truth.data > 0, minlength=truth.shape[0])


def relevance(ids: np.ndarray, truth: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Truth value of each recommended item (0 where not relevant or padding).

    Parameters
    ----------
    ids : ndarray of int, shape (n, k)
        Recommended item ids, best first, ``-1`` as padding.
    truth : sparse matrix, shape (n, n_items)
        Ground truth; row ``u`` holds user ``u``'s relevant items.

    Returns
    -------
    ndarray of float64, shape (n, k)

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> relevance(np.array([[2, 0, -1]]), sp.csr_matrix(np.array([[1.0, 0.0, 3.0]])))
    array([[3., 1., 0.]])
    """
    truth_csr = check_truth(truth, np.asarray(ids).shape[0])
    n_items = truth_csr.shape[1]
    ids = check_ids(ids, n_items)
    if truth_csr.nnz == 0:
        return np.zeros(ids.shape)
    # Sorted (row, item) keys of the truth; each recommended (row, id) is looked up by bisection.
    rows = np.repeat(np.arange(truth_csr.shape[0], dtype=np.int64), np.diff(truth_csr.indptr))
    keys = rows * n_items + truth_csr.indices
    valid = ids >= 0
    query = np.arange(ids.shape[0], dtype=np.int64)[:, None] * n_items + np.where(valid, ids, 0)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    found = valid & (keys[pos] == query)
    return np.where(found, truth_csr.data[pos], 0.0)


class Ranked:
    """Relevance of the top-k lists plus per-user counts, computed once for many metrics."""

    def __init__(self, ids: np.ndarray, truth: sp.spmatrix | sp.sparray) -> None:
        self.gains = relevance(ids, truth)
        self.truth = check_truth(truth, self.gains.shape[0])
        self.n_relevant = count_relevant(self.truth)
        self.defined = self.n_relevant > 0

    def hits(self, k: int) -> np.ndarray:
        if not 1 <= k <= self.gains.shape[1]:
            raise ConfigError(f"k={k} must be in [1, {self.gains.shape[1]}] (the length of the lists)")
        return self.gains[:, :k] > 0

    def undefined_to_nan(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.defined, values, np.nan)

    def precision(self, k: int) -> np.ndarray:
        return self.undefined_to_nan(self.hits(k).sum(axis=1) / k)

    def recall(self, k: int) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.undefined_to_nan(self.hits(k).sum(axis=1) / self.n_relevant)

    def f1(self, k: int) -> np.ndarray:
        p, r = self.precision(k), self.recall(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p + r > 0, 2 * p * r / (p + r), np.where(self.defined, 0.0, np.nan))

    def average_precision(self, k: int) -> np.ndarray:
        hits = self.hits(k)
        precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ap: np.ndarray = (precision_at_i * hits).sum(axis=1) / np.minimum(self.n_relevant, k)
        return self.undefined_to_nan(ap)

    def ndcg(self, k: int, graded: bool = False) -> np.ndarray:
        hits = self.hits(k)
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        if graded:
            dcg = (np.maximum(self.gains[:, :k], 0.0) * discount).sum(axis=1)
            idcg = ideal_graded_dcg(self.truth, k, discount)
        else:
            dcg = (hits * discount).sum(axis=1)
            cumulative = np.concatenate([[0.0], np.cumsum(discount)])
            idcg = cumulative[np.minimum(self.n_relevant, k).astype(np.int64)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.undefined_to_nan(dcg / idcg)

    def reciprocal_rank(self, k: int) -> np.ndarray:
        hits = self.hits(k)
        first = hits.argmax(axis=1)
        return self.undefined_to_nan(np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0))

    def hit_rate(self, k: int) -> np.ndarray:
        hit = np.asarray(self.hits(k).any(axis=1), dtype=np.float64)
        return self.undefined_to_nan(hit)


def ideal_graded_dcg(truth: sp.csr_matrix, k: int, discount: np.ndarray) -> np.ndarray:
    """DCG of each user's k best truth grades, sorted within rows without a Python loop."""
    rows = np.repeat(np.arange(truth.shape[0]), np.diff(truth.indptr))
    gains = np.maximum(truth.data, 0.0)
    order = np.lexsort((-gains, rows))
    rank = np.arange(rows.size) - truth.indptr[rows[order]]
    keep = rank < k
    weights = gains[order][keep] * discount[rank[keep]]
    return np.bincount(rows[order][keep], weights=weights, minlength=truth.shape[0])
