"""The sequence-aware item-item scorers of a serving bundle, fitted on the items that matter.

:meth:`ItemItemScorer.fit_next_items` and :meth:`ItemItemScorer.fit_session_ease` hold
``n_items^2`` float64 while fitting, and a catalogue has many items with a handful of events.
:func:`fit_sequence_scorers` fits both on the ``max_items`` most frequent items with at least
``min_count`` positive events (the other items' events are dropped from the histories), prunes
each row to its ``top_k`` strongest links and re-indexes the result to the whole catalogue as a
sparse matrix: nothing ``n_items^2`` is kept or saved. Items outside get no links (score 0).

On the cold-start curve these two scorers carry most of the gain over the fold-in references
(``benchmarks/coldstart_offline.py --ablations``); pruning to 200 links per item cost at most
0.004 NDCG@10 there.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recsys.errors import ConfigError
from recsys.ranking.item_item import ItemItemScorer


class SequenceConfig(BaseModel):
    """What the bundle's next-items (SLIT) and session-EASE scorers are fitted with.

    The defaults are the settings chosen on validation folds by ``benchmarks/coldstart_offline.py
    --tune``. A weight of 0 leaves that scorer out.

    Examples
    --------
    >>> SequenceConfig(session_weight=0.0).session_weight
    0.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    next_items_weight: float = Field(default=1.0, ge=0.0, description="blend weight of next-items")
    past: int = Field(default=20, ge=1, description="next-items: events of the past used as input")
    future: int = Field(default=10, ge=1, description="next-items: next events used as target")
    half_life: float = Field(default=5.0, gt=0.0, description="next-items: recency half-life in events")
    next_items_l2: float = Field(default=200.0, gt=0.0)
    session_weight: float = Field(default=0.5, ge=0.0, description="blend weight of session EASE")
    window: int = Field(default=10, ge=2, description="session EASE: events per window")
    stride: int = Field(default=5, ge=1, description="session EASE: events between window starts")
    session_l2: float = Field(default=500.0, gt=0.0)
    min_count: int = Field(default=5, ge=1, description="items with fewer positive events get no links")
    max_items: int = Field(default=5_000, ge=2, description="at most this many (most frequent) items")
    top_k: int = Field(default=200, ge=1, description="links kept per item")


def fit_sequence_scorers(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    *,
    n_items: int,
    config: SequenceConfig | None = None,
) -> list[ItemItemScorer]:
    """Fit the scorers of ``config`` on positive events; sparse ``(n_items, n_items)`` matrices.

    Events are ``(user, item index, timestamp)`` triples of positive interactions, one per
    (user, item); each history is taken in timestamp order (ties in input order).
    """
    config = config or SequenceConfig()
    items = np.asarray(items, dtype=np.int64)
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ConfigError(f"item indices must lie in [0, {n_items})")
    counts = np.bincount(items, minlength=n_items)
    eligible = np.flatnonzero(counts >= config.min_count)
    active = np.sort(eligible[np.argsort(-counts[eligible], kind="stable")[: config.max_items]])
    if active.size < 2:
        return []
    compact = np.full(n_items, -1, dtype=np.int64)
    compact[active] = np.arange(active.size)
    keep = compact[items] >= 0
    arrays = (np.asarray(users)[keep], compact[items[keep]], np.asarray(timestamps)[keep])
    scorers = []
    if config.next_items_weight > 0:
        fitted = ItemItemScorer.fit_next_items(
            *arrays, n_items=active.size, past=config.past, future=config.future,
            half_life=config.half_life, l2=config.next_items_l2, weight=config.next_items_weight,
        )  # fmt: skip
        scorers.append(_expanded(fitted.pruned(config.top_k), active, n_items))
    if config.session_weight > 0:
        fitted = ItemItemScorer.fit_session_ease(
            *arrays, n_items=active.size, window=config.window, stride=config.stride,
            l2=config.session_l2, weight=config.session_weight,
        )  # fmt: skip
        scorers.append(_expanded(fitted.pruned(config.top_k), active, n_items))
    return scorers


def _expanded(scorer: ItemItemScorer, active: np.ndarray, n_items: int) -> ItemItemScorer:
    """The compact scorer's matrix re-indexed to the whole catalogue (rows and columns)."""
    coo = sp.coo_matrix(scorer.matrix)
    matrix = sp.csr_matrix(
        (coo.data.astype(np.float32), (active[coo.row], active[coo.col])), shape=(n_items, n_items)
    )
    return replace(scorer, matrix=matrix)
