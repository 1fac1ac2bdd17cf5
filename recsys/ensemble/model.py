"""The ensemble as one recommender: fitted members, a combiner, and the candidate step between.

:class:`EnsembleRecommender` answers the same batch ``recommend`` as every family: for each block
of history rows it scores every item with every member (seen, denied and non-allowed items at
``-inf``), takes the union of the members' top ``top_n`` as candidates
(:func:`~recsys.ensemble.candidates.build_candidates`), scores them with the combiner (a
:class:`~recsys.ensemble.blending.Blender` or :class:`~recsys.ensemble.stacking.Stacker`) and
returns the best ``k``. History rows are in the space the members were fitted in: with a
:class:`~recsys.ensemble.signals.SignalConfig`, rows built by the same signals (``signals`` says
which).

Saved as a directory: ``ensemble.json`` (members, combiner state, settings), ``arrays.npz`` (item
popularity) and ``members/<name>/`` (each member's own artifact). Nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.ensemble.blending import Blender
from recsys.ensemble.candidates import CandidateBatch, build_candidates, top_k_candidates
from recsys.ensemble.signals import SignalConfig
from recsys.ensemble.stacking import Stacker
from recsys.errors import ArtifactError, ConfigError, DataError

__all__ = ["FORMAT_VERSION", "EnsembleRecommender", "combiner_from_state"]

FORMAT_VERSION = 1
_JSON, _ARRAYS, _KIND = "ensemble.json", "arrays.npz", "wayfinder.ensemble"
_CELLS = 1 << 21
"""Score cells per member and block: bounds the memory of the candidate step."""

Combiner = Blender | Stacker


def combiner_from_state(state: Mapping[str, Any]) -> Combiner:
    """Rebuild a fitted combiner from its ``to_state()`` dict."""
    kinds: dict[str, Any] = {Blender.kind: Blender, Stacker.kind: Stacker}
    if state.get("kind") not in kinds:
        raise ArtifactError(f"unknown combiner kind {state.get('kind')!r}; known: {sorted(kinds)}")
    return kinds[str(state["kind"])].from_state(dict(state))


def _as_rows(user_rows: Any, n_items: int) -> sp.csr_matrix:
    rows = sp.csr_matrix(user_rows, dtype=np.float32)
    if rows.shape[1] != n_items:
        raise DataError(f"history rows have {rows.shape[1]} item columns, the ensemble {n_items}")
    return rows


class EnsembleRecommender:
    """Several fitted families re-ranked by a combiner (see the module docstring).

    Parameters
    ----------
    members : dict of str to fitted model
        Member name (its family) -> a fitted model with ``score``; all on the same items.
    item_popularity : ndarray, shape (n_items,)
        Users per item in the fitting data (a candidate feature).
    combiner : Blender or Stacker, optional
        Fitted combiner; without one the ensemble only builds candidates (:meth:`candidates`).
    top_n : int
        Items taken from each member's list.
    signals : SignalConfig, optional
        How history rows were built for the members (recorded for whoever builds rows).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from recsys.models import build
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype="float32")
    >>> members = {"ease": build("ease", l2=1.0).fit(X), "popularity": build("popularity").fit(X)}
    >>> blender = Blender.from_state({"kind": "blending", "weights": {"ease": 1.0, "popularity": 0.0}})
    >>> model = EnsembleRecommender(members=members, item_popularity=[2, 3, 1], combiner=blender)
    >>> model.recommend(sp.csr_matrix([[1, 0, 0]], dtype="float32"), k=1)[0].tolist()
    [[1]]
    """

    family = "ensemble"

    def __init__(
        self,
        *,
        members: Mapping[str, Any],
        item_popularity: Any,
        combiner: Combiner | None = None,
        top_n: int = 50,
        signals: SignalConfig | None = None,
    ) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        self.members = dict(members)
        self.item_popularity = np.asarray(item_popularity, dtype=np.float64)
        self.combiner = combiner
        self.top_n = int(top_n)
        self.signals = signals
        self.n_items_ = int(self.item_popularity.size)

    def with_combiner(self, combiner: Combiner) -> EnsembleRecommender:
        """The same members with another combiner."""
        return EnsembleRecommender(
            members=self.members,
            item_popularity=self.item_popularity,
            combiner=combiner,
            top_n=self.top_n,
            signals=self.signals,
        )

    def _banned(self, allow: Any, deny: Any) -> np.ndarray:
        banned = np.zeros(self.n_items_, dtype=bool)
        if allow is not None:
            banned[:] = True
            banned[np.asarray(allow, dtype=np.int64)] = False
        if deny is not None:
            banned[np.asarray(deny, dtype=np.int64)] = True
        return banned

    def _block(self, rows: sp.csr_matrix, filter_seen: bool, banned: np.ndarray) -> CandidateBatch:
        owners = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        scores = {}
        for name, member in self.members.items():
            block = np.array(member.score(rows), dtype=np.float64)
            if filter_seen:
                block[owners, rows.indices] = -np.inf
            block[:, banned] = -np.inf
            scores[name] = block
        return build_candidates(scores, rows, np.log1p(self.item_popularity), top_n=self.top_n)

    def candidates(
        self, user_rows: Any, *, filter_seen: bool = True, allow: Any = None, deny: Any = None
    ) -> CandidateBatch:
        """Candidate features of every history row (processed in bounded blocks)."""
        rows = _as_rows(user_rows, self.n_items_)
        banned = self._banned(allow, deny)
        step = max(1, _CELLS // max(self.n_items_, 1))
        blocks = [
            self._block(rows[start : start + step], filter_seen, banned)
            for start in range(0, max(rows.shape[0], 1), step)
        ]
        return CandidateBatch.concat(blocks)

    def recommend(
        self,
        user_rows: sp.csr_matrix,
        k: int = 10,
        *,
        filter_seen: bool = True,
        allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids and combiner scores per history row, ``-1`` / ``-inf`` padded."""
        if self.combiner is None:
            raise ConfigError("this ensemble has no combiner yet; use with_combiner(fitted combiner)")
        if k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        batch = self.candidates(user_rows, filter_seen=filter_seen, allow=allow, deny=deny)
        return top_k_candidates(batch, self.combiner.decision(batch), k)

    def anchor(self) -> str:
        """The member with the largest weight (blending) or first member (stacking)."""
        if isinstance(self.combiner, Blender):
            weights = self.combiner.weights_
            return max(weights, key=lambda m: weights[m])
        return next(iter(self.members))

    def similar_items(self, item_ids: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The anchor member's similar items."""
        ids, scores = self.members[self.anchor()].similar_items(item_ids, k)
        return np.asarray(ids), np.asarray(scores)

    def save(self, path: str | Path) -> None:
        """Write the ensemble (members through their own ``save``) to directory ``path``."""
        if self.combiner is None:
            raise ConfigError("save an ensemble after giving it a combiner")
        directory = Path(path)
        for name, member in self.members.items():
            member.save(directory / "members" / name)
        with open(directory / _ARRAYS, "wb") as handle:
            np.savez(handle, item_popularity=self.item_popularity)
        document = {
            "kind": _KIND,
            "format_version": FORMAT_VERSION,
            "members": list(self.members),
            "combiner": self.combiner.to_state(),
            "top_n": self.top_n,
            "signals": self.signals.model_dump() if self.signals is not None else None,
        }
        (directory / _JSON).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> EnsembleRecommender:
        """Read an ensemble written by :meth:`save`; its recommendations are identical."""
        from recsys.models import load

        directory = Path(path)
        try:
            document = json.loads((directory / _JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"no readable {_JSON} in {directory}: {exc}") from exc
        if document.get("kind") != _KIND:
            raise ArtifactError(f"{directory / _JSON} is not a Wayfinder ensemble")
        if document.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{directory / _JSON} has format_version {document.get('format_version')!r}; this code "
                f"reads version {FORMAT_VERSION}: retrain with `wayfinder tune`"
            )
        try:
            with np.load(directory / _ARRAYS, allow_pickle=False) as arrays:
                popularity = arrays["item_popularity"]
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"arrays of ensemble {directory} are missing or corrupt: {exc}") from exc
        members = {name: load(directory / "members" / name) for name in document["members"]}
        signals = document.get("signals")
        return cls(
            members=members,
            item_popularity=popularity,
            combiner=combiner_from_state(document["combiner"]),
            top_n=int(document["top_n"]),
            signals=SignalConfig.model_validate(signals) if signals is not None else None,
        )
