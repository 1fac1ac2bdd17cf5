"""Ranking: candidates -> filters -> re-rank -> explain, over a user's :class:`UserState`.

* :class:`Ranker`: ``recommend(state, k, filters, request_context) -> list[RankedItem]``,
  ``similar_items``, ``intent`` (JSON-able summary), ``served`` (journey and campaign counters).
* :class:`ItemItemScorer`: item-item components of the score (EASE champion, next-items SLIT,
  session EASE).
* Configuration: :class:`RankerConfig`, :class:`BlendConfig`, :class:`JourneyConfig`,
  :class:`JourneyStage`; per request :class:`Filters`, :class:`RequestContext`; :class:`Campaign`.
* Retrieval: :func:`exact_top_k`, :class:`IVFIndex`, :func:`recall_at_k`; :func:`mmr`.
"""

from recsys.ranking.config import (
    BlendConfig,
    Campaign,
    Filters,
    JourneyConfig,
    JourneyStage,
    Provenance,
    RankedItem,
    RankerConfig,
    RequestContext,
)
from recsys.ranking.filters import allowed_items
from recsys.ranking.intent import intent_summary
from recsys.ranking.item_item import ItemItemScorer
from recsys.ranking.ranker import Ranker
from recsys.ranking.rerank import mean_pairwise_similarity, mmr
from recsys.ranking.retrieval import IVFIndex, exact_top_k, recall_at_k, top_indices

__all__ = [
    "BlendConfig",
    "Campaign",
    "Filters",
    "IVFIndex",
    "ItemItemScorer",
    "JourneyConfig",
    "JourneyStage",
    "Provenance",
    "RankedItem",
    "Ranker",
    "RankerConfig",
    "RequestContext",
    "allowed_items",
    "exact_top_k",
    "intent_summary",
    "mean_pairwise_similarity",
    "mmr",
    "recall_at_k",
    "top_indices",
]
