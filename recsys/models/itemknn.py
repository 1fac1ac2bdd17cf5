"""Item-item nearest neighbours with cosine, TF-IDF or BM25 weighting (as in ``implicit``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.models._common import RecommenderBase, as_csr, pack_csr, row_chunks, top_k, unpack_csr

_WEIGHTINGS = ("cosine", "tfidf", "bm25")


def weight_item_vectors(item_users: sp.csr_matrix, weighting: str, k1: float, b: float) -> sp.csr_matrix:
    """Apply ``implicit``'s TF-IDF or BM25 weighting to an items x users matrix.

    Items are the documents and users the terms: the IDF of a user is
    ``log(n_items) - log1p(n_items_of_user)``, so heavy users count less. The weighting acts on
    the magnitude of each confidence and keeps its sign (dislikes stay negative).
    """
    if weighting == "cosine":
        return item_users
    coo = item_users.tocoo()
    magnitude = np.abs(coo.data).astype(np.float64)
    sign = np.sign(coo.data)
    n_items = float(item_users.shape[0])
    idf = np.log(n_items) - np.log1p(np.bincount(coo.col, minlength=item_users.shape[1]))
    if weighting == "tfidf":
        data = np.sqrt(magnitude) * idf[coo.col]
    else:
        lengths = np.bincount(coo.row, weights=magnitude, minlength=item_users.shape[0])
        mean_length = lengths.mean() if lengths.size and lengths.mean() > 0 else 1.0
        length_norm = (1.0 - b) + b * lengths / mean_length
        data = magnitude * (k1 + 1.0) / (k1 * length_norm[coo.row] + magnitude) * idf[coo.col]
    weighted = sp.csr_matrix((sign * data, (coo.row, coo.col)), shape=item_users.shape, dtype=np.float32)
    return weighted


class ItemKNNRecommender(RecommenderBase):
    """Item-based collaborative filtering on a top-``k`` pruned item-item similarity matrix.

    A user's score for a candidate ``j`` is ``sum_i confidence(u, i) * sim(i, j)`` over the history
    items ``i`` that are among the ``k`` nearest neighbours of ``j`` (the item itself excluded):
    pruning on the candidate's neighbourhood, as RecBole's ItemKNN does, scored NDCG@10 0.230 on the
    benchmark protocol against 0.194 for pruning on the history items' neighbourhoods (implicit's
    variant). Disliked items (negative confidences) push their neighbours down.

    Parameters
    ----------
    k : int
        Neighbours kept per item.
    shrinkage : float
        Added to the cosine denominator, ``dot / (|a||b| + shrinkage)``: damps similarities
        supported by few users. Used with ``"cosine"`` and ``"tfidf"``; ``"bm25"`` uses raw dot
        products of BM25-weighted vectors, as ``implicit.nearest_neighbours.BM25Recommender`` does.
    weighting : {"cosine", "tfidf", "bm25"}
        How item vectors (columns of the interaction matrix) are weighted before similarity.
    bm25_k1, bm25_b : float
        BM25 term-saturation and length-normalisation constants.

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix of shape (n_items, n_items)
        Row ``j`` holds the ``k`` neighbours of item ``j`` and their similarities; scores are
        ``history @ similarity_.T``.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype="float32")
    >>> model = ItemKNNRecommender(k=2).fit(X)
    >>> model.recommend(sp.csr_matrix([[1, 0, 0]], dtype="float32"), k=1)[0].tolist()
    [[1]]
    """

    family = "itemknn"

    def __init__(
        self,
        *,
        k: int = 50,
        shrinkage: float = 0.0,
        weighting: str = "cosine",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
    ) -> None:
        self.k = k
        self.shrinkage = shrinkage
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b

    def fit(
        self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None
    ) -> ItemKNNRecommender:
        """Build the pruned similarity matrix; ``item_features`` is ignored."""
        if self.weighting not in _WEIGHTINGS:
            raise ConfigError(f"ItemKNN weighting must be one of {_WEIGHTINGS}, got {self.weighting!r}")
        if self.k < 1 or self.shrinkage < 0:
            raise ConfigError(f"ItemKNN needs k >= 1 and shrinkage >= 0, got k={self.k}, {self.shrinkage}")
        matrix = as_csr(interactions, name="interactions")
        vectors = weight_item_vectors(matrix.T.tocsr(), self.weighting, self.bm25_k1, self.bm25_b)
        self.similarity_ = _pruned_similarity(
            vectors, self.k, self.shrinkage, normalize=self.weighting != "bm25"
        )
        self.n_items_ = int(matrix.shape[1])
        self._scorer = self.similarity_.T.tocsr()
        return self

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray((rows @ self._scorer).toarray(), dtype=np.float32)

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_[item_ids].toarray(), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return pack_csr("similarity_", self.similarity_)

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.similarity_ = unpack_csr("similarity_", arrays)
        self._scorer = self.similarity_.T.tocsr()


def _pruned_similarity(vectors: sp.csr_matrix, k: int, shrinkage: float, *, normalize: bool) -> sp.csr_matrix:
    """Top-``k`` neighbours (self excluded, positive similarities only, ties to the lower id)."""
    n = vectors.shape[0]
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    transposed = vectors.T.tocsr()
    keep = min(k, n - 1)
    if keep <= 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    rows, cols, vals = [], [], []
    filler = -(1.0 + np.arange(n, dtype=np.float32)) / n
    # a quarter of the usual block: the sparse product before densifying costs about 3x the block
    for chunk in row_chunks(n, 4 * n):
        block = np.asarray((vectors[chunk] @ transposed).toarray(), dtype=np.float32)
        if normalize:
            denominator = norms[chunk, None] * norms[None, :] + shrinkage
            np.divide(block, denominator, out=block, where=denominator > 0)
        ids = np.arange(chunk.start, chunk.stop)
        block[np.arange(ids.size), ids] = 0.0
        # distinct negative fillers instead of a constant: argpartition is ~6x slower on many ties
        np.copyto(block, np.broadcast_to(filler, block.shape), where=block <= 0)
        best, values = top_k(block, keep)
        positive = values > 0
        rows.append(np.repeat(ids, positive.sum(axis=1)))
        cols.append(best[positive])
        vals.append(values[positive])
    if rows:
        data = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
        return sp.csr_matrix(data, shape=(n, n), dtype=np.float32)
    return sp.csr_matrix((n, n), dtype=np.float32)
