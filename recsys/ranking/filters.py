"""Turning request :class:`~recsys.ranking.config.Filters` into a boolean mask over items."""

from __future__ import annotations

import numpy as np

from recsys.embeddings.metadata import ItemMetadata
from recsys.embeddings.state import UserState
from recsys.errors import ConfigError
from recsys.ranking.config import Filters


def _indices(values: object, n_items: int, name: str) -> np.ndarray:
    ids = np.asarray(values, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        raise ConfigError(
            f"{name} holds item indices outside [0, {n_items}): min {ids.min()}, max {ids.max()}"
        )
    return ids


def allowed_items(
    filters: Filters, state: UserState, n_items: int, metadata: ItemMetadata | None
) -> np.ndarray:
    """``(n_items,)`` bool: True where an item may be recommended under ``filters``.

    Examples
    --------
    >>> from recsys.embeddings.state import UserState
    >>> state = UserState("u"); state.seen[1] = None
    >>> allowed_items(Filters(deny=[3]), state, 4, None).tolist()
    [True, False, True, False]
    """
    mask = np.ones(n_items, dtype=bool)
    if filters.allow is not None:
        mask[:] = False
        mask[_indices(filters.allow, n_items, "allow")] = True
    if len(filters.deny):
        mask[_indices(filters.deny, n_items, "deny")] = False
    if filters.exclude_seen and state.seen:
        seen = np.fromiter(state.seen.keys(), dtype=np.int64, count=len(state.seen))
        mask[seen[seen < n_items]] = False
    rules = filters.include_categories is not None or filters.exclude_categories or filters.attribute_ranges
    if rules and metadata is None:
        raise ConfigError("category or attribute rules need item metadata in the EmbeddingSpace")
    if metadata is not None:
        if filters.include_categories is not None:
            keep = np.zeros(n_items, dtype=bool)
            keep[metadata.items_in_categories(list(filters.include_categories))] = True
            mask &= keep
        if filters.exclude_categories:
            mask[metadata.items_in_categories(list(filters.exclude_categories))] = False
        for name, (low, high) in filters.attribute_ranges.items():
            if name not in metadata.attributes:
                raise ConfigError(f"unknown item attribute {name!r}; known: {sorted(metadata.attributes)}")
            values = np.asarray(metadata.attributes[name], dtype=np.float64)
            inside = ~np.isnan(values)
            if low is not None:
                inside &= values >= low
            if high is not None:
                inside &= values <= high
            mask[: values.size] &= inside
    return mask
