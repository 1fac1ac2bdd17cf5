"""An at-least-once consumer of a Redis Stream through a consumer group; knows nothing of Ray.

The loop, per batch:

1. entries come first from this consumer's own pending list (what it read before a crash), then
   from other consumers' entries idle for longer than ``claim_idle_ms`` (``XAUTOCLAIM``: a dead
   consumer's work is taken over), then new ones (``XREADGROUP >``);
2. malformed entries are written to the dead-letter stream with their reason and acknowledged in
   one ``MULTI``/``EXEC``, so a crash can neither lose nor double them;
3. the rest go to the sink (the EmbeddingUpdater) in one call, which returns only once every event
   and its user's new state are durable; only then are they acknowledged (``XACK``).

A crash between 3's write and its ``XACK`` redelivers the batch; the store recognises each
``event_id`` and answers ``duplicate`` without changing any state, so nothing is applied twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from jobs._stream_entries import Rejected, parse_entry
from recsys.engine import Ack, IncomingEvent

Entry = tuple[str, dict[bytes, bytes]]


class Sink(Protocol):
    """Applies events durably, in order; raises :class:`SinkRejected` for events it refuses."""

    def __call__(self, events: Sequence[IncomingEvent]) -> list[Ack]: ...


class SinkRejected(Exception):
    """The sink refused the events for their content (retrying them would fail the same way)."""


@dataclass(frozen=True)
class ConsumerConfig:
    stream: str
    group: str
    consumer: str
    dead_letter: str
    batch_size: int = 256
    block_ms: int = 1_000
    claim_idle_ms: int = 60_000
    start_id: str = "0"
    """Where a new group starts: ``0`` (the whole stream) or ``$`` (only entries added after)."""


@dataclass
class Counts:
    """What the consumer did so far; every entry read ends in exactly one of the last five."""

    read: int = 0
    claimed: int = 0
    applied: int = 0
    duplicate: int = 0
    pending_item: int = 0
    dead_lettered: int = 0
    trimmed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.applied + self.duplicate + self.pending_item + self.dead_lettered + self.trimmed


class StreamConsumer:
    """One named consumer in a group; call :meth:`step` in a loop (or :meth:`run`)."""

    def __init__(
        self,
        client: redis.Redis,
        config: ConsumerConfig,
        sink: Sink,
        known_types: Collection[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self.config = config
        self._sink = sink
        self._known_types = frozenset(known_types)
        self._clock = clock
        self._own_cursor: str | None = "0"  # replay our own pending entries first, then new ones
        self._last_claim = -float("inf")
        self.counts = Counts()

    def ensure_group(self) -> None:
        """Create the stream and the group when missing (``XGROUP CREATE ... MKSTREAM``)."""
        try:
            self._redis.xgroup_create(
                self.config.stream, self.config.group, id=self.config.start_id, mkstream=True
            )
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # ------------------------------------------------------------------ reading
    def _read_own_pending(self) -> list[Entry]:
        assert self._own_cursor is not None
        reply = self._redis.xreadgroup(
            self.config.group,
            self.config.consumer,
            {self.config.stream: self._own_cursor},
            count=self.config.batch_size,
        )
        entries = _entries(reply)
        if entries:
            self._own_cursor = entries[-1][0]
        else:
            self._own_cursor = None
        return entries

    def _claim_idle(self) -> list[Entry]:
        self._last_claim = self._clock()
        claimed: list[Entry] = []
        start = "0-0"
        while len(claimed) < self.config.batch_size:
            reply: Any = self._redis.xautoclaim(
                self.config.stream,
                self.config.group,
                self.config.consumer,
                min_idle_time=self.config.claim_idle_ms,
                start_id=start,
                count=self.config.batch_size - len(claimed),
            )
            start, batch = _decode_id(reply[0]), reply[1]
            claimed += [(_decode_id(i), dict(f or {})) for i, f in batch]
            if start == "0-0":
                break
        self.counts.claimed += len(claimed)
        return claimed

    def _read_new(self, block_ms: int) -> list[Entry]:
        reply = self._redis.xreadgroup(
            self.config.group,
            self.config.consumer,
            {self.config.stream: ">"},
            count=self.config.batch_size,
            block=block_ms,
        )
        return _entries(reply)

    def next_batch(self, *, block: bool = True) -> list[Entry]:
        """Own pending entries, else idle ones of others, else new ones (waiting up to block_ms)."""
        if self._own_cursor is not None:
            entries = self._read_own_pending()
            if entries:
                return entries
        if self._clock() - self._last_claim >= max(self.config.claim_idle_ms / 2000.0, 0.5):
            entries = self._claim_idle()
            if entries:
                return entries
        return self._read_new(self.config.block_ms if block else 0)

    # ------------------------------------------------------------------ processing
    def process(self, entries: Sequence[Entry]) -> None:
        """Dead-letter malformed entries, apply the rest durably, then acknowledge them."""
        self.counts.read += len(entries)
        good: list[tuple[Entry, IncomingEvent]] = []
        for entry in entries:
            entry_id, fields = entry
            if not fields:  # trimmed from the stream while pending: nothing left to apply
                self._redis.xack(self.config.stream, self.config.group, entry_id)
                self.counts.trimmed += 1
                continue
            parsed = parse_entry(self.config.stream, entry_id, fields, self._known_types)
            if isinstance(parsed, Rejected):
                self._dead_letter(entry, parsed)
            else:
                good.append((entry, parsed))
        if good:
            self._apply(good)

    def _apply(self, good: list[tuple[Entry, IncomingEvent]]) -> None:
        try:
            acks = self._sink([event for _, event in good])
        except SinkRejected as exc:
            if len(good) == 1:
                self._dead_letter(good[0][0], Rejected("rejected_by_updater", str(exc)))
                return
            for one in good:  # find the entry the updater refuses; the others are applied
                self._apply([one])
            return
        self._redis.xack(self.config.stream, self.config.group, *[entry[0] for entry, _ in good])
        for ack in acks:
            setattr(self.counts, ack.status, getattr(self.counts, ack.status) + 1)

    def _dead_letter(self, entry: Entry, why: Rejected) -> None:
        entry_id, fields = entry
        record: dict[Any, Any] = {
            "reason": why.code,
            "message": why.message[:2_000],
            "source_stream": self.config.stream,
            "source_id": entry_id,
            "consumer": self.config.consumer,
        }
        record.update({b"field:" + key: value for key, value in fields.items()})
        with self._redis.pipeline(transaction=True) as pipe:  # both or neither
            pipe.xadd(self.config.dead_letter, record)
            pipe.xack(self.config.stream, self.config.group, entry_id)
            pipe.execute()
        self.counts.dead_lettered += 1
        self.counts.reasons[why.code] = self.counts.reasons.get(why.code, 0) + 1

    def step(self, *, block: bool = True) -> int:
        """Read and process one batch; how many entries it held."""
        entries = self.next_batch(block=block)
        if entries:
            self.process(entries)
        return len(entries)

    # ------------------------------------------------------------------ observing
    def backlog(self) -> tuple[int, int]:
        """(entries not yet delivered to the group, entries delivered but not acknowledged)."""
        for group in self._redis.xinfo_groups(self.config.stream):
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.config.group:
                return int(group.get("lag") or 0), int(group["pending"])
        return 0, 0


def _decode_id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(reply: Any) -> list[Entry]:
    if not reply:
        return []
    (_, batch), *_ = reply
    return [(_decode_id(entry_id), dict(fields or {})) for entry_id, fields in batch]
