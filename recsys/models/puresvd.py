"""PureSVD (Cremonesi et al., RecSys 2010): a truncated SVD of the interaction matrix."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from recsys.errors import ConfigError
from recsys.models._common import RecommenderBase, as_csr, cosine_block


class PureSVDRecommender(RecommenderBase):
    """Scores are the rank-``factors`` reconstruction of the history: ``row @ V @ V^T``.

    Item embeddings are the right singular vectors ``V``; folding a user in is the projection
    ``row @ V``, exact for any history row without refitting. ``similar_items`` uses the cosine of
    ``V * sigma`` so that weak factors do not dominate.

    Parameters
    ----------
    factors : int
        Rank of the truncated SVD; must be smaller than both matrix dimensions.
    n_iter : int
        Power iterations of the randomized SVD (more is more accurate and slower).
    random_state : int or None
        Seed of the randomized SVD.

    Attributes
    ----------
    item_factors_ : ndarray of shape (n_items, factors)
        float32 ``V``.
    singular_values_ : ndarray of shape (factors,)

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], dtype="float32")
    >>> model = PureSVDRecommender(factors=2, random_state=0).fit(X)
    >>> model.recommend(sp.csr_matrix([[1, 0, 0, 0]], dtype="float32"), k=1)[0].tolist()
    [[1]]
    """

    family = "puresvd"

    def __init__(self, *, factors: int = 64, n_iter: int = 7, random_state: int | None = None) -> None:
        self.factors = factors
        self.n_iter = n_iter
        self.random_state = random_state

    def fit(
        self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None
    ) -> PureSVDRecommender:
        """Compute the truncated SVD; ``item_features`` is ignored."""
        matrix = as_csr(interactions, name="interactions")
        if not 1 <= self.factors < min(matrix.shape):
            raise ConfigError(
                f"PureSVD factors must be in [1, {min(matrix.shape)}) for a {matrix.shape} matrix, "
                f"got {self.factors}"
            )
        _, sigma, vt = randomized_svd(
            matrix, n_components=self.factors, n_iter=self.n_iter, random_state=self.random_state
        )
        self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)
        self.singular_values_ = sigma.astype(np.float32)
        self.n_items_ = int(matrix.shape[1])
        return self

    @property
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, factors)`` float32 ``V``."""
        self.check_fitted()
        return self.item_factors_

    def fold_in(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """``(n, factors)`` user vectors ``row @ V``."""
        self.check_fitted()
        rows = as_csr(user_rows, n_items=self.n_items_)
        return np.asarray(rows @ self.item_factors_, dtype=np.float32)

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray((rows @ self.item_factors_) @ self.item_factors_.T, dtype=np.float32)

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        scaled = self.item_factors_ * self.singular_values_[None, :]
        return cosine_block(scaled[item_ids], scaled)

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_factors_": self.item_factors_, "singular_values_": self.singular_values_}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.item_factors_ = np.ascontiguousarray(arrays["item_factors_"], dtype=np.float32)
        self.singular_values_ = arrays["singular_values_"].astype(np.float32)
