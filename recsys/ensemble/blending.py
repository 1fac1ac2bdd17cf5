"""Blending: a weighted sum of the members' standardised scores, weights tuned on validation.

:class:`Blender` starts from the best single member (weight 1) and runs coordinate ascent: for
each other member in turn it tries every weight of ``grid`` and keeps the one that raises
validation NDCG@k the most, for ``sweeps`` passes. Scores are standardised per user over the
unseen items (the ``m:z`` candidate features), so weights compare across families whose raw scores
live on different scales. Weights are reported normalised to sum 1.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> from recsys.ensemble.candidates import CandidateBatch
>>> truth = sp.csr_matrix(np.eye(2, 3))
>>> batch = CandidateBatch(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]),
...     np.array([[1, 0, -1, 0], [-1, 0, 1, 0], [-1, 0, 1, 0], [1, 0, -1, 0]], dtype="float32"),
...     ("good:z", "good:log_rank", "noise:z", "noise:log_rank"), 2)
>>> Blender().fit(batch, truth).weights_
{'good': 1.0, 'noise': 0.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.ensemble.candidates import CandidateBatch, ranking_metrics, top_k_candidates
from recsys.errors import ArtifactError, ConfigError

__all__ = ["DEFAULT_GRID", "Blender"]

DEFAULT_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def _members(names: Sequence[str]) -> list[str]:
    return [name[: -len(":z")] for name in names if name.endswith(":z")]


class Blender:
    """Weighted sum of standardised member scores (see the module docstring).

    Parameters
    ----------
    grid : sequence of float
        Weights tried for each non-anchor member.
    sweeps : int
        Passes of coordinate ascent.
    k : int
        Cut-off of the NDCG being maximised.

    Attributes
    ----------
    weights_ : dict of str to float
        Member -> weight, summing to 1.
    """

    kind = "blending"

    def __init__(self, *, grid: Sequence[float] = DEFAULT_GRID, sweeps: int = 2, k: int = 10) -> None:
        self.grid = tuple(grid)
        self.sweeps = sweeps
        self.k = k

    def _ndcg(self, batch: CandidateBatch, truth: sp.csr_matrix, weights: dict[str, float]) -> float:
        ids, _ = top_k_candidates(batch, self._combine(batch, weights), self.k)
        return ranking_metrics(ids, truth, self.k)[f"ndcg@{self.k}"]

    @staticmethod
    def _combine(batch: CandidateBatch, weights: dict[str, float]) -> np.ndarray:
        total = np.zeros(batch.rows.size)
        for member, weight in weights.items():
            if weight:
                total += weight * batch.column(f"{member}:z")
        return total

    def fit(self, batch: CandidateBatch, truth: sp.csr_matrix) -> Blender:
        """Tune the weights on a validation batch and its truth rows; return ``self``."""
        members = _members(batch.names)
        if not members:
            raise ConfigError("blending needs member score columns ('<member>:z') in the candidates")
        singles = {m: self._ndcg(batch, truth, {m: 1.0}) for m in members}
        anchor = max(members, key=lambda m: singles[m])
        weights = {m: 1.0 if m == anchor else 0.0 for m in members}
        best = singles[anchor]
        for _ in range(self.sweeps):
            for member in members:
                if member == anchor:
                    continue
                for value in self.grid:
                    trial = {**weights, member: float(value)}
                    score = self._ndcg(batch, truth, trial)
                    if score > best + 1e-9:
                        best, weights = score, trial
        total = sum(weights.values())
        self.weights_ = {m: w / total for m, w in weights.items()}
        self.valid_ndcg_ = best
        return self

    def decision(self, batch: CandidateBatch) -> np.ndarray:
        """Blended score of every candidate."""
        missing = [m for m in self.weights_ if f"{m}:z" not in batch.names]
        if missing:
            raise ConfigError(f"the candidates lack the blended members {missing}")
        return self._combine(batch, self.weights_)

    def to_state(self) -> dict[str, Any]:
        """JSON-ready fitted state (:meth:`from_state` reads it back)."""
        return {"kind": self.kind, "weights": dict(self.weights_), "k": self.k}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Blender:
        """Rebuild a fitted blender from :meth:`to_state`."""
        if state.get("kind") != cls.kind or not isinstance(state.get("weights"), dict):
            raise ArtifactError(f"not a blending state: {sorted(state)}")
        blender = cls(k=int(state.get("k", 10)))
        blender.weights_ = {str(m): float(w) for m, w in state["weights"].items()}
        return blender
