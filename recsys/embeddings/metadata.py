"""What the embedding space knows about each item besides its vector: ids, titles, categories, tags.

Used by the ranker's business-rule filters (category and attribute rules), by explanations (titles)
and by the intent summary (top categories and tags of each interest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.data.schema import CATEGORIES, ITEM_ID, TAGS, TITLE
from recsys.errors import SchemaError


def _string_lists(values: object, n: int) -> tuple[tuple[str, ...], ...]:
    if values is None:
        return ((),) * n
    out: list[tuple[str, ...]] = []
    for value in values:  # type: ignore[attr-defined]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out.append(())
        elif isinstance(value, str):
            out.append(tuple(part for part in value.split("|") if part))
        else:
            out.append(tuple(str(part) for part in value))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class ItemMetadata:
    """Per-item descriptive data, indexed by item index (row of the embedding matrix).

    Parameters
    ----------
    item_ids : sequence of str
        External id of each item index.
    titles : sequence of str, optional
        Human-readable names, used in explanations.
    categories, tags : sequence of sequences of str, optional
        Labels of each item.
    attributes : mapping of str to ndarray, optional
        Numeric attributes (``price``, ``year`` ...), one float per item, NaN when unknown.

    Examples
    --------
    >>> meta = ItemMetadata(item_ids=["a", "b"], categories=[["jazz"], ["horror", "jazz"]])
    >>> meta.items_in_categories(["horror"]).tolist()
    [1]
    >>> meta.label(0)
    'a'
    """

    item_ids: Sequence[str]
    titles: Sequence[str] | None = None
    categories: Sequence[Sequence[str]] | None = None
    tags: Sequence[Sequence[str]] | None = None
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name in ("titles", "categories", "tags"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise SchemaError(f"ItemMetadata.{name} has {len(value)} entries for {n} items")
        for name, value in self.attributes.items():
            if np.asarray(value).shape != (n,):
                raise SchemaError(f"ItemMetadata attribute {name!r} must have shape ({n},)")
        index: dict[str, list[int]] = {}
        for item, labels in enumerate(self.categories or ()):
            for label in labels:
                index.setdefault(label, []).append(item)
        object.__setattr__(self, "_category_index", {k: np.asarray(v) for k, v in index.items()})

    @property
    def n_items(self) -> int:
        """Number of items described."""
        return len(self.item_ids)

    @classmethod
    def from_frame(cls, items: pd.DataFrame, item_ids: Sequence[str] | None = None) -> ItemMetadata:
        """Build from a catalogue frame (``item_id``, optional ``title``, ``categories``, ``tags``).

        ``item_ids`` gives the order of the item index; items missing from the frame get empty
        labels. Float columns other than the core ones become ``attributes``. A ``categories`` or
        ``tags`` value may be a list or a ``|``-separated string (MovieLens ``genres``).
        """
        if ITEM_ID not in items.columns:
            raise SchemaError(f"items frame lacks {ITEM_ID!r}; present: {list(items.columns)}")
        frame = items.drop_duplicates(ITEM_ID).set_index(items[ITEM_ID].astype(str).to_numpy())
        order = [str(i) for i in (item_ids if item_ids is not None else frame.index)]
        frame = frame.reindex(order)
        n = len(order)
        titles = [str(t) if isinstance(t, str) else "" for t in frame[TITLE]] if TITLE in frame else None
        attributes = {
            str(name): frame[name].to_numpy(dtype=np.float64)
            for name in frame.columns
            if name not in (ITEM_ID, TITLE, CATEGORIES, TAGS) and frame[name].dtype.kind == "f"
        }
        return cls(
            item_ids=order,
            titles=titles,
            categories=_string_lists(frame.get(CATEGORIES), n),
            tags=_string_lists(frame.get(TAGS), n),
            attributes=attributes,
        )

    def label(self, item: int) -> str:
        """The title of ``item`` when known, else its id."""
        if self.titles is not None and 0 <= item < len(self.titles) and self.titles[item]:
            return self.titles[item]
        return str(self.item_ids[item]) if 0 <= item < self.n_items else f"item {item}"

    def items_in_categories(self, categories: Sequence[str]) -> np.ndarray:
        """Sorted indices of the items having at least one of ``categories``."""
        index: dict[str, np.ndarray] = self._category_index  # type: ignore[attr-defined]
        parts = [index[c] for c in categories if c in index]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def with_items(
        self,
        item_ids: Sequence[str],
        titles: Sequence[str] | None = None,
        categories: Sequence[Sequence[str]] | None = None,
        tags: Sequence[Sequence[str]] | None = None,
    ) -> ItemMetadata:
        """A copy with new items appended (their attributes NaN)."""
        m = len(item_ids)

        def extend(old: Sequence[object] | None, new: Sequence[object] | None, empty: object) -> list | None:
            if old is None and new is None:
                return None
            base = list(old) if old is not None else [empty] * self.n_items
            return base + (list(new) if new is not None else [empty] * m)

        return ItemMetadata(
            item_ids=[*self.item_ids, *item_ids],
            titles=extend(self.titles, titles, ""),
            categories=extend(self.categories, categories, ()),
            tags=extend(self.tags, tags, ()),
            attributes={k: np.concatenate([v, np.full(m, np.nan)]) for k, v in self.attributes.items()},
        )
