"""Candidate sets and their features: the union of every member's top-N, described per member.

For a block of users, each member family scores every item (seen and banned items at ``-inf``);
the candidates of a user are the union of the members' top ``top_n`` items. Each candidate is
described by, per member, its score standardised over the user's unseen items (``m:z``) and
``log(1 + rank)`` in that member's list (``m:log_rank``), plus the item's popularity
(``item:log_popularity``) and the user's activity (``user:log_activity``). A combiner (blending or
stacking) turns these features into one score per candidate, and :func:`top_k_candidates` ranks.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> scores = {"a": np.array([[3.0, 2.0, 1.0, -np.inf]])}
>>> batch = build_candidates(scores, sp.csr_matrix([[0, 0, 0, 1.0]]), np.zeros(4), top_n=2)
>>> batch.items.tolist(), batch.names[:2]
([0, 1], ('a:z', 'a:log_rank'))
>>> top_k_candidates(batch, -batch.items.astype(float), k=3)[0].tolist()
[[0, 1, -1]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.errors import DataError
from recsys.evaluation.metrics import evaluate_ranking

__all__ = [
    "CandidateBatch",
    "build_candidates",
    "candidate_labels",
    "feature_names",
    "ranking_metrics",
    "top_k_candidates",
]

USER_FEATURES = ("item:log_popularity", "user:log_activity")


def feature_names(members: Sequence[str]) -> tuple[str, ...]:
    """Feature columns for these members, in the order :func:`build_candidates` writes them."""
    return (*(f"{m}:{kind}" for m in members for kind in ("z", "log_rank")), *USER_FEATURES)


@dataclass(frozen=True)
class CandidateBatch:
    """Candidates of ``n_rows`` users: one row of ``features`` per (user row, item) pair.

    Attributes
    ----------
    rows : ndarray of int64
        User row (0-based within the batch) of each candidate, non-decreasing.
    items : ndarray of int64
        Item id of each candidate.
    features : ndarray of float32, shape (n_candidates, len(names))
    names : tuple of str
        Feature names (:func:`feature_names`).
    n_rows : int
        Number of user rows in the batch (a row may have no candidate).
    """

    rows: np.ndarray
    items: np.ndarray
    features: np.ndarray
    names: tuple[str, ...]
    n_rows: int

    def column(self, name: str) -> np.ndarray:
        """One feature column by name."""
        return self.features[:, self.names.index(name)]

    def select_rows(self, keep: np.ndarray) -> CandidateBatch:
        """The candidates of the rows where the boolean ``keep`` (length ``n_rows``) is true."""
        mask = np.asarray(keep, dtype=bool)[self.rows]
        return CandidateBatch(self.rows[mask], self.items[mask], self.features[mask], self.names, self.n_rows)

    @staticmethod
    def concat(batches: Sequence[CandidateBatch]) -> CandidateBatch:
        """Stack batches of consecutive user blocks into one (rows renumbered)."""
        if not batches:
            raise DataError("no candidate batch to concatenate")
        offsets = np.cumsum([0, *(b.n_rows for b in batches)])
        return CandidateBatch(
            np.concatenate([b.rows + offsets[i] for i, b in enumerate(batches)]),
            np.concatenate([b.items for b in batches]),
            np.concatenate([b.features for b in batches]),
            batches[0].names,
            int(offsets[-1]),
        )


def _standardised(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    values = np.where(finite, scores, 0.0)
    mean = values.sum(axis=1, keepdims=True) / count
    spread = np.sqrt((np.where(finite, scores - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
    return (values - mean) / np.where(spread > 0, spread, 1.0)


def build_candidates(
    scores: Mapping[str, np.ndarray],
    history: sp.csr_matrix,
    item_log_popularity: np.ndarray,
    *,
    top_n: int,
) -> CandidateBatch:
    """Candidates and features of a block of users from each member's masked score matrix.

    Parameters
    ----------
    scores : dict of str to ndarray, shape (n, n_items)
        Each member's scores for the block, ``-inf`` where an item may not be recommended.
    history : csr_matrix, shape (n, n_items)
        The users' history rows (their length is the activity feature).
    item_log_popularity : ndarray, shape (n_items,)
        ``log(1 + users)`` of each item in the fitting data.
    top_n : int
        Items taken from each member's list.
    """
    members = list(scores)
    first = np.asarray(scores[members[0]])
    n, n_items = first.shape
    chosen = np.zeros((n, n_items), dtype=bool)
    ranks = {}
    for name in members:
        block = np.asarray(scores[name], dtype=np.float64)
        order = np.argsort(-block, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_items), (n, n_items)), axis=1)
        ranks[name] = rank
        chosen |= (rank < top_n) & np.isfinite(block)
    rows, items = np.nonzero(chosen)
    columns = []
    for name in members:
        columns.append(_standardised(np.asarray(scores[name], dtype=np.float64))[rows, items])
        columns.append(np.log1p(ranks[name][rows, items]))
    columns.append(np.asarray(item_log_popularity, dtype=np.float64)[items])
    columns.append(np.log1p(np.diff(history.indptr))[rows])
    features = (
        np.column_stack(columns).astype(np.float32) if rows.size else np.zeros((0, len(columns)), np.float32)
    )
    return CandidateBatch(rows.astype(np.int64), items.astype(np.int64), features, feature_names(members), n)


def top_k_candidates(batch: CandidateBatch, decision: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best candidates by ``decision`` (ties: lower item id); ``-1`` / ``-inf`` padding.

    Candidates are laid out in a ``(n_rows, most candidates of a row)`` table and sorted per row,
    which is much faster than one global sort when it runs hundreds of times (blending's search).
    """
    rows, items, values = batch.rows, batch.items, np.asarray(decision, dtype=np.float64)
    key = rows * (int(items.max(initial=0)) + 1) + items
    if key.size and not (np.diff(key) > 0).all():  # build_candidates already sorts by (row, item)
        order = np.argsort(key, kind="stable")
        rows, items, values = rows[order], items[order], values[order]
    counts = np.bincount(rows, minlength=batch.n_rows)
    position = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    width = max(int(counts.max()) if counts.size else 0, k)
    table = np.full((batch.n_rows, width), -np.inf)
    ids = np.full((batch.n_rows, width), -1, dtype=np.int64)
    table[rows, position], ids[rows, position] = values, items
    best = np.argsort(-table, axis=1, kind="stable")[:, :k]  # stable: ties keep the lower item id
    return np.take_along_axis(ids, best, axis=1), np.take_along_axis(table, best, axis=1).astype(np.float32)


def candidate_labels(batch: CandidateBatch, truth: sp.csr_matrix) -> np.ndarray:
    """Whether each candidate is a truth item of its row (``truth`` has ``n_rows`` rows)."""
    if truth.shape[0] != batch.n_rows:
        raise DataError(f"truth has {truth.shape[0]} rows, the batch {batch.n_rows}")
    return np.asarray(truth[batch.rows, batch.items]).ravel() > 0


def ranking_metrics(
    ids: np.ndarray, truth: sp.csr_matrix, k: int = 10, metrics: Sequence[str] = ("ndcg",)
) -> dict[str, float]:
    """Protocol metrics @k of ranked ids, averaged over the rows with a truth item."""
    return evaluate_ranking(ids[:, :k], truth, k_values=(k,), metrics=metrics)
