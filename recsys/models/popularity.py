"""Popularity: the non-personalised baseline and cold-start fallback.

Recency-windowed popularity is not a separate model: it is :class:`PopularityRecommender` fitted on
a matrix restricted to the recent window, built with :func:`windowed_interactions`. Time-decayed
popularity likewise comes from fitting on confidences that the upstream weighting already decayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.models._common import RecommenderBase, as_csr

_MODES = ("count", "weight")


class PopularityRecommender(RecommenderBase):
    """Recommend the globally most popular items to everyone.

    Parameters
    ----------
    mode : {"count", "weight"}
        ``"count"``: number of users with a positive confidence on the item; ``"weight"``: sum of
        the positive confidences. Negative entries (dislikes) never add popularity.

    Attributes
    ----------
    popularity_ : ndarray of shape (n_items,)
        float32 popularity of each item; it is also the score of every user.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]], dtype="float32")
    >>> model = PopularityRecommender().fit(X)
    >>> ids, scores = model.recommend(sp.csr_matrix((1, 3), dtype="float32"), k=2)
    >>> ids.tolist(), scores.tolist()
    ([[2, 0]], [[2.0, 1.0]])
    """

    family = "popularity"

    def __init__(self, *, mode: str = "count") -> None:
        self.mode = mode

    def fit(
        self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None
    ) -> PopularityRecommender:
        """Count positive interactions per item; ``item_features`` is ignored."""
        if self.mode not in _MODES:
            raise ConfigError(f"PopularityRecommender mode must be one of {_MODES}, got {self.mode!r}")
        matrix = as_csr(interactions, name="interactions")
        positive = matrix.data > 0
        weights = None if self.mode == "count" else matrix.data[positive]
        counts = np.bincount(matrix.indices[positive], weights=weights, minlength=matrix.shape[1])
        self.popularity_ = counts.astype(np.float32)
        self.n_items_ = int(matrix.shape[1])
        return self

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (rows.shape[0], self.n_items_))

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (item_ids.size, self.n_items_))

    def _state(self) -> dict[str, np.ndarray]:
        return {"popularity_": self.popularity_}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.popularity_ = arrays["popularity_"].astype(np.float32)


def _seconds(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if np.issubdtype(array.dtype, np.datetime64):
        return array.astype("datetime64[ms]").astype(np.int64) / 1000.0
    return array.astype(np.float64)


def windowed_interactions(
    user_rows: np.ndarray,
    item_cols: np.ndarray,
    confidences: np.ndarray,
    timestamps: np.ndarray,
    *,
    now: Any,
    window_days: float,
    shape: tuple[int, int],
) -> sp.csr_matrix:
    """Users x items confidence matrix of the events in the window ``(now - window_days, now]``.

    Fit a :class:`PopularityRecommender` on it to get recency-windowed popularity ("trending").

    Parameters
    ----------
    user_rows, item_cols, confidences, timestamps : array-like of shape (n_events,)
        One entry per event: matrix row, matrix column, signed confidence and time (``datetime64``
        or epoch seconds). Repeated (user, item) pairs are summed.
    now : datetime64 or float
        End of the window, in the same unit as ``timestamps``.
    window_days : float
        Window length in days; must be positive.
    shape : (n_users, n_items)
        Shape of the result (the training index).

    Examples
    --------
    >>> import numpy as np
    >>> X = windowed_interactions(
    ...     np.array([0, 1]), np.array([0, 1]), np.array([1.0, 1.0]),
    ...     np.array([0.0, 9 * 86400.0]), now=10 * 86400.0, window_days=7, shape=(2, 2))
    >>> X.toarray().tolist()
    [[0.0, 0.0], [0.0, 1.0]]
    """
    if not window_days > 0:
        raise ConfigError(f"window_days must be positive, got {window_days!r}")
    times = _seconds(timestamps)
    sizes = {len(user_rows), len(item_cols), len(confidences), len(times)}
    if len(sizes) != 1:
        raise DataError("user_rows, item_cols, confidences and timestamps must have the same length")
    end = float(_seconds(now))
    keep = (times > end - window_days * 86400.0) & (times <= end)
    values = np.asarray(confidences, dtype=np.float32)[keep]
    coordinates = (np.asarray(user_rows)[keep], np.asarray(item_cols)[keep])
    matrix = sp.csr_matrix((values, coordinates), shape=shape)
    matrix.sum_duplicates()
    return matrix
