"""What serving stores, and the small protocols every backend implements.

A :class:`Store` is composed of six parts: an append-only :class:`EventLog`, a versioned
:class:`StateStore` of opaque per-user state bytes, an :class:`ItemStore` of items added live, a
:class:`PromotionStore` of campaigns and per-user exposure counters, an :class:`ExposureStore` of
A/B exposures (with attributed outcomes, per-variant counters, sticky assignments and traffic
allocations), and a :class:`JourneyStore` of served-page counters. On top,
:meth:`Store.append_and_update` appends an event *and* moves its user's state from version ``v`` to
``v + 1`` in one atomic step.

Guarantees (both backends)
--------------------------
* **Acknowledged means durable.** A write method returns only after the backend committed it
  durably: SQLite commits with ``synchronous=FULL`` (the WAL is fsynced on every commit); Redis must
  run with ``appendonly yes`` and ``appendfsync always`` (fsync before the reply; check it with
  ``require_fsync``). Anything weaker is a documented, opt-in trade-off.
* **Read-your-writes across replicas.** No method caches: every read goes to the store, so a write
  acknowledged to one store object is seen by the next read of any other one on the same URL.
* **Idempotency by event id.** An ``event_id`` already in the log is detected inside the same atomic
  step as the append (SQLite: under the database write lock, backed by a ``UNIQUE`` constraint;
  Redis: inside one Lua script) and reported as ``duplicate=True`` with the original sequence; nothing
  is appended and no state is changed, even when the expected version no longer matches.
* **Served-page counters are the one exception to durability.** :meth:`JourneyStore.record_served`
  (pages since the last signal, campaign exposures) is best effort: SQLite commits it without an
  fsync (``synchronous=NORMAL`` on a connection of its own; the next durable commit syncs it too),
  so a power loss may lose the last counts, never an event or a state. Redis writes it like
  everything else.
* **Compare-and-set on state versions.** A user without state is at version ``0``; every write takes
  the version the caller read and stores ``version + 1``, or raises :class:`ConflictError` and writes
  nothing, so the caller can re-read and retry.
* **Atomic event + state.** :meth:`Store.append_and_update` never stores an event without its state
  update, nor the reverse. Each state remembers the sequence of the last event written with it
  (``seq``), so after restoring an older snapshot, ``events_for_user(user, after_seq=state.seq)``
  are exactly the events it has not seen.
* **Sequences** are positive, increase in append order, and are never reused, even after deletes.
  They are given under the write lock (SQLite) or inside the script (Redis), so an event becomes
  visible only together with every lower sequence: reading ``after_seq`` never skips a late commit.

Limits
------
* Forgetting a user erases their event ids too: a late retry of a forgotten event is new again.
* Deleting a state resets its version to ``0``; a writer holding a version read before the delete
  can only succeed if the state is re-created up to that same version in between.
* Redis needs one server (replicas allowed), not Redis Cluster; its ``iter_states`` and
  ``replace_states`` are not atomic (snapshots stay exact through each state's ``seq``).

Event timestamps are integer milliseconds since the epoch (UTC). Payloads, item attributes and
campaign documents must be JSON-serialisable.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from recsys.store.errors import ConflictError


@dataclass(frozen=True, slots=True)
class Event:
    """One interaction event as the log keeps it.

    Examples
    --------
    >>> Event("e-1", "u1", "i9", "click", timestamp_ms=1_700_000_000_000, payload={"device": "tv"})
    ... # doctest: +ELLIPSIS
    Event(event_id='e-1', user_id='u1', ...)
    """

    event_id: str
    """Unique id for idempotency; generate a UUID when the client sent none."""
    user_id: str
    item_id: str
    event_type: str
    timestamp_ms: int
    value: float | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    """Context (device, session, text, request id, ...), stored as JSON."""

    def __post_init__(self) -> None:
        for name in ("event_id", "user_id", "item_id", "event_type"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"Event.{name} must be a non-empty string, got {getattr(self, name)!r}")
        try:  # numpy integers are fine; floats and strings are not
            object.__setattr__(self, "timestamp_ms", operator.index(self.timestamp_ms))
        except TypeError:
            raise ValueError(
                f"Event.timestamp_ms must be integer milliseconds, got {self.timestamp_ms!r}"
            ) from None
        if self.value is not None:
            if not math.isfinite(self.value):
                raise ValueError(f"Event.value must be a finite number or None, got {self.value!r}")
            object.__setattr__(self, "value", float(self.value))


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event with the sequence number the log gave it."""

    seq: int
    event: Event


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did: the event's sequence, and whether its id was already in the log."""

    sequence: int
    """The new sequence, or the original event's sequence when ``duplicate``."""
    duplicate: bool


@dataclass(frozen=True, slots=True)
class UpdateResult(AppendResult):
    """What :meth:`Store.append_and_update` did."""

    version: int
    """The user's state version now: the new one, or the current one when ``duplicate``."""


