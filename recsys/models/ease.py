"""EASE: the closed-form shallow autoencoder of Steck (WWW 2019), the strongest simple baseline."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.models._common import RecommenderBase, as_csr


def ease_weights(interactions: sp.csr_matrix, l2: float) -> np.ndarray:
    """The EASE item-item matrix ``B = I - P / diag(P)``, ``P = (X^T X + l2 I)^-1``, diagonal zeroed.

    The Gram matrix is inverted in float64 through a Cholesky factorisation (it is symmetric
    positive definite for ``l2 > 0``); the result is returned as float32.
    """
    gram = np.asarray((interactions.T @ interactions).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    factor, info = scipy.linalg.lapack.dpotrf(gram, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        raise ConfigError(f"EASE Gram matrix is not positive definite (LAPACK info {info}); raise l2")
    del gram
    precision, info = scipy.linalg.lapack.dpotri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise ConfigError(f"EASE inversion failed (LAPACK info {info}); raise l2")
    upper = np.triu(precision)
    del precision, factor
    upper += np.triu(upper, 1).T
    diagonal = np.diag(upper).copy()
    upper /= -diagonal[None, :]
    upper[np.diag_indices_from(upper)] = 0.0
    return upper.astype(np.float32)


class EASERecommender(RecommenderBase):
    """Embarrassingly Shallow AutoEncoder: ``score = history @ B`` with a dense item-item ``B``.

    Fold-in is exact and free: a new user's scores are their history row times ``B``.
    Memory is ``n_items^2`` (float64 while fitting), so this suits catalogues up to ~20-30k items.

    Parameters
    ----------
    l2 : float
        The L2 regularisation λ added to the diagonal of ``X^T X`` (250-500 suits MovieLens).

    Attributes
    ----------
    weights_ : ndarray of shape (n_items, n_items)
        float32 ``B``; row ``i`` says how much liking ``i`` raises every other item.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype="float32")
    >>> model = EASERecommender(l2=1.0).fit(X)
    >>> model.recommend(sp.csr_matrix([[1, 0, 0]], dtype="float32"), k=1)[0].tolist()
    [[1]]
    """

    family = "ease"

    def __init__(self, *, l2: float = 250.0) -> None:
        self.l2 = l2

    def fit(self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None) -> EASERecommender:
        """Solve for ``B`` in closed form; ``item_features`` is ignored."""
        if not self.l2 > 0:
            raise ConfigError(f"EASE l2 must be positive, got {self.l2!r}")
        matrix = as_csr(interactions, name="interactions")
        self.weights_ = ease_weights(matrix, float(self.l2))
        self.n_items_ = int(matrix.shape[1])
        return self

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows @ self.weights_, dtype=np.float32)

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        return self.weights_[item_ids]

    def _state(self) -> dict[str, np.ndarray]:
        return {"weights_": self.weights_}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.weights_ = np.ascontiguousarray(arrays["weights_"], dtype=np.float32)
