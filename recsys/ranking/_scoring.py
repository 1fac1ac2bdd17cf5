"""The score blend of :mod:`recsys.ranking.config` (personal components vs prior, by confidence).

The weighted sum of the standardised personal components is standardised again, so ``personal``
and ``prior`` have the same scale and the confidence ``c`` alone sets their balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import UserState
from recsys.ranking.config import BlendConfig
from recsys.ranking.item_item import ItemItemScorer, SignalRows


def zscore(values: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` (zeros when constant), in three passes over ``values``."""
    centered = values - values.dtype.type(values.mean(dtype=np.float64))
    square_sum = float(np.dot(centered, centered))
    if not square_sum > 0:
        return np.zeros_like(values)
    centered *= centered.dtype.type(1.0 / np.sqrt(square_sum / values.size))
    return centered


class PriorCache:
    """The standardised log-popularity prior per counts row, computed once per row (per ranker)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        # Keyed by memory: rows of one table are new views on every call. The cache holds each
        # row, so its memory cannot be reused by another array while the key stands.
        key = (counts.__array_interface__["data"][0], counts.shape[0])
        found = self._rows.get(key)
        if found is None:
            found = (counts, zscore(np.log1p(np.asarray(counts, dtype=np.float32))))
            self._rows[key] = found
        return found[1]


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
class Shortlist:
    """What a page that filters out only the seen items reads from a blend, kept with the blend.

    * ``top``: the best unseen rows by score, best first (ties: lower row first), as many as the
      ranker's pool and promotions can ask for; ``groups``: the closest interest of each;
    * ``cosines``: the cosine of every pair of the first ``pool_size`` of them (the pool of a page
      without promotions);
    * ``touched``: the regions of the seen items (a lookup table over region ids, -1 last);
    * ``nearest``: the first unseen rows outside those regions whose affinity reaches the ranker's
      ``adjacent_min_similarity``, by affinity, highest first (ties: lower row first);
    * ``behind``: the signal items behind each item explained so far (filled as pages explain them).

    Rows index the blend's arrays.
    """

    top: np.ndarray
    groups: np.ndarray
    cosines: np.ndarray
    nearest: np.ndarray
    touched: np.ndarray
    behind: dict[int, list[int]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Memory held, about (the arrays; ``behind`` grows to some 100 bytes per item of ``top``)."""
        arrays = (self.top, self.groups, self.cosines, self.nearest, self.touched)
        return sum(a.nbytes for a in arrays) + 100 * self.top.size


@dataclass(frozen=True)
class Blended:
    """Scores of the scored items (``items``; ``None`` = the whole catalogue, in index order).

    ``personal`` and ``prior`` are the two weighted halves of ``scores``; ``affinity`` is the best
    cosine to an interest and :meth:`interest` which one (``-1`` without interests).
    ``interest_scores`` is the ``(K, n)`` cosine (plus share bias) table :meth:`interest` reads:
    only a few hundred rows ever need it, so it is not reduced for the whole catalogue.
    """

    items: np.ndarray | None
    scores: np.ndarray
    personal: np.ndarray
    prior: np.ndarray
    affinity: np.ndarray
    interest_scores: np.ndarray | None
    confidence: float
    signal_rows: tuple[tuple[ItemItemScorer, SignalRows], ...] = ()
    shortlist: Shortlist | None = None

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (for caches that keep blends)."""
        arrays = (self.items, self.scores, self.personal, self.prior, self.affinity, self.interest_scores)
        listed = self.shortlist.nbytes if self.shortlist is not None else 0
        return listed + sum(a.nbytes for a in arrays if a is not None)

    def interest(self, rows: np.ndarray) -> np.ndarray:
        """The closest interest (index; the lowest on ties) of each of ``rows``; ``-1`` without any."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.interest_scores is None:
            return np.full(rows.size, -1, dtype=np.int64)
        return self.interest_scores[:, rows].argmax(axis=0)

    def items_of(self, rows: np.ndarray) -> np.ndarray:
        """The items at ``rows`` of the scored arrays."""
        return rows if self.items is None else self.items[rows]

    def rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`row` of each of ``items``: ``(rows, scored)``, ``rows`` meaningful where ``scored``."""
        items = np.asarray(items, dtype=np.int64)
        if self.items is None:
            return items, (items >= 0) & (items < self.scores.size)
        if not self.items.size:
            return np.zeros(items.size, dtype=np.int64), np.zeros(items.size, dtype=bool)
        rows = np.minimum(np.searchsorted(self.items, items), self.items.size - 1)
        return rows, self.items[rows] == items

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
    prior_cache: PriorCache | None = None,
) -> Blended:
    """Blend the personal components and the prior for ``items`` (all when ``None``).

    ``prior_cache`` keeps the standardised prior of each popularity row between calls (the
    z-score of the whole catalogue, as without it; only for ``items=None``).
    """
    unit = space.unit if items is None else space.unit[items]
    count = unit.shape[0]
    c = confidence(state, config) if state.has_signal else 0.0
    directions, log_shares = interest_directions(state)
    if directions.shape[0]:
        cosines = np.ascontiguousarray((unit @ directions.T).T)  # (K, n): row-wise max is fast
        biased = cosines
        if config.interest_share_bias:
            biased = cosines + np.float32(config.interest_share_bias) * log_shares.astype(np.float32)[:, None]
        embedding = biased[0]
        for k in range(1, len(biased)):
            embedding = np.maximum(embedding, biased[k])
        affinity = embedding
        if biased is not cosines:  # the cosine of the interest that won with its bias
            affinity = cosines[biased.argmax(axis=0), np.arange(count)]
        interest_scores: np.ndarray | None = biased
    else:
        affinity = np.zeros(count, dtype=np.float32)
        embedding = None
        interest_scores = None
    personal = np.zeros(count, dtype=np.float32)
    signal_rows: list[tuple[ItemItemScorer, SignalRows]] = []
    if c > 0:
        if embedding is not None and config.embedding_weight > 0:
            personal += config.embedding_weight * zscore(embedding)
        if state.ls_vector is not None and config.fold_in_weight > 0:
            vectors = space.vectors if items is None else space.vectors[items]
            personal += config.fold_in_weight * zscore(vectors @ state.ls_vector)
        weights: dict[tuple[int, int, float | None], tuple[np.ndarray, np.ndarray]] = {}
        for scorer in scorers:
            if scorer.weight > 0:
                key = scorer.history_key
                if key not in weights:
                    weights[key] = scorer.signal_weights(state.recent, state.n_signals)
                rows = scorer.rows_of(*weights[key])
                signal_rows.append((scorer, rows))
                full = scorer.scores_from(rows, space.n_items)
                personal += scorer.weight * zscore(full if items is None else full[items])
        personal = np.float32(c) * zscore(personal)
    counts = space.prior.for_count(state.positives) if config.stage_prior else space.prior.overall
    if prior_cache is not None and items is None:
        standard_prior = prior_cache(counts)
    else:
        standard_prior = zscore(np.log1p(np.asarray(counts if items is None else counts[items], np.float32)))
    prior = np.float32(1.0 - c) * standard_prior
    return Blended(
        items=items,
        scores=personal + prior,
        personal=personal,
        prior=prior,
        affinity=affinity,
        interest_scores=interest_scores,
        confidence=c,
        signal_rows=tuple(signal_rows),
    )
