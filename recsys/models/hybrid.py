"""Hybrids built from other families through the registry: weighted blends and switching.

A member is described by a dict of constructor parameters plus a ``"family"`` key (defaulting to the
member's name), e.g. ``{"ease": {"l2": 300}, "cb": {"family": "content", "n_components": 64}}``; the
whole hybrid is therefore a plain dict too and can be rebuilt by Ray Tune or loaded from JSON.
Members are saved in ``members/<name>/`` inside the hybrid's artifact directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from recsys.errors import ArtifactError, ConfigError
from recsys.models._common import RecommenderBase, as_csr

_NORMALIZATIONS = ("minmax", "zscore", "rank")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def normalize_rows(scores: np.ndarray, method: str) -> np.ndarray:
    """Per-row score normalisation: ``minmax`` to [0, 1], ``zscore``, or ``rank`` to [0, 1].

    Constant rows (e.g. an empty history) become all zeros.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if method == "rank":
        width = max(scores.shape[1] - 1, 1)
        return ((rankdata(scores, method="average", axis=1) - 1.0) / width).astype(np.float32)
    if method == "minmax":
        low = scores.min(axis=1, keepdims=True)
        spread = scores.max(axis=1, keepdims=True) - low
        shifted = scores - low
    else:
        spread = scores.std(axis=1, keepdims=True)
        shifted = scores - scores.mean(axis=1, keepdims=True)
    out = np.zeros_like(shifted)
    np.divide(shifted, spread, out=out, where=spread > 0)
    return out.astype(np.float32)


