r"""The exact ALS fold-in, maintained per event in O(d^2) by Sherman-Morrison updates.

ALS (``implicit``'s convention) gives a user with per-item confidences ``c_i`` (``alpha`` times the
summed event weights; negative = dislike) the vector::

    x = A^-1 b,   A = Y^T Y + reg I + sum_i (|c_i| - 1) y_i y_i^T,   b = sum_{c_i > 0} c_i y_i

An event on item ``i`` changes ``c_i``, hence ``A`` by ``delta y_i y_i^T`` with
``delta = t(c_new) - t(c_old)``, ``t(c) = |c| - 1`` (0 for an absent item), and ``b`` by
``(max(c_new, 0) - max(c_old, 0)) y_i``. ``A^-1`` follows by Sherman-Morrison::

    A'^-1 = A^-1 - delta (A^-1 y)(A^-1 y)^T / (1 + delta y^T A^-1 y)

``A^-1`` and ``b`` are a per-user cache keyed by the space's fingerprint, rebuilt exactly from the
stored confidences when missing (after loading a state, or when the space changed) and every
``refresh_every`` updates (bounding floating-point drift). The cached arrays are read-only and
each update replaces them, so a state's copy (``UserState.copy``) shares the cache safely.
"""

from __future__ import annotations

import numpy as np

from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import UserState


def _term(confidence: float) -> float:
    return abs(confidence) - 1.0 if confidence != 0.0 else 0.0


def rebuild(state: UserState, space: EmbeddingSpace) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``A^-1`` and ``b`` from the stored confidences (O(h d^2 + d^3))."""
    items = np.fromiter(state.ls_confidence.keys(), dtype=np.int64, count=len(state.ls_confidence))
    conf = np.fromiter(state.ls_confidence.values(), dtype=np.float64, count=len(state.ls_confidence))
    vectors = space.vectors[items].astype(np.float64)
    system = space.gram + space.regularization * np.eye(space.dim)  # type: ignore[operator]
    if items.size:
        terms = np.array([_term(c) for c in conf])
        system += (vectors * terms[:, None]).T @ vectors
    rhs = vectors.T @ np.maximum(conf, 0.0) if items.size else np.zeros(space.dim)
    inverse = np.linalg.inv(system) if items.size else space.base_inverse().copy()
    _keep(state, space, inverse, rhs, 0)
    return inverse, rhs


def _keep(
    state: UserState, space: EmbeddingSpace, inverse: np.ndarray, rhs: np.ndarray, updates: int
) -> None:
    inverse.setflags(write=False)
    rhs.setflags(write=False)
    state._cache["ls"] = (space.fingerprint, inverse, rhs, updates)


def add_confidence(
    state: UserState, space: EmbeddingSpace, item: int, delta: float, refresh_every: int
) -> None:
    """Add ``delta`` (already times ``alpha``) to item ``item``'s confidence; update ``ls_vector``."""
    cached = state._cache.get("ls")
    if cached is None or cached[0] != space.fingerprint or cached[3] >= refresh_every:
        inverse, rhs = rebuild(state, space)
        updates = 0
    else:
        _, inverse, rhs, updates = cached
    old = state.ls_confidence.get(item, 0.0)
    new = old + delta
    if new == 0.0:
        state.ls_confidence.pop(item, None)
    else:
        state.ls_confidence[item] = new
    y = space.vectors[item].astype(np.float64)
    step = _term(new) - _term(old)
    if step != 0.0:
        projected = inverse @ y
        denominator = 1.0 + step * float(y @ projected)
        if denominator <= 1e-9:
            inverse, rhs = rebuild(state, space)
            updates = 0
        else:
            inverse = inverse - (step / denominator) * np.outer(projected, projected)
            rhs = rhs + (max(new, 0.0) - max(old, 0.0)) * y
    else:
        rhs = rhs + (max(new, 0.0) - max(old, 0.0)) * y
    _keep(state, space, inverse, rhs, updates + 1)
    state.ls_vector = (inverse @ rhs).astype(np.float32)
