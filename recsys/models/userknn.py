"""User-user nearest neighbours: new users are rows, matched against the training users."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.models._common import RecommenderBase, as_csr, pack_csr, top_k, unpack_csr


def _row_norms(matrix: sp.csr_matrix) -> np.ndarray:
    return np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1), dtype=np.float64).ravel())


def _shrunk_cosine(dots: np.ndarray, left: np.ndarray, right: np.ndarray, shrinkage: float) -> np.ndarray:
    denominator = left[:, None] * right[None, :] + shrinkage
    out = np.zeros(dots.shape, dtype=np.float32)
    np.divide(dots, denominator, out=out, where=denominator > 0)
    return out


class UserKNNRecommender(RecommenderBase):
    """User-based collaborative filtering with shrunk cosine similarity.

    At recommend time each history row is compared with every training user
    (``cos = <q, x_u> / (|q| |x_u| + shrinkage)``, one sparse product); the ``k`` most similar
    training users with positive similarity (ties: lower user index) vote with their rows,
    ``score = sum_u sim(q, u) x_u``.
    A brand-new user is just a row, and an empty row scores zero everywhere.

    Parameters
    ----------
    k : int
        Neighbours kept per user.
    shrinkage : float
        Added to the cosine denominator; damps similarities supported by few items.

    Attributes
    ----------
    user_items_ : scipy.sparse.csr_matrix of shape (n_train_users, n_items)
        The training matrix (confidences, dislikes negative).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype="float32")
    >>> model = UserKNNRecommender(k=1).fit(X)
    >>> model.recommend(sp.csr_matrix([[1, 1, 0]], dtype="float32"), k=1)[0].tolist()
    [[2]]
    """

    family = "userknn"

    def __init__(self, *, k: int = 50, shrinkage: float = 0.0) -> None:
        self.k = k
        self.shrinkage = shrinkage

    def fit(
        self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None
    ) -> UserKNNRecommender:
        """Keep the training rows and their norms; ``item_features`` is ignored."""
        if self.k < 1 or self.shrinkage < 0:
            raise ConfigError(f"UserKNN needs k >= 1 and shrinkage >= 0, got k={self.k}, {self.shrinkage}")
        self.user_items_ = as_csr(interactions, name="interactions")
        self.n_items_ = int(self.user_items_.shape[1])
        self._prepare()
        return self

    def _prepare(self) -> None:
        self._user_norms = _row_norms(self.user_items_)
        self._item_users = self.user_items_.T.tocsr()
        self._item_norms = _row_norms(self._item_users)

    def _block_width(self) -> int:
        return max(self.n_items_, self.user_items_.shape[0])

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        n_train = self.user_items_.shape[0]
        dots = np.asarray((rows @ self._item_users).toarray())
        sims = _shrunk_cosine(dots, _row_norms(rows), self._user_norms, self.shrinkage)
        # distinct negative fillers rather than one constant keep argpartition fast (no mass ties)
        filler = -(1.0 + np.arange(n_train, dtype=np.float32)) / n_train
        np.copyto(sims, np.broadcast_to(filler, sims.shape), where=sims <= 0)
        neighbours, weights = top_k(sims, min(self.k, n_train))
        found = weights > 0
        owners = np.broadcast_to(np.arange(rows.shape[0])[:, None], found.shape)[found]
        votes = sp.csr_matrix((weights[found], (owners, neighbours[found])), shape=(rows.shape[0], n_train))
        return np.asarray((votes @ self.user_items_).toarray(), dtype=np.float32)

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        dots = np.asarray((self._item_users[item_ids] @ self.user_items_).toarray())
        return _shrunk_cosine(dots, self._item_norms[item_ids], self._item_norms, self.shrinkage)

    def _state(self) -> dict[str, np.ndarray]:
        return pack_csr("user_items_", self.user_items_)

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.user_items_ = unpack_csr("user_items_", arrays)
        self._prepare()