def _member_spec(name: str, spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if not _SAFE_NAME.match(name):
        raise ConfigError(f"hybrid member name {name!r} must match {_SAFE_NAME.pattern}")
    params = dict(spec)
    return str(params.pop("family", name)), params


def _fit_members(
    specs: Mapping[str, Mapping[str, Any]], interactions: sp.csr_matrix, item_features: sp.csr_matrix | None
) -> dict[str, Any]:
    from recsys.models import build

    members = {}
    for name, spec in specs.items():
        family, params = _member_spec(name, spec)
        members[name] = build(family, **params).fit(interactions, item_features)
    return members


def _load_members(path: Path, specs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    from recsys.models import load

    members = {}
    for name, spec in specs.items():
        family, _ = _member_spec(name, spec)
        member = load(path / "members" / name)
        if getattr(member, "family", None) != family:
            raise ArtifactError(f"member {name!r} under {path} is not a {family!r} model")
        members[name] = member
    return members


class WeightedHybrid(RecommenderBase):
    """Weighted sum of the members' per-user normalised scores.

    Parameters
    ----------
    members : dict of str to dict
        Member name -> constructor parameters, with an optional ``"family"`` key (default: the name).
    weights : dict of str to float or None
        Weight of each member; ``None`` gives every member weight 1.
    normalize : {"minmax", "zscore", "rank"}
        Per-user normalisation applied to each member's scores before weighting.

    Attributes
    ----------
    members_ : dict of str to Recommender
        The fitted members.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype="float32")
    >>> hybrid = WeightedHybrid(members={"ease": {"l2": 1.0}, "popularity": {}},
    ...                         weights={"ease": 0.8, "popularity": 0.2}).fit(X)
    >>> hybrid.recommend(sp.csr_matrix([[1, 0, 0]], dtype="float32"), k=1)[0].tolist()
    [[1]]
    """

    family = "weighted_hybrid"

    def __init__(
        self,
        *,
        members: Mapping[str, Mapping[str, Any]] | None = None,
        weights: Mapping[str, float] | None = None,
        normalize: str = "minmax",
    ) -> None:
        self.members = members
        self.weights = weights
        self.normalize = normalize

    def _weights(self) -> dict[str, float]:
        names = list(self.members or {})
        weights = dict(self.weights) if self.weights is not None else dict.fromkeys(names, 1.0)
        if set(weights) != set(names):
            raise ConfigError(f"weights must name exactly the members {sorted(names)}, got {sorted(weights)}")
        return {name: float(weights[name]) for name in names}

    def fit(self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None) -> WeightedHybrid:
        """Fit every member on the same data."""
        if not self.members:
            raise ConfigError("WeightedHybrid needs at least one member, e.g. members={'ease': {}}")
        if self.normalize not in _NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {_NORMALIZATIONS}, got {self.normalize!r}")
        self._weights()
        matrix = as_csr(interactions, name="interactions")
        self.members_ = _fit_members(self.members, matrix, item_features)
        self.n_items_ = int(matrix.shape[1])
        return self

    def _block_width(self) -> int:
        widths = [member._block_width() for member in self.members_.values()]
        return max(widths) * (len(widths) + 1)

    def _combine(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        weights = self._weights()
        total: np.ndarray | None = None
        for name, block in blocks.items():
            part = weights[name] * normalize_rows(block, self.normalize)
            total = part if total is None else total + part
        assert total is not None
        return total

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        return self._combine({name: member.score(rows) for name, member in self.members_.items()})

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        return self._combine(
            {name: member._similarity_block(item_ids) for name, member in self.members_.items()}
        )

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Write the hybrid and, under ``members/<name>/``, each member."""
        super().save(path)
        for name, member in self.members_.items():
            member.save(Path(path) / "members" / name)

    @classmethod
    def load(cls, path: str | Path) -> WeightedHybrid:
        """Read a hybrid written by :meth:`save`, members included."""
        model = super().load(path)
        model.members_ = _load_members(Path(path), model.members or {})
        return model


class SwitchingHybrid(RecommenderBase):
    """Use ``fallback`` for users with fewer than ``min_history`` positive interactions.

    Scores of a block therefore come from two models row by row; rankings within a row are what
    matter (normalise with a :class:`WeightedHybrid` first if scales must be comparable).

    Parameters
    ----------
    primary : dict or None
        Parameters (with ``"family"``) of the model for users with enough history; default EASE.
    fallback : dict or None
        Parameters of the cold-start model (content or popularity); default popularity.
    min_history : int
        Positive interactions a user needs before the primary model is used.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype="float32")
    >>> model = SwitchingHybrid(primary={"family": "ease", "l2": 1.0}, min_history=2).fit(X)
    >>> model.recommend(sp.csr_matrix((1, 3), dtype="float32"), k=1)[0].tolist()
    [[1]]
    """

    family = "switching_hybrid"

    def __init__(
        self,
        *,
        primary: Mapping[str, Any] | None = None,
        fallback: Mapping[str, Any] | None = None,
        min_history: int = 5,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.min_history = min_history

    def _specs(self) -> dict[str, Mapping[str, Any]]:
        primary = self.primary if self.primary is not None else {"family": "ease"}
        fallback = self.fallback if self.fallback is not None else {"family": "popularity"}
        return {"primary": primary, "fallback": fallback}

    def fit(self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None) -> SwitchingHybrid:
        """Fit both models on the same data."""
        matrix = as_csr(interactions, name="interactions")
        self.members_ = _fit_members(self._specs(), matrix, item_features)
        self.n_items_ = int(matrix.shape[1])
        return self

    def _block_width(self) -> int:
        return max(member._block_width() for member in self.members_.values())

    def uses_fallback(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """Boolean mask of the rows that the fallback model answers."""
        rows = as_csr(user_rows)
        owners = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        positives = np.bincount(owners[rows.data > 0], minlength=rows.shape[0])
        return np.asarray(positives < self.min_history)

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        cold = self.uses_fallback(rows)
        out = np.empty((rows.shape[0], self.n_items_), dtype=np.float32)
        if cold.any():
            out[cold] = self.members_["fallback"].score(rows[np.flatnonzero(cold)])
        if (~cold).any():
            out[~cold] = self.members_["primary"].score(rows[np.flatnonzero(~cold)])
        return out

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.members_["primary"]._similarity_block(item_ids))

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Write the hybrid and its two members under ``members/``."""
        super().save(path)
        for name, member in self.members_.items():
            member.save(Path(path) / "members" / name)

    @classmethod
    def load(cls, path: str | Path) -> SwitchingHybrid:
        """Read a hybrid written by :meth:`save`, members included."""
        model = super().load(path)
        model.members_ = _load_members(Path(path), model._specs())
        return model