class VersionedState(NamedTuple):
    """A user's state: opaque bytes with the version the next write must name."""

    version: int
    data: bytes
    seq: int
    """Sequence of the last event written with this state (0: none)."""


class StateUpdate(NamedTuple):
    """One item of :meth:`Store.append_and_update_many`."""

    event: Event
    data: bytes
    expected_version: int


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """An item added or changed live (``PUT /items/{id}``)."""

    item_id: str
    title: str | None = None
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    text: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Exposure:
    """One A/B exposure: which items a request showed to whom under which variant."""

    request_id: str
    user_id: str
    variant: str
    item_ids: tuple[str, ...]
    timestamp_ms: int
    experiment: str = ""
    """The experiment it belongs to; exposures with one are counted per (experiment, variant)."""


@dataclass(frozen=True, slots=True)
class ServedPage:
    """A page shown to a user: counted for the journey policy and the campaigns' frequency caps."""

    user_id: str
    signals: int
    """The user's signal count (``UserState.n_signals``) when the page was ranked."""
    campaign_ids: tuple[str, ...] = ()
    """Campaigns promoted on the page (one exposure each)."""


@dataclass(frozen=True, slots=True)
class ServedCounts:
    """A user's served-page counters: pages since signal count ``signals``, exposures per campaign."""

    signals: int = 0
    pages: int = 0
    exposures: Mapping[str, int] = field(default_factory=dict)

    def pages_at(self, signals: int) -> int:
        """Pages served since the user's signal count was ``signals`` (0 when they moved on)."""
        return self.pages if signals == self.signals else 0


class RankingRead(NamedTuple):
    """What ranking one user's page reads, in one round trip (:meth:`Store.read_for_ranking`)."""

    revision: int
    """:meth:`ItemStore.catalogue_revision`."""
    state: VersionedState | None
    """:meth:`StateStore.get_state`."""
    served: ServedCounts
    """:meth:`JourneyStore.served_counts`."""


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """What :meth:`Store.forget_user` erased."""

    events: int
    state: bool


