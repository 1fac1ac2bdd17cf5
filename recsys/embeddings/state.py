"""Per-user real-time state, and its compact exact serialisation for a store (SQLite, Redis).

What a store persists per user (everything bounded):

* ``version``: incremented by every change (applied event, page served, forget) so a store can do
  optimistic concurrency: write only if the stored version is the one read.
* ``interests``: up to K interest vectors (sum of decayed unit item vectors, total weight,
  strongest anchor items for explanations).
* ``recent``: the last signals (item, signed weight, time, event ordinal, type), used for item-item
  scoring, explanations and the intent summary.
* ``seen``: interacted item indices in recency order (LRU, last 5,000 by default), filtered out by
  the ranker.
* ``event_ids``: the last event ids applied (1,000 by default), for idempotent ingestion. Older
  replays are caught by the durable event log's unique constraint on ``event_id``, not here.
* counts per event type, the decayed positive ``evidence`` (confidence), the last signal time and
  pages served since (journey policy), promotion exposures per campaign, and, when the space is
  ALS, the exact fold-in terms (per-item confidence and the solved vector). The inverse ALS system
  and ``Y^T C p`` are a cache rebuilt from the confidences on first use, never stored.

``to_dict`` gives plain JSON types (arrays as base64 of float32/float64 bytes, so the round trip is
bit-exact); ``to_bytes`` is that JSON, zlib-compressed (level :data:`COMPRESSION`). The JSON is
written and read by pydantic-core (``to_json`` / ``from_json``): the same documents as the standard
library's ``json`` reads and writes, several times faster (every event re-encodes its user's state).
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pydantic_core

from recsys.embeddings._codec import decode_array, encode_array
from recsys.errors import ArtifactError

FORMAT_VERSION = 1

COMPRESSION = 1
"""zlib level of :meth:`UserState.to_bytes`. Level 1 compresses a state of a few hundred signals
about 2x faster than the default 6, for ~7% more bytes (any level decompresses the same way)."""


@dataclass(eq=False)
class Interest:
    """One interest: ``total`` is the decayed sum of unit item vectors, ``weight`` their weight."""

    total: np.ndarray
    weight: float
    anchors: list[tuple[int, float]] = field(default_factory=list)

    @property
    def direction(self) -> np.ndarray:
        """Unit vector of the interest (zeros if degenerate)."""
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm > 0 else np.zeros_like(self.total)

    def add_anchor(self, item: int, weight: float, limit: int) -> None:
        """Remember ``item`` as one of the strongest items behind this interest."""
        merged = dict(self.anchors)
        merged[item] = merged.get(item, 0.0) + weight
        self.anchors = sorted(merged.items(), key=lambda pair: -pair[1])[:limit]


@dataclass(frozen=True)
class Signal:
    """An applied event: item index, signed weight, timestamp, ordinal among signals, type."""

    item: int
    weight: float
    timestamp: float
    ordinal: int
    event_type: str


@dataclass(eq=False)
class UserState:
    """Everything the engine keeps about one user between requests.

    Examples
    --------
    >>> state = UserState("u1")
    >>> state.version, state.has_signal
    (0, False)
    >>> UserState.from_bytes(state.to_bytes()) == state
    True
    """

    user_id: str
    version: int = 0
    n_signals: int = 0
    clock: float | None = None
    interests: list[Interest] = field(default_factory=list)
    recent: list[Signal] = field(default_factory=list)
    seen: OrderedDict[int, None] = field(default_factory=OrderedDict)
    event_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    counts: dict[str, int] = field(default_factory=dict)
    evidence: float = 0.0
    positives: int = 0
    last_signal_time: float | None = None
    pages_since_signal: int = 0
    exposures: dict[str, int] = field(default_factory=dict)
    ls_confidence: dict[int, float] = field(default_factory=dict)
    ls_vector: np.ndarray | None = None
    model_version: str | None = None
    """The serving bundle version whose space the vectors live in (``None``: unversioned); a
    state of another version is re-derived from the user's events (recsys.engine.rederive)."""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ views
    @property
    def has_signal(self) -> bool:
        """Whether any event has moved this user (else they are on the prior)."""
        return self.n_signals > 0

    def shares(self) -> np.ndarray:
        """Each interest's share of the total interest weight."""
        weights = np.array([max(i.weight, 0.0) for i in self.interests], dtype=np.float64)
        total = weights.sum()
        return weights / total if total > 0 else weights

    def mixture(self) -> np.ndarray | None:
        """The share-weighted mean direction of all interests (unit), or ``None`` without any."""
        if not self.interests:
            return None
        total = sum(s * i.direction for s, i in zip(self.shares(), self.interests, strict=True))
        norm = float(np.linalg.norm(total))
        return (total / norm).astype(np.float32) if norm > 0 else None

    def copy(self) -> UserState:
        """An independent copy to update (about a third of a decode round trip).

        The derived caches are shared, not copied: their entries are only ever replaced, never
        changed in place (the fold-in's ``A^-1`` is one such entry, so an event on the copy stays
        an O(d^2) update instead of an O(d^3) rebuild).

        Examples
        --------
        >>> state = UserState("u1", interests=[Interest(np.ones(2, dtype="float32"), 1.0)])
        >>> other = state.copy()
        >>> other.interests[0].total *= 2
        >>> float(state.interests[0].total[0]), other.to_bytes() == state.to_bytes()
        (1.0, False)
        """
        return replace(
            self,
            interests=[Interest(i.total.copy(), i.weight, list(i.anchors)) for i in self.interests],
            recent=list(self.recent),
            seen=OrderedDict(self.seen),
            event_ids=OrderedDict(self.event_ids),
            counts=dict(self.counts),
            exposures=dict(self.exposures),
            ls_confidence=dict(self.ls_confidence),
            ls_vector=None if self.ls_vector is None else self.ls_vector.copy(),
            _cache=dict(self._cache),
        )

    def remember(self, mapping: OrderedDict[Any, None], key: Any, limit: int) -> None:
        """Insert or refresh ``key`` in an LRU ``mapping`` bounded to ``limit`` entries."""
        mapping[key] = None
        mapping.move_to_end(key)
        while len(mapping) > limit:
            mapping.popitem(last=False)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the state (caches excluded); :meth:`from_dict` restores it exactly."""
        return {
            "format_version": FORMAT_VERSION,
            "user_id": self.user_id,
            "version": self.version,
            "n_signals": self.n_signals,
            "clock": self.clock,
            "interests": [
                {"total": encode_array(i.total), "weight": i.weight, "anchors": [list(a) for a in i.anchors]}
                for i in self.interests
            ],
            "recent": [[s.item, s.weight, s.timestamp, s.ordinal, s.event_type] for s in self.recent],
            "seen": list(self.seen),
            "event_ids": list(self.event_ids),
            "counts": dict(self.counts),
            "evidence": self.evidence,
            "positives": self.positives,
            "last_signal_time": self.last_signal_time,
            "pages_since_signal": self.pages_since_signal,
            "exposures": dict(self.exposures),
            "ls_confidence": [[item, value] for item, value in self.ls_confidence.items()],
            "ls_vector": None if self.ls_vector is None else encode_array(self.ls_vector),
            "model_version": self.model_version,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> UserState:
        """Rebuild a state written by :meth:`to_dict`."""
        if document.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"user state has format_version {document.get('format_version')!r}; this code reads "
                f"{FORMAT_VERSION}: replay the user's events from the event log to rebuild it"
            )
        try:
            return cls(
                user_id=str(document["user_id"]),
                version=int(document["version"]),
                n_signals=int(document["n_signals"]),
                clock=document["clock"],
                interests=[
                    Interest(
                        total=decode_array(i["total"]),
                        weight=float(i["weight"]),
                        anchors=[(int(a), float(w)) for a, w in i["anchors"]],
                    )
                    for i in document["interests"]
                ],
                recent=[
                    Signal(int(i), float(w), float(t), int(o), str(e)) for i, w, t, o, e in document["recent"]
                ],
                seen=OrderedDict((int(i), None) for i in document["seen"]),
                event_ids=OrderedDict((str(e), None) for e in document["event_ids"]),
                counts={str(k): int(v) for k, v in document["counts"].items()},
                evidence=float(document["evidence"]),
                positives=int(document["positives"]),
                last_signal_time=document["last_signal_time"],
                pages_since_signal=int(document["pages_since_signal"]),
                exposures={str(k): int(v) for k, v in document["exposures"].items()},
                ls_confidence={int(i): float(v) for i, v in document["ls_confidence"]},
                ls_vector=None if document["ls_vector"] is None else decode_array(document["ls_vector"]),
                model_version=document.get("model_version"),  # absent in states written before versioning
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed user state document: {exc!r}") from exc

    def to_bytes(self) -> bytes:
        """Compressed JSON of :meth:`to_dict` (non-finite floats as ``NaN`` / ``Infinity``, as the
        standard library writes them)."""
        return zlib.compress(pydantic_core.to_json(self.to_dict(), inf_nan_mode="constants"), COMPRESSION)

    @classmethod
    def from_bytes(cls, payload: bytes) -> UserState:
        """Inverse of :meth:`to_bytes`."""
        try:
            document = pydantic_core.from_json(zlib.decompress(payload))
        except (zlib.error, ValueError) as exc:
            raise ArtifactError(f"user state bytes are not a compressed JSON document: {exc}") from exc
        return cls.from_dict(document)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserState):
            return NotImplemented
        return json.dumps(self.to_dict()) == json.dumps(other.to_dict())

    __hash__ = None  # type: ignore[assignment]
