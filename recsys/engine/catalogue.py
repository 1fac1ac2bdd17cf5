"""Browsing and searching the catalogue: a page of items matching a text query and a category.

Matching is deliberately simple and predictable, for a person typing in a search box: every word of
the query must occur (case-insensitively, as a substring) in the item's title, id, categories or
tags. Results come most popular first, so an empty query browses the catalogue by popularity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.embeddings.space import EmbeddingSpace
from recsys.errors import ConfigError


@dataclass(frozen=True)
class CataloguePage:
    """One page of matches: ``total`` matches in all, ``items`` (indices) from ``offset`` on, and
    ``facets``: how many of the query's matches each category has, largest first."""

    total: int
    offset: int
    items: np.ndarray
    facets: list[tuple[str, int]]


class Catalogue:
    """A searchable view of the items of one embedding space.

    Parameters
    ----------
    item_ids, titles, categories, tags : per item index.
    popularity : ndarray of shape (n_items,), the order results come in (largest first).

    Examples
    --------
    >>> import numpy as np
    >>> catalogue = Catalogue(["a", "b", "c"], ["Toy Story", "Heat", "Toy Soldiers"],
    ...                       [["Animation"], ["Crime"], ["Action"]], [[], [], []],
    ...                       np.array([1.0, 5.0, 3.0]))
    >>> catalogue.search("toy").items.tolist()
    [2, 0]
    >>> catalogue.search("", category="Crime").items.tolist()
    [1]
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        titles: Sequence[str],
        categories: Sequence[Sequence[str]],
        tags: Sequence[Sequence[str]],
        popularity: np.ndarray,
    ) -> None:
        n = len(item_ids)
        if not len(titles) == len(categories) == len(tags) == len(popularity) == n:
            raise ConfigError(
                "catalogue ids, titles, categories, tags and popularity must have one entry per item"
            )
        self.item_ids = list(item_ids)
        self.titles = [title or item_id for title, item_id in zip(titles, item_ids, strict=True)]
        self.categories = [tuple(c) for c in categories]
        self._order = np.argsort(-np.asarray(popularity, dtype=np.float64), kind="stable")
        self._text = [
            " ".join([self.titles[item], item_ids[item], *categories[item], *tags[item]]).lower()
            for item in self._order.tolist()
        ]  # in popularity order: a match's rank is its position here
        names = sorted({label for labels in self.categories for label in labels})
        self._names = names
        column = {name: j for j, name in enumerate(names)}
        pairs = [
            (rank, column[label])
            for rank, item in enumerate(self._order.tolist())
            for label in self.categories[item]
        ]
        self._label_rank = np.array([rank for rank, _ in pairs], dtype=np.int64)
        self._label_name = np.array([j for _, j in pairs], dtype=np.int64)
        grouped = np.argsort(self._label_name, kind="stable")
        bounds = np.searchsorted(self._label_name[grouped], np.arange(len(names) + 1))
        self._by_category = {
            name: self._label_rank[grouped[bounds[j] : bounds[j + 1]]] for j, name in enumerate(names)
        }

    @classmethod
    def from_space(cls, space: EmbeddingSpace, item_ids: Sequence[str]) -> Catalogue:
        """The catalogue of ``space`` (titles, categories and tags from its metadata)."""
        n = space.n_items
        meta = space.metadata
        titles = [meta.label(i) for i in range(n)] if meta is not None else list(item_ids)
        empty: list[tuple[str, ...]] = [()] * n
        categories = list(meta.categories) if meta is not None and meta.categories is not None else empty
        tags = list(meta.tags) if meta is not None and meta.tags is not None else empty
        return cls(item_ids, titles, categories, tags, space.prior.overall[:n])

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def has_category(self, category: str) -> bool:
        return category in self._by_category

    def category_names(self) -> list[str]:
        """Every category, largest first (ties by name)."""
        return [name for name, _ in sorted(self._by_category.items(), key=lambda p: (-p[1].size, p[0]))]

    def search(
        self, query: str = "", *, category: str | None = None, offset: int = 0, limit: int = 24
    ) -> CataloguePage:
        """Items matching every word of ``query`` and, if given, ``category``; most popular first."""
        if offset < 0 or limit < 1:
            raise ConfigError(f"offset must be >= 0 and limit >= 1, got offset={offset}, limit={limit}")
        if category is not None and not self.has_category(category):
            raise ConfigError(f"category {category!r} is not in the catalogue")
        matched = np.ones(self.n_items, dtype=bool)
        for word in query.lower().split():
            matched &= np.fromiter((word in text for text in self._text), dtype=bool, count=self.n_items)
        counts = np.bincount(self._label_name[matched[self._label_rank]], minlength=len(self._names))
        facets = [(self._names[j], int(counts[j])) for j in np.flatnonzero(counts)]
        if category is not None:
            in_category = np.zeros(self.n_items, dtype=bool)
            in_category[self._by_category[category]] = True
            matched &= in_category
        ranks = np.flatnonzero(matched)
        return CataloguePage(
            total=int(ranks.size),
            offset=offset,
            items=self._order[ranks[offset : offset + limit]],
            facets=sorted(facets, key=lambda p: (-p[1], p[0])),
        )
