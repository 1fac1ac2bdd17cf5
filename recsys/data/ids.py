"""A stable mapping between string ids and dense integer indices.

Every artifact (preprocessed data, models) stores its ``IdIndex`` beside it, so row ``i`` of a model
matrix always means the same user or item. New ids are appended at the end; existing indices never
move, so an index can grow while a model that uses its first ``n`` rows keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.storage import Location
from recsys.errors import ArtifactError

UNKNOWN = -1
"""Index returned by :meth:`IdIndex.lookup` for ids the index does not know."""


class IdIndex:
    """Bidirectional string id <-> dense int index.

    Examples
    --------
    >>> index = IdIndex(["u1", "u7"])
    >>> index.lookup(["u7", "nobody"]).tolist()
    [1, -1]
    >>> index.add(["u9", "u1"]).tolist()
    [2, 0]
    >>> index.ids[2]
    'u9'
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = []
        self._positions: dict[str, int] = {}
        self.add(ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._positions

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdIndex) and self._ids == other._ids

    __hash__ = None  # type: ignore[assignment]

    @property
    def ids(self) -> list[str]:
        """The ids in index order (a copy)."""
        return list(self._ids)

    def add(self, ids: Iterable[str]) -> np.ndarray:
        """Add unseen ids at the end; return the index of every given id."""
        out = []
        for raw in ids:
            key = str(raw)
            position = self._positions.get(key)
            if position is None:
                position = len(self._ids)
                self._positions[key] = position
                self._ids.append(key)
            out.append(position)
        return np.asarray(out, dtype=np.int64)

    def lookup(self, ids: Iterable[str]) -> np.ndarray:
        """Indices of ``ids``; :data:`UNKNOWN` (-1) for ids not in the index."""
        get = self._positions.get
        return np.fromiter((get(str(key), UNKNOWN) for key in ids), dtype=np.int64)

    def to_ids(self, positions: Sequence[int] | np.ndarray) -> list[str | None]:
        """Ids at the given positions; ``None`` for -1 padding."""
        return [self._ids[p] if p >= 0 else None for p in np.asarray(positions).tolist()]

    def save(self, path: str | Path | Location) -> None:
        """Write the index as a one-column Parquet file (column ``id``, row order = index)."""
        location = path if isinstance(path, Location) else Location.parse(str(path))
        location.fs.create_dir(location.path.rsplit("/", 1)[0], recursive=True)
        table = pa.table({"id": pa.array(self._ids, type=pa.string())})
        pq.write_table(table, location.path, filesystem=location.fs)

    @classmethod
    def load(cls, path: str | Path | Location) -> IdIndex:
        """Read an index written by :meth:`save`."""
        location = path if isinstance(path, Location) else Location.parse(str(path))
        try:
            table = pq.read_table(location.path, filesystem=location.fs)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ArtifactError(f"cannot read id index {path}: {exc}") from exc
        if table.column_names != ["id"]:
            raise ArtifactError(f"{path} is not an id index: columns {table.column_names}, expected ['id']")
        ids = table.column("id").to_pylist()
        index = cls(ids)
        if len(index) != len(ids):
            raise ArtifactError(f"id index {path} holds duplicate ids; it is corrupt")
        return index
