"""Candidate retrieval: exact batched top-k dot product, and an IVF index for very large catalogues.

Exact search is one matrix product and an ``argpartition``; at d = 64 it scans 10k items in well
under a millisecond and stays the default up to ``RankerConfig.exact_search_max_items`` (50k, about
4 ms per query vector there). Above that, :class:`IVFIndex` (``sqrt(n)`` k-means inverted lists,
probe the ``n_probe`` nearest) scores a few percent of the items; :func:`recall_at_k` measures what
it loses. Measured on 300k clustered unit vectors, d = 64, 100 queries: recall@10 0.95 with 16
probes (about 3% of the items scored), 0.99 with 32, against exact search over all 300k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from recsys.errors import ConfigError


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first (ties: lower index first)."""
    if k <= 0 or scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    chosen = np.arange(scores.size) if scores.size <= k else _at_least_kth(scores, k)
    chosen = chosen[np.isfinite(scores[chosen])]
    return chosen[np.lexsort((chosen, -scores[chosen]))][:k]


def _at_least_kth(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices, ascending, of the values at or above the ``k``-th largest (``k < scores.size``).

    A value-only partition of the whole array costs ~60 us at 10k items; a strided sample's
    ``2k/stride``-th largest is a threshold that about ``2k`` values reach, and when at least ``k``
    do, the answer is among them (a partition of a few hundred values, and one pass over the
    whole array in all). Otherwise: the full partition.
    """
    stride = scores.size // (8 * k)
    if stride >= 2:
        sample = scores[::stride]
        rank = min(sample.size, -(-2 * k // stride))
        guess = np.partition(sample, sample.size - rank)[sample.size - rank]
        above = np.flatnonzero(scores >= guess)
        if above.size >= k:
            values = scores[above]
            return above[values >= np.partition(values, values.size - k)[values.size - k]]
    return np.flatnonzero(scores >= np.partition(scores, scores.size - k)[scores.size - k])


def exact_top_k(
    queries: np.ndarray, vectors: np.ndarray, k: int, *, banned: np.ndarray | None = None, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by dot product for each query row, in batches of ``batch`` queries.

    Returns ``(ids, scores)`` of shape ``(n_queries, k)``; missing slots hold ``-1`` / ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> ids, _ = exact_top_k(np.array([[1.0, 0.0]]), np.array([[0.1, 0], [0.9, 0], [0, 1]]), 2)
    >>> ids.tolist()
    [[1, 0]]
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
    out = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    for start in range(0, queries.shape[0], batch):
        block = queries[start : start + batch] @ vectors.T
        if banned is not None:
            block[:, banned] = -np.inf
        for row, scores in enumerate(block):
            best = top_indices(scores, k)
            ids[start + row, : best.size] = best
            out[start + row, : best.size] = scores[best]
    return ids, out


@dataclass(frozen=True, eq=False)
class IVFIndex:
    """Inverted-file index over item vectors (inner-product search).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> vectors = rng.normal(size=(2000, 16)).astype("float32")
    >>> index = IVFIndex.build(vectors, n_lists=20, random_state=0)
    >>> queries = rng.normal(size=(20, 16)).astype("float32")
    >>> recall_at_k(index, vectors, queries, k=10, n_probe=20)
    1.0
    """

    centroids: np.ndarray
    lists: tuple[np.ndarray, ...]
    vectors: np.ndarray

    @classmethod
    def build(cls, vectors: np.ndarray, *, n_lists: int | None = None, random_state: int = 0) -> IVFIndex:
        """Cluster the items into ``n_lists`` lists (default ``sqrt(n_items)``).

        k-means is fitted on a sample of at most ``64 n_lists`` items, then every item is assigned.
        """
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        count = n_lists if n_lists is not None else int(np.sqrt(matrix.shape[0]))
        count = max(1, min(count, matrix.shape[0]))
        rng = np.random.default_rng(random_state)
        sample = matrix[rng.choice(matrix.shape[0], min(matrix.shape[0], 64 * count), replace=False)]
        kmeans = MiniBatchKMeans(n_clusters=count, random_state=random_state, n_init=1, batch_size=4096)
        labels = kmeans.fit(sample).predict(matrix)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(count + 1))
        lists = tuple(order[bounds[i] : bounds[i + 1]] for i in range(count))
        return cls(centroids=kmeans.cluster_centers_.astype(np.float32), lists=lists, vectors=matrix)

    def candidates(self, query: np.ndarray, n_probe: int) -> np.ndarray:
        """Item indices in the ``n_probe`` lists whose centres score highest for ``query``."""
        if n_probe < 1:
            raise ConfigError(f"n_probe must be >= 1, got {n_probe}")
        probe = top_indices(self.centroids @ np.asarray(query, dtype=np.float32), n_probe)
        return np.concatenate([self.lists[i] for i in probe]) if probe.size else np.zeros(0, np.int64)

    def search(self, query: np.ndarray, k: int, *, n_probe: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` ids and scores for one query vector."""
        pool = self.candidates(query, n_probe)
        scores = self.vectors[pool] @ np.asarray(query, dtype=np.float32)
        best = top_indices(scores, k)
        return pool[best], scores[best]


def recall_at_k(
    index: IVFIndex, vectors: np.ndarray, queries: np.ndarray, *, k: int = 10, n_probe: int = 8
) -> float:
    """Mean fraction of the exact top-``k`` that the index returns."""
    exact, _ = exact_top_k(queries, vectors, k)
    hits = 0
    for query, truth in zip(np.atleast_2d(queries), exact, strict=True):
        found, _ = index.search(query, k, n_probe=n_probe)
        hits += np.isin(truth, found).sum()
    return float(hits / exact.size)
