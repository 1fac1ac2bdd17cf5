r"""Item-item scorers: how much a recent signal on item ``i`` raises every other item.

A scorer holds an ``(n_items, n_items)`` matrix ``M`` (dense, or sparse after :meth:`pruned`) and
scores a user's recent signals as ``s = sum_j w_j 0.5 ** (age_j / half_life_events) M[i_j]``
(``age_j`` = signals since ``j``; only the last ``max_history`` signals). Three sources:

* :meth:`ItemItemScorer.from_model`: a fitted EASE (``B``) or item-kNN (similarity) champion,
  i.e. the "EASE fold-in = history x B" reference, here with recency weights.
* :meth:`ItemItemScorer.fit_next_items`: a sequence-aware linear model (SLIT, Choi et al.,
  SIGIR 2021): ridge regression from each training user's recency-weighted *past* (the
  ``past`` events before a position) to the *next* ``future`` events, over every position::

      M = argmin ||F - P M||^2 + l2 ||M||^2 = (P^T P + l2 I)^-1 P^T F

* :meth:`ItemItemScorer.fit_session_ease`: EASE fitted on windows of ``window`` consecutive
  events (stride ``stride``) of training histories instead of whole histories: items taken close
  together in time.

Memory while fitting is ``n_items^2`` float64 (like EASE): up to ~20-30k items; prune for serving.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys.embeddings.prior import history_positions
from recsys.embeddings.state import Signal
from recsys.errors import ArtifactError, ConfigError
from recsys.models.ease import ease_weights


def _ordered(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order, positions = history_positions(users, timestamps)
    return np.asarray(items, dtype=np.int64)[order], positions


@dataclass(frozen=True)
class SignalRows:
    """A user's recent signal items, their recency weights and their matrix rows.

    ``rows`` is a dense ``(h, n)`` block for a dense matrix; for a sparse one ``entries`` holds the
    rows' non-zeros as ``(row, column, value)`` arrays (gathered without scipy's per-call overhead).
    """

    sources: np.ndarray
    weights: np.ndarray
    rows: np.ndarray | None = None
    entries: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True, eq=False)
class ItemItemScorer:
    """A named item-item matrix with its blend weight and history recency.

    Examples
    --------
    >>> import numpy as np
    >>> from recsys.embeddings.state import Signal
    >>> scorer = ItemItemScorer("demo", np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype="float32"))
    >>> scorer.scores([Signal(0, 1.0, 0.0, 0, "like")], n_signals=1, n_items=3).tolist()
    [0.0, 1.0, 0.0]
    """

    name: str
    matrix: np.ndarray | sp.csr_matrix
    weight: float = 1.0
    half_life_events: float | None = 5.0
    max_history: int = 20

    @property
    def size(self) -> int:
        """Number of items the matrix covers (items added later score 0)."""
        return int(self.matrix.shape[0])

    def signal_weights(self, signals: Sequence[Signal], n_signals: int) -> tuple[np.ndarray, np.ndarray]:
        """Items and recency-weighted signal weights of the last ``max_history`` signals."""
        recent = [s for s in signals[-self.max_history :] if s.item < self.size and s.weight != 0.0]
        items = np.fromiter((s.item for s in recent), dtype=np.int64, count=len(recent))
        weights = np.fromiter((s.weight for s in recent), dtype=np.float64, count=len(recent))
        if self.half_life_events is not None and recent:
            ages = (
                n_signals - 1 - np.fromiter((s.ordinal for s in recent), dtype=np.float64, count=len(recent))
            )
            weights = weights * 0.5 ** (ages / self.half_life_events)
        return items, weights

    def signal_rows(self, signals: Sequence[Signal], n_signals: int) -> SignalRows:
        """The recency-weighted signals and their matrix rows (reused for scores and explanations)."""
        return self.rows_of(*self.signal_weights(signals, n_signals))

    @property
    def history_key(self) -> tuple[int, int, float | None]:
        """Scorers with equal keys get equal :meth:`signal_weights` from the same signals."""
        return self.size, self.max_history, self.half_life_events

    def rows_of(self, sources: np.ndarray, weights: np.ndarray) -> SignalRows:
        """:meth:`signal_rows` from :meth:`signal_weights` (shared by scorers with one history key)."""
        if sources.size == 0:
            return SignalRows(sources, weights)
        if isinstance(self.matrix, np.ndarray):
            return SignalRows(sources, weights, rows=self.matrix[sources])
        indptr = self.matrix.indptr
        starts, ends = indptr[sources], indptr[sources + 1]
        lengths = ends - starts
        row_ids = np.repeat(np.arange(sources.size), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        positions = np.repeat(starts, lengths) + offsets
        entries = (row_ids, self.matrix.indices[positions], self.matrix.data[positions])
        return SignalRows(sources, weights, entries=entries)

    def scores(self, signals: Sequence[Signal], n_signals: int, n_items: int) -> np.ndarray:
        """``(n_items,)`` float32 scores of every item given the user's recent signals."""
        return self.scores_from(self.signal_rows(signals, n_signals), n_items)

    def scores_from(self, rows: SignalRows, n_items: int) -> np.ndarray:
        """Scores from precomputed :meth:`signal_rows`."""
        out = np.zeros(n_items, dtype=np.float32)
        if rows.rows is not None:
            out[: self.size] = rows.weights.astype(np.float32) @ rows.rows
        elif rows.entries is not None:
            row_ids, columns, values = rows.entries
            out[: self.size] = np.bincount(columns, values * rows.weights[row_ids], minlength=self.size)
        return out

    def contributions(
        self, signals: Sequence[Signal], n_signals: int, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Signal items and their contribution to each of ``items``: ``(sources, (h, len(items)))``.

        Used for explanations: the largest entries of a column name the signals behind an item.
        """
        return self.contributions_from(self.signal_rows(signals, n_signals), items)

    def contributions_from(self, rows: SignalRows, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contributions from precomputed :meth:`signal_rows`."""
        items = np.asarray(items, dtype=np.int64)
        inside = items < self.size
        values = np.zeros((rows.sources.size, items.size))
        if rows.rows is not None and inside.any():
            values[:, inside] = rows.rows[:, items[inside]] * rows.weights[:, None]
        elif rows.entries is not None and inside.any():
            row_ids, columns, data = rows.entries
            # Each matrix column's position in ``items`` (-1: not asked for; a repeated item: its
            # first position, written last), looked up for every non-zero at once.
            positions = np.flatnonzero(inside)
            slot = np.full(self.size, -1, dtype=np.int64)
            slot[items[positions][::-1]] = positions[::-1]
            position = slot[columns]
            hit = position >= 0
            np.add.at(values, (row_ids[hit], position[hit]), data[hit] * rows.weights[row_ids[hit]])
            values[:, positions] = values[:, slot[items[positions]]]  # repeats: as their first
        return rows.sources, values

    def pruned(self, top_k: int) -> ItemItemScorer:
        """A sparse copy keeping each row's ``top_k`` largest entries (for big catalogues)."""
        matrix = self.matrix
        dense = matrix.toarray() if isinstance(matrix, sp.spmatrix | sp.sparray) else np.asarray(matrix)
        keep = min(top_k, dense.shape[1])
        cols = np.argpartition(-dense, keep - 1, axis=1)[:, :keep]
        rows = np.repeat(np.arange(dense.shape[0]), keep)
        values = dense[rows, cols.ravel()]
        matrix = sp.csr_matrix((values, (rows, cols.ravel())), shape=dense.shape, dtype=np.float32)
        matrix.eliminate_zeros()
        return replace(self, matrix=matrix)

    def save(self, path: str | Path) -> None:
        """Write the scorer to an ``.npz`` file (no pickle)."""
        arrays: dict[str, np.ndarray] = {
            "meta": np.asarray(json.dumps({"name": self.name, "weight": self.weight,
                                           "half_life_events": self.half_life_events,
                                           "max_history": self.max_history})),
        }  # fmt: skip
        if isinstance(self.matrix, np.ndarray):
            arrays["dense"] = self.matrix
        else:
            csr = sp.csr_matrix(self.matrix)
            arrays |= {"data": csr.data, "indices": csr.indices, "indptr": csr.indptr,
                       "shape": np.asarray(csr.shape)}  # fmt: skip
        savez: Any = np.savez  # numpy's stub mistakes ``**arrays`` for its allow_pickle flag
        with open(path, "wb") as handle:
            savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ItemItemScorer:
        """Read a scorer written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                if "dense" in npz.files:
                    matrix: np.ndarray | sp.csr_matrix = np.ascontiguousarray(npz["dense"])
                else:
                    parts = (npz["data"], npz["indices"], npz["indptr"])
                    matrix = sp.csr_matrix(parts, shape=tuple(int(n) for n in npz["shape"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"item-item scorer file {path} is missing or corrupt: {exc}") from exc
        return cls(meta["name"], matrix, meta["weight"], meta["half_life_events"], meta["max_history"])

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_model(cls, model: object, *, name: str | None = None, **options: float) -> ItemItemScorer:
        """The item-item matrix of a fitted EASE (``weights_``) or item-kNN (``similarity_``)."""
        for attribute in ("weights_", "similarity_"):
            matrix = getattr(model, attribute, None)
            if matrix is not None:
                matrix = matrix.tocsr() if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float32)
                return cls(name or str(getattr(model, "family", attribute)), matrix, **options)  # type: ignore[arg-type]
        raise ConfigError(f"{type(model).__name__} has no item-item matrix (weights_ or similarity_)")

    @classmethod
    def fit_next_items(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        timestamps: np.ndarray,
        *,
        n_items: int,
        past: int = 20,
        future: int = 10,
        half_life: float = 5.0,
        l2: float = 200.0,
        name: str = "next_items",
        weight: float = 1.0,
    ) -> ItemItemScorer:
        """Fit the SLIT next-items regression on positive events (module docstring)."""
        if past < 1 or future < 1 or not l2 > 0 or not half_life > 0:
            raise ConfigError("fit_next_items needs past >= 1, future >= 1, l2 > 0 and half_life > 0")
        ordered, positions = _ordered(users, items, timestamps)
        starts = np.flatnonzero(positions == 0)
        lengths = np.diff(np.r_[starts, ordered.size])
        p_rows, p_cols, p_vals, f_rows, f_cols = [], [], [], [], []
        row = 0
        for start, length in zip(starts, lengths, strict=True):
            history = ordered[start : start + length]
            for t in range(1, length):
                lo = max(0, t - past)
                p_rows.append(np.full(t - lo, row))
                p_cols.append(history[lo:t])
                p_vals.append(0.5 ** ((t - 1 - np.arange(lo, t)) / half_life))
                nxt = history[t : t + future]
                f_rows.append(np.full(nxt.size, row))
                f_cols.append(nxt)
                row += 1
        if row == 0:
            raise ConfigError("fit_next_items needs at least one user with two or more events")
        shape = (row, n_items)
        cat = np.concatenate
        pasts = sp.csr_matrix((cat(p_vals), (cat(p_rows), cat(p_cols))), shape=shape)
        nexts = sp.csr_matrix((np.ones(sum(map(len, f_cols))), (cat(f_rows), cat(f_cols))), shape=shape)
        gram = np.asarray((pasts.T @ pasts).toarray(), dtype=np.float64)
        gram[np.diag_indices_from(gram)] += l2
        rhs = np.asarray((pasts.T @ nexts).toarray(), dtype=np.float64)
        factor = scipy.linalg.cho_factor(gram, overwrite_a=True)
        matrix = scipy.linalg.cho_solve(factor, rhs, overwrite_b=True).astype(np.float32)
        return cls(name, matrix, weight=weight, half_life_events=half_life, max_history=past)

    @classmethod
    def fit_session_ease(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        timestamps: np.ndarray,
        *,
        n_items: int,
        window: int = 10,
        stride: int = 5,
        l2: float = 500.0,
        half_life: float | None = 3.0,
        name: str = "session_ease",
        weight: float = 1.0,
    ) -> ItemItemScorer:
        """Fit EASE on windows of consecutive events of each training history."""
        if window < 2 or stride < 1:
            raise ConfigError(f"fit_session_ease needs window >= 2 and stride >= 1, got {window}, {stride}")
        ordered, positions = _ordered(users, items, timestamps)
        starts = np.flatnonzero(positions == 0)
        lengths = np.diff(np.r_[starts, ordered.size])
        rows, cols = [], []
        count = 0
        for start, length in zip(starts, lengths, strict=True):
            for offset in range(0, max(length - window, 0) + 1, stride):
                chunk = ordered[start + offset : start + min(offset + window, length)]
                rows.append(np.full(chunk.size, count))
                cols.append(chunk)
                count += 1
        windows = sp.csr_matrix(
            (np.ones(sum(map(len, cols)), dtype=np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(count, n_items),
        )
        windows.sum_duplicates()
        windows.data[:] = 1.0
        matrix = ease_weights(windows, l2)
        return cls(name, matrix, weight=weight, half_life_events=half_life, max_history=4 * window)
