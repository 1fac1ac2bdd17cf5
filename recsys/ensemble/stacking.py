"""Stacking: a logistic-regression meta-learner that re-ranks the members' candidates.

The meta-learner sees one row per (user, candidate item) with the candidate features of
:mod:`recsys.ensemble.candidates` (every member's standardised score and log rank, item
popularity, user activity), standardised, and learns on **validation** candidates (members fitted
on train, labels = validation items). Two objectives:

* ``pointwise``: logistic regression of "is a validation item" on the features;
* ``pairwise``: RankNet with a linear scorer: logistic regression on feature differences of
  (positive, negative) pairs drawn within each user's candidates, ``pairs_per_positive`` negatives
  per positive, so only the order inside a user's list is learned.

The learned state is a handful of numbers (means, scales, coefficients), saved as JSON: no pickle.
On ml-latest-small gradient-boosted trees (pointwise) scored below the best single member: their
piecewise-constant outputs tie many candidates, and 7k validation positives are few for them.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> from recsys.ensemble.candidates import CandidateBatch
>>> batch = CandidateBatch(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]),
...     np.array([[2, 0], [0, 1], [0, 1], [2, 0]], dtype="float32"), ("a:z", "a:log_rank"), 2)
>>> stacker = Stacker().fit(batch, sp.csr_matrix(np.eye(2)))
>>> stacker.coefficients()["a:z"] > 0 > stacker.coefficients()["a:log_rank"]
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from recsys.ensemble.candidates import CandidateBatch, candidate_labels
from recsys.errors import ArtifactError, ConfigError, DataError

__all__ = ["OBJECTIVES", "Stacker"]

OBJECTIVES: tuple[str, ...] = ("pointwise", "pairwise")


class Stacker:
    """Linear meta-learner over candidate features (see the module docstring).

    Parameters
    ----------
    objective : {"pointwise", "pairwise"}
    C : float
        Inverse L2 strength of the logistic regression.
    pairs_per_positive : int
        Negatives drawn per positive for the pairwise objective.
    random_state : int
        Seed of the pair sampling.

    Attributes
    ----------
    names_ : tuple of str
        Feature names, in column order.
    mean_, scale_ : ndarray
        Standardisation of each feature.
    coef_ : ndarray
        Weight of each standardised feature; the decision is ``((x - mean_) / scale_) @ coef_``.
    """

    kind = "stacking"

    def __init__(
        self,
        *,
        objective: str = "pointwise",
        C: float = 1.0,
        pairs_per_positive: int = 20,
        random_state: int = 0,
    ) -> None:
        self.objective = objective
        self.C = C
        self.pairs_per_positive = pairs_per_positive
        self.random_state = random_state

    def _pairs(self, batch: CandidateBatch, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.random_state)
        winners, losers = [], []
        starts = np.searchsorted(batch.rows, np.arange(batch.n_rows + 1))
        for row in range(batch.n_rows):
            span = np.arange(starts[row], starts[row + 1])
            positive, negative = span[labels[span]], span[~labels[span]]
            if positive.size == 0 or negative.size == 0:
                continue
            size = min(self.pairs_per_positive, negative.size)
            for index in positive:
                winners.append(np.full(size, index))
                losers.append(rng.choice(negative, size=size, replace=False))
        if not winners:
            raise DataError("no user has both a positive and a negative candidate; nothing to learn from")
        return np.concatenate(winners), np.concatenate(losers)

    def fit(self, batch: CandidateBatch, truth: sp.csr_matrix) -> Stacker:
        """Learn from validation candidates and their truth rows; return ``self``."""
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"stacking objective must be one of {OBJECTIVES}, got {self.objective!r}")
        labels = candidate_labels(batch, truth)
        if labels.all() or not labels.any():
            raise DataError("stacking needs candidates with and without a truth item")
        x = batch.features.astype(np.float64)
        self.names_ = tuple(batch.names)
        self.mean_ = x.mean(axis=0)
        spread = x.std(axis=0)
        self.scale_ = np.where(spread > 0, spread, 1.0)
        z = (x - self.mean_) / self.scale_
        if self.objective == "pointwise":
            model = LogisticRegression(C=self.C, max_iter=2000).fit(z, labels)
        else:
            winners, losers = self._pairs(batch, labels)
            diff = z[winners] - z[losers]
            both = np.vstack([diff, -diff])
            target = np.r_[np.ones(len(diff)), np.zeros(len(diff))]
            model = LogisticRegression(C=self.C, max_iter=2000, fit_intercept=False).fit(both, target)
        self.coef_ = model.coef_.ravel().astype(np.float64)
        return self

    def decision(self, batch: CandidateBatch) -> np.ndarray:
        """Meta-learner score of every candidate (higher ranks first)."""
        if tuple(batch.names) != self.names_:
            raise ConfigError(f"candidate features {batch.names} differ from the fitted ones {self.names_}")
        return ((batch.features.astype(np.float64) - self.mean_) / self.scale_) @ self.coef_

    def coefficients(self) -> dict[str, float]:
        """Feature name -> weight of the standardised feature."""
        return dict(zip(self.names_, self.coef_.tolist(), strict=True))

    def to_state(self) -> dict[str, Any]:
        """JSON-ready fitted state (:meth:`from_state` reads it back)."""
        return {
            "kind": self.kind,
            "objective": self.objective,
            "C": self.C,
            "names": list(self.names_),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Stacker:
        """Rebuild a fitted stacker from :meth:`to_state`."""
        try:
            stacker = cls(objective=str(state["objective"]), C=float(state["C"]))
            stacker.names_ = tuple(str(n) for n in state["names"])
            stacker.mean_, stacker.scale_, stacker.coef_ = (
                np.asarray(state[key], dtype=np.float64) for key in ("mean", "scale", "coef")
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"not a stacking state: {exc!r}") from exc
        if state.get("kind") != cls.kind or not (
            len(stacker.names_) == stacker.mean_.size == stacker.scale_.size == stacker.coef_.size
        ):
            raise ArtifactError(
                "stacking state is inconsistent: names, means, scales and weights differ in length"
            )
        return stacker
