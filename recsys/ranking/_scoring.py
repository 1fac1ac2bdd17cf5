"""The score blend of :mod:`recsys.ranking.config` (personal components vs prior, by confidence).

The weighted sum of the standardised personal components is standardised again, so ``personal``
and ``prior`` have the same scale and the confidence ``c`` alone sets their balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import UserState
from recsys.ranking.config import BlendConfig
from recsys.ranking.item_item import ItemItemScorer, SignalRows


def zscore(values: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` (zeros when constant)."""
    std = float(values.std())
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def confidence(state: UserState, config: BlendConfig) -> float:
    """How much the personal part counts: ``evidence / (evidence + confidence_half)``."""
    evidence = max(state.evidence, 0.0)
    return evidence / (evidence + config.confidence_half)


def interest_directions(state: UserState) -> tuple[np.ndarray, np.ndarray]:
    """``(K, d)`` unit interest vectors and their log-shares."""
    if not state.interests:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0)
    directions = np.stack([i.direction for i in state.interests]).astype(np.float32)
    with np.errstate(divide="ignore"):
        log_shares = np.log(np.maximum(state.shares(), 1e-12))
    return directions, log_shares


@dataclass(frozen=True)
class Blended:
    """Scores of the scored items (``items``; ``None`` = the whole catalogue, in index order).

    ``personal`` and ``prior`` are the two weighted halves of ``scores``; ``affinity`` is the best
    cosine to an interest and ``interest`` which one (``-1`` without interests).
    """

    items: np.ndarray | None
    scores: np.ndarray
    personal: np.ndarray
    prior: np.ndarray
    affinity: np.ndarray
    interest: np.ndarray
    confidence: float
    signal_rows: tuple[tuple[ItemItemScorer, SignalRows], ...] = ()

    def row(self, item: int) -> int | None:
        """Position of ``item`` in the scored arrays, or ``None`` when it was not scored."""
        if self.items is None:
            return item if 0 <= item < self.scores.size else None
        index = int(np.searchsorted(self.items, item))
        return index if index < self.items.size and self.items[index] == item else None


def blend(
    space: EmbeddingSpace,
    state: UserState,
    scorers: Sequence[ItemItemScorer],
    config: BlendConfig,
    items: np.ndarray | None = None,
) -> Blended:
    """Blend the personal components and the prior for ``items`` (all when ``None``)."""
    unit = space.unit if items is None else space.unit[items]
    count = unit.shape[0]
    c = confidence(state, config) if state.has_signal else 0.0
    directions, log_shares = interest_directions(state)
    if directions.shape[0]:
        cosines = np.ascontiguousarray((unit @ directions.T).T)  # (K, n): row-wise max is fast
        biased = cosines
        if config.interest_share_bias:
            biased = cosines + np.float32(config.interest_share_bias) * log_shares.astype(np.float32)[:, None]
        embedding = biased.max(axis=0)
        interest = np.zeros(count, dtype=np.int64)
        for k in range(len(biased) - 1, 0, -1):  # lowest interest index wins ties, like argmax
            interest[biased[k] == embedding] = k
        interest[biased[0] == embedding] = 0
        affinity = embedding if biased is cosines else cosines[interest, np.arange(count)]
    else:
        interest = np.full(count, -1)
        affinity = np.zeros(count, dtype=np.float32)
        embedding = None
    personal = np.zeros(count, dtype=np.float32)
    signal_rows: list[tuple[ItemItemScorer, SignalRows]] = []
    if c > 0:
        if embedding is not None and config.embedding_weight > 0:
            personal += config.embedding_weight * zscore(embedding)
        if state.ls_vector is not None and config.fold_in_weight > 0:
            vectors = space.vectors if items is None else space.vectors[items]
            personal += config.fold_in_weight * zscore(vectors @ state.ls_vector)
        for scorer in scorers:
            if scorer.weight > 0:
                rows = scorer.signal_rows(state.recent, state.n_signals)
                signal_rows.append((scorer, rows))
                full = scorer.scores_from(rows, space.n_items)
                personal += scorer.weight * zscore(full if items is None else full[items])
        personal = np.float32(c) * zscore(personal)
    counts = space.prior.for_count(state.positives) if config.stage_prior else space.prior.overall
    prior_values = np.log1p(np.asarray(counts if items is None else counts[items], dtype=np.float32))
    prior = np.float32(1.0 - c) * zscore(prior_values)
    return Blended(
        items=items,
        scores=personal + prior,
        personal=personal,
        prior=prior,
        affinity=affinity,
        interest=interest,
        confidence=c,
        signal_rows=tuple(signal_rows),
    )