@runtime_checkable
class EventLog(Protocol):
    """Append-only log of events in sequence order, deduplicated by ``event_id``."""

    def append(self, event: Event) -> AppendResult:
        """Append one event unless its id is already in the log; durable on return."""
        ...

    def append_many(self, events: Sequence[Event]) -> list[AppendResult]:
        """Append several events with one durable commit (SQLite: one transaction)."""
        ...

    def events_for_user(
        self, user_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """The user's events with ``seq > after_seq``, oldest first."""
        ...

    def events_for_item(
        self, item_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """Events that reference ``item_id`` (e.g. pending ones for an item added later), oldest first."""
        ...

    def iter_events(self, *, after_seq: int = 0, batch_size: int = 1000) -> Iterator[StoredEvent]:
        """Every event with ``seq > after_seq`` in order, fetched in batches (for re-deriving states)."""
        ...

    def count_events(self, *, user_id: str | None = None, item_id: str | None = None) -> int:
        """How many events are in the log, for one user or one item when given."""
        ...

    def last_sequence(self) -> int:
        """The highest sequence ever given (0 when none), deleted events included."""
        ...

    def delete_user_events(self, user_id: str) -> int:
        """Erase the user's events; return how many. Prefer :meth:`Store.forget_user`."""
        ...


@runtime_checkable
class StateStore(Protocol):
    """Per-user opaque state bytes with optimistic concurrency on a version number."""

    def get_state(self, user_id: str) -> VersionedState | None:
        """The user's state, or ``None`` (version 0)."""
        ...

    def put_state(self, user_id: str, data: bytes, expected_version: int, *, seq: int | None = None) -> int:
        """Write the state if it is still at ``expected_version``; return the new version.

        ``seq`` records the last event folded into ``data``; ``None`` keeps the stored one.

        Raises
        ------
        ConflictError
            When the stored version is not ``expected_version``; nothing is written.
        """
        ...

    def delete_state(self, user_id: str) -> bool:
        """Remove the user's state; ``True`` when there was one."""
        ...

    def count_states(self) -> int:
        """How many users have a state."""
        ...

    def iter_states(self) -> Iterator[tuple[str, VersionedState]]:
        """Every ``(user_id, state)``, in no particular order (for snapshots)."""
        ...

    def replace_states(self, states: Iterable[tuple[str, VersionedState]]) -> int:
        """Drop every state and write these, versions included (restore; not for live traffic)."""
        ...


@runtime_checkable
class ItemStore(Protocol):
    """Items added or changed while serving."""

    def put_item(self, item: ItemRecord) -> bool:
        """Insert or replace the item; ``True`` when it is new."""
        ...

    def get_item(self, item_id: str) -> ItemRecord | None: ...

    def get_items(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        """The known ones among ``item_ids``."""
        ...

    def delete_item(self, item_id: str) -> bool: ...

    def iter_items(self) -> Iterator[ItemRecord]: ...

    def count_items(self) -> int: ...

    def catalogue_revision(self) -> int:
        """A number that changes whenever any writer adds, changes or deletes an item or a campaign
        (a replica compares it to pick up others' catalogue changes with one cheap read)."""
        ...


@runtime_checkable
class PromotionStore(Protocol):
    """Campaign documents by id, and how often each user was shown each campaign."""

    def put_campaign(self, campaign_id: str, document: Mapping[str, Any]) -> bool:
        """Insert or replace a campaign (any JSON document); ``True`` when it is new."""
        ...

    def get_campaign(self, campaign_id: str) -> dict[str, Any] | None: ...

    def delete_campaign(self, campaign_id: str) -> bool:
        """Remove a campaign; users' exposure counters for it are kept."""
        ...

    def list_campaigns(self) -> dict[str, dict[str, Any]]: ...

    def increment_promotion_exposure(self, user_id: str, campaign_id: str, by: int = 1) -> int:
        """Add ``by`` to the user's counter for the campaign atomically; return the new count."""
        ...

    def promotion_exposures(self, user_id: str) -> dict[str, int]:
        """The user's exposure count per campaign id."""
        ...


@runtime_checkable
class ExposureStore(Protocol):
    """A/B exposures by request id, for attributing later events to a variant."""

    def record_exposure(self, exposure: Exposure) -> bool:
        """Store it unless the request id is known; ``True`` when stored."""
        ...

    def get_exposure(self, request_id: str) -> Exposure | None: ...

    def record_outcome(self, request_id: str, outcome: str) -> bool:
        """Count ``outcome`` (e.g. ``clicks``) once for the exposure, in its experiment's counters.

        Marking the exposure and incrementing the ``(experiment, variant, outcome)`` counter are one
        atomic step; ``False`` (nothing written) when the exposure is unknown or already has it.
        """
        ...

    def experiment_counts(self, experiment: str) -> dict[str, dict[str, int]]:
        """The experiment's counters: ``{variant: {"exposures": n, "clicks": n, ...}}``."""
        ...

    def assign_variant(self, experiment: str, user_id: str, variant: str) -> str:
        """Keep the user's variant if they have one, else store ``variant``; the stored variant."""
        ...

    def get_assignment(self, experiment: str, user_id: str) -> str | None: ...

    def put_allocation(self, experiment: str, shares: Mapping[str, float]) -> None:
        """Store the experiment's current traffic shares for new users (Thompson sampling)."""
        ...

    def get_allocation(self, experiment: str) -> dict[str, float] | None: ...


@runtime_checkable
class JourneyStore(Protocol):
    """Served-page counters (journey policy, campaign caps), shared by every replica, best effort."""

    def record_served(self, pages: Sequence[ServedPage]) -> None:
        """Count the pages in one write, **not** fsynced on SQLite (module doc).

        Per user, ``pages`` counts pages served since the signal count ``signals``: a page at the
        stored count adds one, a page at a higher count starts over at one, a page at a lower count
        (ranked before a signal that has since been stored) is ignored. Each campaign id adds one
        to :meth:`PromotionStore.promotion_exposures`.
        """
        ...

    def served_counts(self, user_id: str) -> ServedCounts:
        """The user's counters (zeros when none); one round trip."""
        ...


@runtime_checkable
class Store(EventLog, StateStore, ItemStore, PromotionStore, ExposureStore, JourneyStore, Protocol):
    """Everything serving keeps; one object per replica, opened with :func:`recsys.store.open_store`."""

    def read_for_ranking(self, user_id: str) -> RankingRead:
        """The catalogue revision, the user's state and served counters in one round trip (one
        SQLite statement, one Redis pipeline): what every recommendation reads, so one read
        instead of three (each a round trip on Redis, and a release of the GIL on SQLite)."""
        ...

    def append_and_update(self, event: Event, data: bytes, expected_version: int) -> UpdateResult:
        """Append ``event`` and set its user's state to ``data`` at ``expected_version + 1``, atomically.

        A duplicate ``event_id`` changes nothing and returns ``duplicate=True``.

        Raises
        ------
        ConflictError
            When the state is no longer at ``expected_version``; neither the event nor the state
            is written.
        """
        ...

    def append_and_update_many(self, updates: Sequence[StateUpdate]) -> list[UpdateResult | ConflictError]:
        """:meth:`append_and_update` for several events, one durable commit; conflicts are returned.

        Updates apply in order, so two events of one user in a batch must carry consecutive
        versions. The batch runs as one unit (SQLite: one transaction; Redis: MULTI/EXEC of one
        script per update) with one durable commit; each update still succeeds or conflicts alone.
        """
        ...

    def forget_user(self, user_id: str) -> ForgetResult:
        """Erase everything about the user atomically: state, events, promotion and served-page
        counters, exposures (with their outcome marks) and experiment assignments; aggregate
        counters are kept."""
        ...

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers (for health checks)."""
        ...

    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""
        ...
