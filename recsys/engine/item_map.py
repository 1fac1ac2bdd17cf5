"""A 2-D map of item space: principal components of the unit item vectors, and users placed on it.

The map is what the demo page draws: a sample of items as dots, and the user's profile (the
share-weighted mean of their interest directions, which :meth:`UserState.mixture` scales to unit
length for ranking) as a marker that moves as they send events. Items and interests live in the
same cosine space and are projected with the same two principal axes (an affine map), so a user who
likes one item lands on it, and one who likes several lands among them.

The projection is fitted once (per serving replica) and kept: items added later are projected
with it too, so the map does not jump when the catalogue grows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import UserState
from recsys.errors import DataError


@dataclass(frozen=True)
class PlanarProjection:
    """Two principal axes of a set of vectors (PCA), for drawing them on a plane.

    Attributes
    ----------
    mean : ndarray of shape (d,)
        The mean of the fitted rows, subtracted before projecting.
    components : ndarray of shape (2, d)
        The two unit principal axes; each one's largest-magnitude coordinate is positive, so a
        refit on the same data gives the same picture.
    explained : tuple of two floats
        Share of the total variance along each axis.

    Examples
    --------
    >>> import numpy as np
    >>> rows = np.array([[2.0, 0, 0], [-2.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    >>> pca = PlanarProjection.fit(rows)
    >>> pca.project(rows).round(3).tolist()
    [[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    >>> [round(x, 2) for x in pca.explained]
    [0.8, 0.2]
    """

    mean: np.ndarray
    components: np.ndarray
    explained: tuple[float, float]

    @classmethod
    def fit(cls, vectors: np.ndarray) -> PlanarProjection:
        """Fit on the non-zero rows of ``vectors`` (rows of items without a vector are skipped)."""
        matrix = np.asarray(vectors, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise DataError(f"vectors must be an (n, d) matrix with d >= 1, got shape {matrix.shape}")
        rows = matrix[np.abs(matrix).sum(axis=1) > 0]
        d = matrix.shape[1]
        if rows.shape[0] == 0:
            return cls(np.zeros(d), np.eye(2, d), (0.0, 0.0))
        mean = rows.mean(axis=0)
        _, singular, axes = np.linalg.svd(rows - mean, full_matrices=False)
        components = np.zeros((2, d))
        k = min(2, axes.shape[0])
        components[:k] = axes[:k]
        for axis in components[:k]:
            if axis[np.argmax(np.abs(axis))] < 0:
                axis *= -1.0
        variance = singular**2
        total = float(variance.sum())
        shares = [float(v / total) if total > 0 else 0.0 for v in variance[:2]]
        shares += [0.0] * (2 - len(shares))
        return cls(mean, components, (shares[0], shares[1]))

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """``(n, 2)`` coordinates of the rows of ``vectors`` (a single vector gives ``(1, 2)``)."""
        matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        if matrix.shape[1] != self.mean.shape[0]:
            raise DataError(
                f"vectors have dimension {matrix.shape[1]}, the map was fitted on {self.mean.shape[0]}"
            )
        return np.asarray((matrix - self.mean) @ self.components.T)


def map_sample(popularity: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the items to draw: all of them, or the ``max_points`` most popular (the ones
    users meet first), most popular first; ties keep index order."""
    counts = np.asarray(popularity, dtype=np.float64)
    if max_points < 1:
        raise DataError(f"max_points must be at least 1, got {max_points}")
    order = np.argsort(-counts, kind="stable")
    return order[:max_points]


def primary_categories(space: EmbeddingSpace, items: np.ndarray) -> list[str]:
    """The category each item is coloured by on the map: its most specific one (the label fewest
    items of the catalogue carry; ties by name), or ``""`` without any.

    Labels such as MovieLens genres come alphabetically, so "first" would paint most of the map
    "Action" or "Adventure"; the rarest label tells items apart (Toy Story is "Animation").
    """
    meta = space.metadata
    if meta is None or meta.categories is None:
        return [""] * len(items)
    counts = Counter(label for labels in meta.categories for label in labels)
    out = []
    for item in np.asarray(items).tolist():
        labels = meta.categories[item] if 0 <= item < meta.n_items else ()
        out.append(min(labels, key=lambda label: (counts[label], label)) if labels else "")
    return out


def user_map(
    space: EmbeddingSpace, state: UserState, projection: PlanarProjection, item_id: Any
) -> dict[str, Any]:
    """Where the user is on the map: their profile, each interest and their recent signals.

    ``position`` is the share-weighted mean of the user's interest directions: the ranker's
    profile direction (:meth:`UserState.mixture`) before it is scaled to unit length. Unscaled, it
    projects to the weighted centre of the interests' own points, so the marker sits among the
    items that shaped it. ``None`` until an event gave the user an interest (a dislike alone does
    not). ``item_id`` maps an item index to its external id.
    """
    position = None
    if state.interests:
        shares = state.shares()
        centre = sum(s * i.direction for s, i in zip(shares, state.interests, strict=True))
        if float(shares.sum()) > 0:
            x, y = projection.project(centre)[0]
            position = {"x": round(float(x), 5), "y": round(float(y), 5)}
    interests = []
    for share, interest in zip(state.shares(), state.interests, strict=True):
        direction = interest.direction
        if not np.any(direction):
            continue
        x, y = projection.project(direction)[0]
        interests.append({"x": round(float(x), 5), "y": round(float(y), 5), "share": round(float(share), 4)})
    signals = []
    for signal in state.recent[-20:]:
        if not 0 <= signal.item < space.n_items:
            continue
        x, y = projection.project(space.unit[signal.item])[0]
        signals.append(
            {
                "item_id": item_id(signal.item),
                "event_type": signal.event_type,
                "weight": round(float(signal.weight), 4),
                "x": round(float(x), 5),
                "y": round(float(y), 5),
            }
        )
    return {
        "user_id": state.user_id,
        "n_signals": state.n_signals,
        "position": position,
        "interests": interests,
        "signals": signals,
    }
