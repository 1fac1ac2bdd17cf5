"""Real-time user embeddings: users live in the champion's item-embedding space.

* :class:`EmbeddingSpace`: item vectors, popularity prior, regions, metadata, ALS Gram matrix,
  content projection; built with :meth:`EmbeddingSpace.from_model`.
* :class:`UserState`: per-user multi-interest vectors, recent signals, seen items, event ids,
  counts, version; exact JSON/bytes round trip for a store.
* :class:`EmbeddingUpdater`: ``apply(state, event) -> (state, changed)``, the update rule
  (documented in :mod:`recsys.embeddings.updater`).

Nothing here imports Ray or does I/O beyond explicit ``load_item_features``.
"""

from recsys.embeddings.metadata import ItemMetadata
from recsys.embeddings.prior import StagePopularity
from recsys.embeddings.projection import ContentProjection, load_item_features
from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import Interest, Signal, UserState
from recsys.embeddings.updater import EmbeddingUpdater, Event, UpdaterConfig

__all__ = [
    "ContentProjection",
    "EmbeddingSpace",
    "EmbeddingUpdater",
    "Event",
    "Interest",
    "ItemMetadata",
    "Signal",
    "StagePopularity",
    "UpdaterConfig",
    "UserState",
    "load_item_features",
]
