"""Content-based recommendation from item features: works for items nobody has interacted with."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.preprocessing import normalize

from recsys.errors import ConfigError, DataError
from recsys.models._common import RecommenderBase, as_csr, pack_csr, row_normalize, unpack_csr


class ContentRecommender(RecommenderBase):
    """User profile = confidence-weighted mean of the history's item vectors; score = cosine.

    Item vectors are the rows of ``item_features`` (e.g. TF-IDF of text plus one-hot categories from
    preprocessing), L2-normalised, optionally reduced to ``n_components`` dimensions by a truncated
    SVD (then normalised again). A user's profile is ``sum_i c_ui v_i / sum_i |c_ui|``: liked items
    pull it towards them and disliked ones (negative confidences) push it away. The interaction
    matrix itself is only used for its width; an empty history scores zero everywhere.

    Parameters
    ----------
    n_components : int or None
        Reduce item vectors to this many dimensions (dense); ``None`` keeps the sparse features.
    random_state : int or None
        Seed of the truncated SVD.

    Attributes
    ----------
    item_vectors_ : ndarray or scipy.sparse.csr_matrix of shape (n_items, d)
        Unit-norm float32 item vectors (sparse when ``n_components`` is ``None``).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> features = sp.csr_matrix([[1, 0], [1, 0.1], [0, 1]], dtype="float32")
    >>> X = sp.csr_matrix((2, 3), dtype="float32")
    >>> model = ContentRecommender().fit(X, item_features=features)
    >>> model.recommend(sp.csr_matrix([[1, 0, 0]], dtype="float32"), k=1)[0].tolist()
    [[1]]
    """

    family = "content"

    def __init__(self, *, n_components: int | None = None, random_state: int | None = None) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit(
        self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None
    ) -> ContentRecommender:
        """Normalise (and optionally reduce) the item features; ``item_features`` is required."""
        matrix = as_csr(interactions, name="interactions")
        if item_features is None:
            raise ConfigError("ContentRecommender needs item_features (one row per item) in fit()")
        features = as_csr(item_features, name="item_features")
        if features.shape[0] != matrix.shape[1]:
            raise DataError(
                f"item_features has {features.shape[0]} rows but interactions has {matrix.shape[1]} items; "
                "build both with the same item index"
            )
        vectors = normalize(features, norm="l2", axis=1).astype(np.float32)
        if self.n_components is not None:
            if not 1 <= self.n_components < features.shape[1]:
                raise ConfigError(
                    f"n_components must be in [1, {features.shape[1]}), got {self.n_components}"
                )
            svd = TruncatedSVD(n_components=self.n_components, random_state=self.random_state)
            self.item_vectors_: np.ndarray | sp.csr_matrix = row_normalize(
                svd.fit_transform(vectors).astype(np.float32)
            )
        else:
            self.item_vectors_ = sp.csr_matrix(vectors)
        self.n_items_ = int(matrix.shape[1])
        return self

    @property
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, d)`` float32 unit item vectors (densified when the features are sparse)."""
        self.check_fitted()
        vectors = self.item_vectors_
        if isinstance(vectors, np.ndarray):
            return vectors
        return np.asarray(vectors.toarray(), dtype=np.float32)

    def fold_in(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """``(n, d)`` unit-norm user profiles (zero for an empty history)."""
        self.check_fitted()
        profiles = self._profiles(as_csr(user_rows, n_items=self.n_items_))
        return row_normalize(profiles)

    def _profiles(self, rows: sp.csr_matrix) -> np.ndarray:
        totals = np.asarray(abs(rows).sum(axis=1), dtype=np.float32).reshape(-1, 1)
        sums = rows @ self.item_vectors_
        dense = np.asarray(sums.toarray() if sp.issparse(sums) else sums, dtype=np.float32)
        return np.divide(dense, totals, out=np.zeros_like(dense), where=totals > 0)

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        profiles = row_normalize(self._profiles(rows))
        scores = self.item_vectors_ @ profiles.T
        return np.asarray(scores, dtype=np.float32).T

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        chosen = self.item_vectors_[item_ids]
        products = chosen @ self.item_vectors_.T
        return np.asarray(products.toarray() if sp.issparse(products) else products, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        if sp.issparse(self.item_vectors_):
            return pack_csr("item_vectors_", sp.csr_matrix(self.item_vectors_))
        return {"item_vectors_": np.asarray(self.item_vectors_)}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        if "item_vectors_" in arrays:
            self.item_vectors_ = np.ascontiguousarray(arrays["item_vectors_"], dtype=np.float32)
        else:
            self.item_vectors_ = unpack_csr("item_vectors_", arrays)
