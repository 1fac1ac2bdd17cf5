"""The per-replica core of serving: events in, pages out, state in a shared durable store.

:class:`Engine` knows nothing of Ray Serve. Each serving replica holds one; every call reads the
user's state from the store (so a write acknowledged by any replica is seen by the next read of any
other: read-your-writes) and every event is written with its user's new state in one atomic,
durable step (``Store.append_and_update``: compare-and-set on the state version, idempotent by
``event_id``) before it is acknowledged.

* An event for an item the model does not know is stored in the log, counted, and acknowledged as
  ``pending_item``; when the item is added (``put_item``) its pending events are applied.
* Items added live are projected from their content into the embedding space at once; other
  replicas pick them (and promotions) up on their next call (:meth:`Engine.sync`).
* Each state records the bundle version it was computed in; an engine serving another version
  re-derives it from the user's events on first touch (:mod:`recsys.engine.rederive`), so a model
  swap needs no downtime and no bulk migration.
* Showing a page updates journey and promotion counters (:meth:`Engine.record_served`); that write
  is best-effort and may run after the response.
* Showing a page counts it for the journey policy and the promotion caps
  (:meth:`Engine.record_served`, or :meth:`Engine.served_later` from a background thread). These
  counters live beside the state (:class:`~recsys.store.JourneyStore`): cheap, best-effort writes
  without an fsync that neither bump the state version nor race with events; each read overlays
  them on the state (pages since the user's current signal count, exposures per campaign), and
  with them the pages this engine has not written yet (``served_later`` writes every 50 ms).
* :meth:`Engine.ingest` writes a batch of events in rounds of one event per user, each round one
  durable commit (``Store.append_and_update_many``); an event whose user another replica wrote
  first is re-read and retried in the next round, behind nothing of its own user.

Thread safety: ranking and ingesting may run in several threads at once; catalogue and promotion
changes (``sync``, ``put_item``, promotions) take a lock and swap the ranker in one assignment.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from recsys.data.ids import IdIndex
from recsys.embeddings import EmbeddingSpace, EmbeddingUpdater, UpdaterConfig, UserState
from recsys.embeddings import Event as UpdateEvent
from recsys.engine._served import ServedRecorder
from recsys.engine.rederive import state_fold
from recsys.errors import ConfigError
from recsys.features.items import ItemFeaturizer
from recsys.ranking import Campaign, Filters, ItemItemScorer, RankedItem, Ranker, RankerConfig, RequestContext
from recsys.ranking._scoring import Blended
from recsys.store import ConflictError, RankingRead, ServedPage, StateUpdate, Store, VersionedState
from recsys.store.base import Event as StoredEvent
from recsys.store.base import ForgetResult, ItemRecord
from recsys.store.snapshot import replay_user

AckStatus = Literal["applied", "duplicate", "pending_item"]
DECODED_STATES = 512
"""Decoded user states an engine keeps, least recently used first out: each is checked against the
stored bytes on every read (a state another writer changed is decoded again); a state this engine
writes is kept as written (its pages and bytes match a decoded copy's; tests/unit/test_engine.py), and an
update starts from a copy of it instead of a decode."""
BLEND_BUDGET_BYTES = 48 * 2**20
"""Memory for blended scores kept for ranking, shortlists included (about 135 users' at 10k items
and 4 interests)."""
MAX_RETRIES = 16


@dataclass(frozen=True)
class IncomingEvent:
    """An event as a client sends it (ids are external strings; time in epoch seconds)."""

    user_id: str
    item_id: str
    event_type: str
    timestamp: float
    value: float | None = None
    event_id: str | None = None
    context: dict[str, Any] | None = None
    request_id: str | None = None
    """The recommendation response this event acts on (A/B attribution); kept in the payload."""


@dataclass(frozen=True)
class Ack:
    user_id: str
    event_id: str
    status: AckStatus
    state_version: int


@dataclass(frozen=True)
class Page:
    """A recommendation page with the state version (and signal count) it was computed from."""

    user_id: str
    state_version: int
    items: list[RankedItem]
    has_history: bool = False
    """Whether any event had moved the user (else the page is the zero-history one)."""
    signals: int = 0
    """The user's signal count when the page was ranked (journey counters key on it)."""


class Engine:
    """Events, recommendations, items and promotions over one model and one store.

    Parameters
    ----------
    space, scorers : the embedding space and item-item scorers of the serving bundle.
    item_ids : IdIndex mapping external item ids to rows of the space.
    store : the shared durable :class:`~recsys.store.Store`.
    featurizer : the fitted item featurizer (projects new items' content); ``None`` disables it.
    clock : seconds since the epoch (injected so tests control time).
    """

    def __init__(
        self,
        *,
        space: EmbeddingSpace,
        item_ids: IdIndex,
        store: Store,
        scorers: Sequence[ItemItemScorer] = (),
        featurizer: ItemFeaturizer | None = None,
        updater_config: UpdaterConfig | None = None,
        ranker_config: RankerConfig | None = None,
        clock: Callable[[], float] = time.time,
        model_version: str | None = None,
    ) -> None:
        self.model_version = model_version
        """The bundle version served; states of another version are re-derived on first touch."""
        self._store = store
        self._scorers = tuple(scorers)
        self._featurizer = featurizer
        self._updater_config = updater_config or UpdaterConfig()
        self._ranker_config = ranker_config or RankerConfig()
        self._clock = clock
        self._item_ids = IdIndex(item_ids.ids)
        self._base_items = len(item_ids)
        self._campaigns: tuple[Campaign, ...] = ()
        self._synced = -1  # the catalogue revision last synced
        self._lock = threading.RLock()
        self._recorder: ServedRecorder | None = None
        self._decoded: OrderedDict[str, tuple[bytes, UserState]] = OrderedDict()
        self._blends: OrderedDict[str, tuple[bytes, EmbeddingSpace, Blended]] = OrderedDict()
        self._install(space)

    # ------------------------------------------------------------------ model and catalogue
    def _install(self, space: EmbeddingSpace) -> None:
        self.space = space
        self._updater = EmbeddingUpdater(space, self._updater_config)
        self._ranker = Ranker(space, self._scorers, self._ranker_config, self._campaigns)

    @property
    def n_items(self) -> int:
        return self.space.n_items

    @property
    def known_event_types(self) -> frozenset[str]:
        return self._updater_config.weights.event_types.names

    def ping(self) -> None:
        """Raise :class:`~recsys.store.StoreError` if the store does not answer."""
        self._store.ping()

    def item_index(self, item_id: str) -> int | None:
        index = int(self._item_ids.lookup([item_id])[0])
        return index if index >= 0 else None

    def item_id(self, index: int) -> str:
        found = self._item_ids.to_ids([index])[0] if index < len(self._item_ids) else None
        return found if found is not None else str(index)

    def sync(self) -> None:
        """Pick up items and promotions other replicas added: one read of the store's catalogue
        revision when nothing changed (read first, so a change made meanwhile is seen next time).
        :meth:`recommend` syncs itself, from the same read as the user's state."""
        self._sync_to(self._store.catalogue_revision())

    def _sync_to(self, revision: int) -> None:
        """Catch up with the catalogue when ``revision`` (read before the catalogue) moved."""
        if revision == self._synced:
            return
        with self._lock:
            self._sync(self._store.list_campaigns())
            self._synced = revision

    def _sync(self, campaigns: dict[str, dict[str, Any]]) -> None:
        records = [r for r in self._store.iter_items() if self.item_index(r.item_id) is None]
        if records:
            self._add_items(records)
        self._campaigns = tuple(self._campaign(cid, doc) for cid, doc in sorted(campaigns.items()))
        self._ranker = Ranker(self.space, self._scorers, self._ranker_config, self._campaigns)

    def put_item(self, record: ItemRecord) -> bool:
        """Store an item and make it recommendable now; apply events that waited for it."""
        with self._lock:
            return self._put_item(record)

    def _put_item(self, record: ItemRecord) -> bool:
        created = self._store.put_item(record)
        index = self.item_index(record.item_id)
        if index is None:
            self._add_items([record])
            self._apply_pending(record.item_id)
        else:
            vector = self._project([record])[0]
            self._install(self.space.update_item(index, vector))
        return created

    def _project(self, records: Sequence[ItemRecord]) -> np.ndarray:
        if self._featurizer is None or self.space.projection is None:
            raise ConfigError("this bundle has no item featurizer, so items cannot be added from content")
        frame = pd.DataFrame(
            {
                "item_id": [r.item_id for r in records],
                "title": [r.title or "" for r in records],
                "text": [r.text or "" for r in records],
                "categories": [list(r.categories) for r in records],
                "tags": [list(r.tags) for r in records],
            }
        )
        for name in self._featurizer.numeric_columns_:
            frame[name] = [float(r.attributes.get(name, np.nan)) for r in records]
        features = self._featurizer.transform(frame).matrix
        return self.space.projection.project(features)

    def _add_items(self, records: Sequence[ItemRecord]) -> None:
        vectors = self._project(records)
        space = self.space.add_items(
            [r.item_id for r in records],
            vectors=vectors,
            titles=[r.title or r.item_id for r in records],
            categories=[list(r.categories) for r in records],
            tags=[list(r.tags) for r in records],
        )
        self._install(space)  # the space first: a reader that finds the id finds its vector
        self._item_ids.add([r.item_id for r in records])

    # ------------------------------------------------------------------ state
    def _read(self, user_id: str) -> tuple[UserState, int]:
        current = self._store.get_state(user_id)
        if current is None:
            return UserState(user_id, model_version=self.model_version), 0
        state = UserState.from_bytes(current.data)
        if state.model_version == self.model_version:
            return state, current.version
        return self._rederive(user_id)

    def _rederive(self, user_id: str) -> tuple[UserState, int]:
        """Rebuild a state of another model version from the user's events, in this space."""
        fold = state_fold(self._updater, self.item_index, self.model_version)
        redone = replay_user(self._store, user_id, fold, from_scratch=True)
        if redone is None:  # deleted in between
            return UserState(user_id, model_version=self.model_version), 0
        state = UserState.from_bytes(redone.data)
        if state.model_version != self.model_version:  # no events to fold: start blank in this space
            state = UserState(user_id, model_version=self.model_version)
        return state, redone.version

    def _read_for_ranking(
        self, user_id: str, current: VersionedState | None
    ) -> tuple[UserState, int, bytes | None]:
        """:meth:`_read` for readers that do not change the state, from the stored ``current``, with
        the stored bytes (``None`` for a user without state): a state decoded from the same bytes
        before is reused (decoding is ~0.15 ms), as a copy whose counters may change."""
        if current is None:
            return UserState(user_id, model_version=self.model_version), 0, None
        with self._lock:
            hit = self._decoded.get(user_id)
            if hit is not None and hit[0] == current.data:  # the same bytes: the same state
                self._decoded.move_to_end(user_id)
                state = dataclasses.replace(hit[1], exposures=dict(hit[1].exposures))
                return state, current.version, current.data
        state = UserState.from_bytes(current.data)
        if state.model_version != self.model_version:
            return *self._rederive(user_id), None
        self._remember(user_id, current.data, state)
        return dataclasses.replace(state, exposures=dict(state.exposures)), current.version, current.data

    def _read_for_update(self, user_id: str) -> tuple[UserState, int]:
        """:meth:`_read` for a state about to change: a copy of the kept decoded state when the
        stored bytes are the ones it was decoded from (or written as), else a decode."""
        current = self._store.get_state(user_id)
        if current is None:
            return UserState(user_id, model_version=self.model_version), 0
        with self._lock:
            hit = self._decoded.get(user_id)
            if hit is not None and hit[0] == current.data:
                return hit[1].copy(), current.version
        state = UserState.from_bytes(current.data)
        if state.model_version != self.model_version:
            return self._rederive(user_id)
        return state, current.version

    def _remember(self, user_id: str, data: bytes, state: UserState) -> None:
        """Keep ``state`` as the decoded form of ``data`` (the engine no longer changes it)."""
        with self._lock:
            self._decoded[user_id] = (data, state)
            self._decoded.move_to_end(user_id)
            while len(self._decoded) > DECODED_STATES:
                self._decoded.popitem(last=False)

    def _scores(self, user_id: str, state: UserState, data: bytes) -> Blended:
        """The ranker's blended scores of the state stored as ``data``: reused while those bytes and
        the space stay the same (the blend is most of a page's cost; the journey stage, campaigns and
        filters apply after it), within :data:`BLEND_BUDGET_BYTES`."""
        ranker = self._ranker
        with self._lock:
            hit = self._blends.get(user_id)
            if hit is not None and hit[0] == data and hit[1] is ranker.space:
                self._blends.move_to_end(user_id)
                return hit[2]
        scored = ranker.scores(state)
        with self._lock:
            self._blends[user_id] = (data, ranker.space, scored)
            while len(self._blends) > max(1, BLEND_BUDGET_BYTES // scored.nbytes):
                self._blends.popitem(last=False)
        return scored

    def state(self, user_id: str) -> tuple[UserState, int]:
        """The user's state and its store version (a blank state at 0 for an unknown user), with
        the served-page counters laid over it (journey stage and campaign exposures as of now).

        Read it, do not change it in place: its interests and history are shared with the engine's
        decoded-state cache (set plain fields such as ``pages_since_signal`` freely; for a state to
        update, decode a copy with ``UserState.from_bytes(state.to_bytes())``)."""
        return self._ranking_state(user_id, self._store.read_for_ranking(user_id))[:2]

    def _ranking_state(self, user_id: str, read: RankingRead) -> tuple[UserState, int, bytes | None]:
        state, version, data = self._read_for_ranking(user_id, read.state)
        counts = read.served
        state.pages_since_signal += counts.pages_at(state.n_signals)
        for campaign, count in counts.exposures.items():
            state.exposures[campaign] = state.exposures.get(campaign, 0) + count
        if self._recorder is not None:  # this replica's pages not yet written
            pending = self._recorder.pending(user_id)
            state.pages_since_signal += pending.pages_at(state.n_signals)
            for campaign, count in pending.exposures.items():
                state.exposures[campaign] = state.exposures.get(campaign, 0) + count
        return state, version, data

    # ------------------------------------------------------------------ events
    def ingest(self, events: Sequence[IncomingEvent]) -> list[Ack]:
        """Apply events in order (per user); each is durable before this returns.

        Events of items the model knows go in rounds of one event per user, one durable commit per
        round; events of unknown items are appended (one commit) and acknowledged ``pending_item``.
        """
        acks: list[Ack | None] = [None] * len(events)
        todo: list[tuple[int, StoredEvent, UpdateEvent]] = []
        waiting: list[tuple[int, StoredEvent]] = []
        for position, incoming in enumerate(events):
            stored = _stored_event(incoming)
            index = self.item_index(incoming.item_id)
            if index is None:
                waiting.append((position, stored))
                continue
            update = UpdateEvent(
                index, stored.event_type, incoming.timestamp, incoming.value, stored.event_id,
                _sentiment(dict(stored.payload)),
            )  # fmt: skip
            todo.append((position, stored, update))
        conflicts: dict[int, int] = {}
        while todo:
            round_: list[tuple[int, StoredEvent, UpdateEvent]] = []
            later: list[tuple[int, StoredEvent, UpdateEvent]] = []
            users: set[str] = set()
            for item in todo:
                (later if item[1].user_id in users else round_).append(item)
                users.add(item[1].user_id)
            updates, states = [], []
            for _, stored, update in round_:
                state, version = self._read_for_update(stored.user_id)
                state, _ = self._updater.apply(state, update)
                updates.append(StateUpdate(stored, state.to_bytes(), version))
                states.append(state)
            retry = []
            outcomes = self._store.append_and_update_many(updates)
            for item, outcome, written, state in zip(round_, outcomes, updates, states, strict=True):
                position, stored, _ = item
                if isinstance(outcome, ConflictError):  # another replica wrote this user first
                    conflicts[position] = conflicts.get(position, 0) + 1
                    if conflicts[position] >= MAX_RETRIES:
                        raise outcome
                    retry.append(item)
                    continue
                applied: AckStatus = "duplicate" if outcome.duplicate else "applied"
                if not outcome.duplicate:  # the stored bytes are the ones just written
                    self._remember(stored.user_id, written.data, state)
                acks[position] = Ack(stored.user_id, stored.event_id, applied, outcome.version)
            todo = sorted(retry + later, key=lambda item: item[0])
        if waiting:  # after the rounds: each acknowledges its user's version as of now
            appended = self._store.append_many([stored for _, stored in waiting])
            for (position, stored), result in zip(waiting, appended, strict=True):
                status: AckStatus = "duplicate" if result.duplicate else "pending_item"
                acks[position] = Ack(stored.user_id, stored.event_id, status, self._read(stored.user_id)[1])
        return [ack for ack in acks if ack is not None]

    def _apply_pending(self, item_id: str) -> None:
        """Fold events that arrived before ``item_id`` existed into their users' states."""
        index = self.item_index(item_id)
        for record in self._store.events_for_item(item_id):
            stored = record.event
            update = UpdateEvent(
                index,
                stored.event_type,
                stored.timestamp_ms / 1000.0,
                stored.value,
                stored.event_id,
                _sentiment(dict(stored.payload)),
            )
            self._update_state(stored.user_id, _applying(self._updater, update))

    def _update_state(self, user_id: str, change: Callable[[UserState], UserState]) -> int:
        """Compare-and-set ``change`` into the user's state, retrying on conflicts; the new version."""
        for _ in range(MAX_RETRIES):
            state, version = self._read(user_id)
            try:
                return self._store.put_state(user_id, change(state).to_bytes(), version)
            except ConflictError:
                continue
        raise ConflictError(user_id, version, -1)

    # ------------------------------------------------------------------ reads
    def recommend(
        self,
        user_id: str,
        k: int,
        *,
        include_categories: Sequence[str] | None = None,
        exclude_item_ids: Sequence[str] = (),
    ) -> Page:
        """The user's next page; a user without state gets the zero-history page. Syncs the
        catalogue first (:meth:`sync`), from the same single read as the user's state."""
        read = self._store.read_for_ranking(user_id)
        self._sync_to(read.revision)
        state, version, data = self._ranking_state(user_id, read)
        deny = [i for i in (self.item_index(x) for x in exclude_item_ids) if i is not None]
        filters = Filters(deny=deny, include_categories=include_categories or None)
        scored = self._scores(user_id, state, data) if data is not None and state.has_signal else None
        items = self._ranker.recommend(state, k, filters, RequestContext(now=self._clock()), scored=scored)
        return Page(user_id, version, items, has_history=state.has_signal, signals=state.n_signals)

    def record_served(self, *pages: Page) -> None:
        """Count pages for the journey policy and promotion caps (best effort, no fsync)."""
        self._store.record_served([_served_page(page) for page in pages])

    def served_later(self, page: Page) -> None:
        """:meth:`record_served` from a background thread, batched with other pages."""
        if self._recorder is None:
            with self._lock:
                if self._recorder is None:
                    self._recorder = ServedRecorder(self._store.record_served)
        self._recorder.submit(_served_page(page))

    def close(self) -> None:
        """Write the queued served pages and stop the background thread (the store stays open)."""
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def similar(self, item_id: str, k: int) -> list[RankedItem] | None:
        index = self.item_index(item_id)
        return None if index is None else self._ranker.similar_items(index, k)

    def intent(self, user_id: str) -> dict[str, Any]:
        state, version = self.state(user_id)
        summary = dict(self._ranker.intent(state))
        summary["state_version"] = version
        return summary

    def forget(self, user_id: str) -> ForgetResult:
        with self._lock:
            self._decoded.pop(user_id, None)
            self._blends.pop(user_id, None)
        if self._recorder is not None:
            self._recorder.discard(user_id)
        return self._store.forget_user(user_id)

    # ------------------------------------------------------------------ promotions
    def put_promotion(self, promotion_id: str, document: dict[str, Any]) -> bool:
        unknown = [i for i in document["item_ids"] if self.item_index(i) is None]
        if unknown:
            raise ConfigError(f"promotion item_ids unknown to the model: {unknown[:10]}")
        with self._lock:
            created = self._store.put_campaign(promotion_id, document)
            self.sync()
        return created

    def list_promotions(self) -> dict[str, dict[str, Any]]:
        return self._store.list_campaigns()

    def delete_promotion(self, promotion_id: str) -> bool:
        with self._lock:
            deleted = self._store.delete_campaign(promotion_id)
            self.sync()
        return deleted

    def _campaign(self, campaign_id: str, document: dict[str, Any]) -> Campaign:
        items = tuple(i for i in (self.item_index(x) for x in document["item_ids"]) if i is not None)
        return Campaign(
            campaign_id=campaign_id,
            items=items,
            relevance_floor=float(document.get("relevance_floor", 0.3)),
            per_user_cap=int(document.get("max_per_user", 3)),
            start=document.get("starts_at"),
            end=document.get("ends_at"),
        )


def _stored_event(incoming: IncomingEvent) -> StoredEvent:
    payload = dict(incoming.context or {})
    if incoming.request_id:  # kept with the event: A/B attribution, replay
        payload["request_id"] = incoming.request_id
    return StoredEvent(
        event_id=incoming.event_id or uuid.uuid4().hex,
        user_id=incoming.user_id,
        item_id=incoming.item_id,
        event_type=incoming.event_type,
        timestamp_ms=round(incoming.timestamp * 1000),
        value=incoming.value,
        payload=payload,
    )


def _served_page(page: Page) -> ServedPage:
    campaigns = tuple(r.campaign_id for r in page.items if r.campaign_id is not None)
    return ServedPage(page.user_id, page.signals, campaigns)


def _applying(updater: EmbeddingUpdater, event: UpdateEvent) -> Callable[[UserState], UserState]:
    return lambda state: updater.apply(state, event)[0]


def _sentiment(payload: dict[str, Any]) -> float | None:
    value = payload.get("sentiment")
    return float(value) if isinstance(value, int | float) else None
