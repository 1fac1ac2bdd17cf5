"""A columnar batch of events as numpy arrays (ids as integer codes), and a FIFO of such batches."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from recsys.data.schema import DEFAULT_EVENT_WEIGHTS

EVENT_TYPES: tuple[str, ...] = (*DEFAULT_EVENT_WEIGHTS, "teleport", "levitate", "hyperjump")
"""Event type codes: the default known types, then unknown ones used only as dirt."""
N_KNOWN_TYPES = len(DEFAULT_EVENT_WEIGHTS)
NULL_TS = np.iinfo(np.int64).min
BOT_FAULT = 100
"""``fault`` code of bot rows (row faults are ``1 + index`` in ``EVENT_DIRT_KINDS``)."""
BOT_SESSION_BASE = 1 << 40
"""Bots' session numbers start here, far above any clean session number."""


@dataclass
class Events:
    """Events as parallel arrays. Missing values: ``-1`` codes, ``NaN`` value, :data:`NULL_TS`."""

    user: np.ndarray
    item: np.ndarray
    event_type: np.ndarray
    value: np.ndarray
    timestamp: np.ndarray
    event_num: np.ndarray
    """Number behind the event id; ids are a keyed bijection of it, so distinct numbers never clash."""
    device: np.ndarray
    session: np.ndarray
    text: np.ndarray
    """Index into ``texts`` of the row's review, ``-1`` for none."""
    in_cluster: np.ndarray
    fault: np.ndarray
    texts: list[str] = field(default_factory=list)
    """Review strings the rows point at (shared, never reordered)."""

    @classmethod
    def empty(cls, n: int) -> Events:
        return cls(
            user=np.full(n, -1, dtype=np.int32),
            item=np.full(n, -1, dtype=np.int32),
            event_type=np.full(n, -1, dtype=np.int8),
            value=np.full(n, np.nan),
            timestamp=np.full(n, NULL_TS, dtype=np.int64),
            event_num=np.full(n, -1, dtype=np.int64),
            device=np.zeros(n, dtype=np.int8),
            session=np.full(n, -1, dtype=np.int64),
            text=np.full(n, -1, dtype=np.int32),
            in_cluster=np.zeros(n, dtype=bool),
            fault=np.zeros(n, dtype=np.int8),
        )

    @classmethod
    def of(cls, **arrays: np.ndarray) -> Events:
        """A batch from some columns (cast to their dtypes); the others get their missing value."""
        n = len(next(iter(arrays.values())))
        blank = cls.empty(1)
        columns: dict[str, Any] = {
            name: arrays[name].astype(getattr(blank, name).dtype, copy=False)
            if name in arrays
            else np.full(n, getattr(blank, name)[0], dtype=getattr(blank, name).dtype)
            for name in _ARRAYS
        }
        return cls(**columns)

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray | slice) -> Events:
        arrays = {name: getattr(self, name)[index] for name in _ARRAYS}
        return Events(**arrays, texts=self.texts)

    @classmethod
    def concat(cls, parts: list[Events]) -> Events:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty(0)
        arrays = {
            name: np.concatenate([getattr(p, name) for p in parts]) for name in _ARRAYS if name != "text"
        }
        texts: list[str] = []
        shifted = []
        for part in parts:
            shifted.append(np.where(part.text >= 0, part.text + len(texts), -1).astype(np.int32))
            texts.extend(part.texts)
        return cls(**arrays, text=np.concatenate(shifted), texts=texts)

    def scatter(self, positions: np.ndarray, other: Events) -> None:
        """Write ``other``'s rows at ``positions`` of this batch (texts are appended)."""
        for name in _ARRAYS:
            if name != "text":
                getattr(self, name)[positions] = getattr(other, name)
        self.text[positions] = np.where(other.text >= 0, other.text + len(self.texts), -1)
        self.texts = [*self.texts, *other.texts]


_ARRAYS: tuple[str, ...] = tuple(f.name for f in fields(Events) if f.name != "texts")


class EventQueue:
    """A FIFO of event batches: generated blocks go in, chunk-sized batches come out."""

    def __init__(self) -> None:
        self._parts: list[Events] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, events: Events) -> None:
        self._parts.append(events)
        self._size += len(events)

    def pop(self, n: int) -> Events:
        """The next ``n`` rows (fewer if the queue holds fewer)."""
        taken: list[Events] = []
        need = n
        while need > 0 and self._parts:
            head = self._parts[0]
            if len(head) <= need:
                taken.append(self._parts.pop(0))
                need -= len(head)
            else:
                taken.append(head.take(slice(0, need)))
                self._parts[0] = head.take(slice(need, None))
                need = 0
        out = Events.concat(taken)
        self._size -= len(out)
        return out
