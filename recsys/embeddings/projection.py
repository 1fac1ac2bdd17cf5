"""Content features -> embedding space: how a brand-new item with only content gets a vector.

A ridge regression from the item feature matrix (``features/item_matrix.npz`` from preprocessing,
CSR, row = item index) to the item embeddings, fitted once on the items that have a learned
vector::

    W, w0 = argmin ||F W^T + w0 - Y||^2 + alpha ||W||^2     (intercept not penalised)
    y_new = f_new W^T + w0

Items whose learned vector is all zeros (never seen in training) are left out of the fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import Ridge

from recsys.errors import ConfigError, DataError


def load_item_features(path: str | Path) -> sp.csr_matrix:
    """Read a preprocessing ``item_matrix.npz`` as a float32 CSR matrix (row = item index)."""
    return sp.csr_matrix(sp.load_npz(Path(path)), dtype=np.float32)


@dataclass(frozen=True, eq=False)
class ContentProjection:
    """A fitted linear map from content feature rows to item embeddings.

    Attributes
    ----------
    coef : ndarray of shape (d, n_features)
    intercept : ndarray of shape (d,)

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> F = sp.csr_matrix(np.eye(4, dtype="float32"))
    >>> Y = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype="float32")
    >>> proj = ContentProjection.fit(F, Y, alpha=0.1)
    >>> new = proj.project(sp.csr_matrix([[1, 1, 0, 0]], dtype="float32"))
    >>> int(np.argmax(new[0]))  # content like items 0 and 1 -> their direction
    0
    """

    coef: np.ndarray
    intercept: np.ndarray

    @property
    def n_features(self) -> int:
        """Width of the content feature rows this projection takes."""
        return int(self.coef.shape[1])

    @classmethod
    def fit(
        cls, item_features: sp.spmatrix, item_vectors: np.ndarray, *, alpha: float = 1.0
    ) -> ContentProjection:
        """Fit the ridge regression on the items that have a non-zero learned vector."""
        if not alpha > 0:
            raise ConfigError(f"ContentProjection alpha must be positive, got {alpha!r}")
        features = sp.csr_matrix(item_features, dtype=np.float64)
        vectors = np.asarray(item_vectors, dtype=np.float64)
        if features.shape[0] != vectors.shape[0]:
            raise DataError(
                f"item feature matrix has {features.shape[0]} rows but there are {vectors.shape[0]} item "
                "vectors; use the item_matrix.npz of the same preprocessing run as the model"
            )
        trained = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)
        if trained.size < 2:
            raise DataError("ContentProjection needs at least two items with learned vectors")
        model = Ridge(alpha=alpha, fit_intercept=True, solver="auto").fit(features[trained], vectors[trained])
        coef = np.atleast_2d(model.coef_).astype(np.float32)
        return cls(coef=coef, intercept=np.atleast_1d(model.intercept_).astype(np.float32))

    def project(self, features: sp.spmatrix | np.ndarray) -> np.ndarray:
        """``(n, d)`` float32 vectors for content feature rows ``(n, n_features)``."""
        matrix = sp.csr_matrix(features, dtype=np.float32)
        if matrix.shape[1] != self.n_features:
            raise DataError(
                f"content rows have {matrix.shape[1]} features but the projection was fitted on "
                f"{self.n_features}; featurize new items with the saved ItemFeaturizer"
            )
        return np.asarray(matrix @ self.coef.T + self.intercept, dtype=np.float32)

    def to_arrays(self, prefix: str = "projection") -> dict[str, np.ndarray]:
        """Plain arrays for an ``.npz`` artifact."""
        return {f"{prefix}.coef": self.coef, f"{prefix}.intercept": self.intercept}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "projection") -> ContentProjection:
        """Inverse of :meth:`to_arrays`."""
        return cls(
            coef=np.asarray(arrays[f"{prefix}.coef"]), intercept=np.asarray(arrays[f"{prefix}.intercept"])
        )
