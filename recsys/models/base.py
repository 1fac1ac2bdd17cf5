"""The one Recommender protocol every model family implements.

A recommender is fitted on a sparse user x item confidence matrix (CSR, float32; positive entries are
positive confidence, negative entries are negative signals such as dislikes) plus, optionally, the item
feature matrix from preprocessing. It never keeps its own event log: callers pass each user's history
as a CSR row, so a brand-new user is just an empty row.

Batch-first: ``recommend`` takes a CSR matrix of ``n`` user rows and returns ``(ids, scores)``, two
``(n, k)`` arrays; rows with fewer than ``k`` candidates are padded with id ``-1`` and score ``-inf``.

Optional abilities are separate small protocols checked with ``isinstance``:
:class:`HasItemEmbeddings` (the real-time updater lives in that space), :class:`SupportsScoring` and
:class:`SupportsPartialFit` (iterative families that can continue training, for per-epoch tuning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp


@runtime_checkable
class Recommender(Protocol):
    """What every family answers. Constructors take keyword hyperparameters only."""

    def fit(self, interactions: sp.csr_matrix, item_features: sp.csr_matrix | None = None) -> Recommender:
        """Learn from a users x items confidence matrix; return ``self``."""
        ...

    def recommend(
        self,
        user_rows: sp.csr_matrix,
        k: int = 10,
        *,
        filter_seen: bool = True,
        allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids and scores for each history row (``(n, k)`` arrays each).

        ``allow`` restricts candidates to those item ids; ``deny`` removes them.
        """
        ...

    def similar_items(self, item_ids: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` most similar items (excluding the item itself) for each item id."""
        ...

    def save(self, path: str | Path) -> None:
        """Write the fitted model to a directory."""
        ...

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Read a model written by :meth:`save`; scores are identical."""
        ...


@runtime_checkable
class SupportsScoring(Protocol):
    """Full score matrix for history rows: ``(n_users, n_items)`` float32, unmasked."""

    def score(self, user_rows: sp.csr_matrix) -> np.ndarray: ...


@runtime_checkable
class HasItemEmbeddings(Protocol):
    """A model whose items live in a dense vector space (ALS, BPR, SVD, content, NCF)."""

    @property
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, d)`` float32 item vectors; ``user_vector @ item_embeddings.T`` ranks items."""
        ...

    def fold_in(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """``(n, d)`` user vectors for history rows, without refitting."""
        ...


@runtime_checkable
class SupportsPartialFit(Protocol):
    """An iterative model that can continue training from its current state (ALS, BPR).

    ``partial_fit(X, epochs)`` on an unfitted model starts from scratch; on a fitted one it runs
    ``epochs`` more iterations on the same training matrix; the fitted model's ``epochs_done_``
    counts all of them. A tuner reports a validation metric between calls (e.g. Ray Tune's ASHA).
    """

    def partial_fit(self, interactions: sp.csr_matrix, epochs: int = 1) -> SupportsPartialFit: ...
