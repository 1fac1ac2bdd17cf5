"""One contract for every store backend: SQLite in a temp dir and a real redis-server on loopback."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import pytest

from recsys.store import (
    ConflictError,
    Event,
    Exposure,
    ItemRecord,
    RankingRead,
    ServedCounts,
    ServedPage,
    StateUpdate,
    Store,
    StoredEvent,
    StoreError,
    VersionedState,
    open_store,
)
from recsys.store.snapshot import read_snapshot_info, replay, restore_snapshot, write_snapshot


@dataclass
class Backend:
    name: str
    make_url: Callable[[str], str]
    """The URL of a named, initially empty store on this backend."""
    restart: Callable[[], None]
    """Stop and start the backend's server (Redis: a crash); SQLite has none (closing is enough)."""
    opened: list[Store] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.make_url("store")

    def open(self, name: str = "store") -> Store:
        store = open_store(self.make_url(name))
        self.opened.append(store)
        return store


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        result = Backend("sqlite", lambda name: f"sqlite:///{tmp_path}/{name}.db", restart=lambda: None)
    else:
        server = request.getfixturevalue("redis_server")
        test_id = uuid.uuid4().hex[:8]  # each test its own namespace on the shared server

        def make_url(name: str) -> str:
            return f"{server.url}?prefix={test_id}-{name}:&require_fsync=true"

        result = Backend("redis", make_url, restart=server.restart)
    yield result
    for store in result.opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def ev(n: int | str, user: str = "u1", item: str = "i1", kind: str = "view", **payload: object) -> Event:
    timestamp_ms = 1_700_000_000_000 + (n if isinstance(n, int) else 0)
    return Event(f"e{n}", user, item, kind, timestamp_ms=timestamp_ms, payload=payload)


def bump(store: Store, event: Event) -> bool:
    """Count the event into its user's state (an integer), retrying on conflicts; True if new."""
    while True:
        current = store.get_state(event.user_id)
        version, count = (current.version, int(current.data)) if current else (0, 0)
        try:
            return not store.append_and_update(event, str(count + 1).encode(), version).duplicate
        except ConflictError:
            continue


def test_append_and_read_back_in_order(store: Store) -> None:
    assert isinstance(store, Store)
    results = [store.append(ev(n, user=f"u{n % 2}", item=f"i{n % 3}", device="tv")) for n in range(6)]
    sequences = [r.sequence for r in results]
    assert sequences == sorted(sequences) and len(set(sequences)) == 6
    assert not any(r.duplicate for r in results)
    u0 = store.events_for_user("u0")
    assert [s.event.event_id for s in u0] == ["e0", "e2", "e4"]
    assert u0[0].event == ev(0, user="u0", item="i0", device="tv")
    assert [s.seq for s in store.events_for_user("u0", after_seq=u0[0].seq, limit=1)] == [u0[1].seq]
    assert [s.event.event_id for s in store.events_for_item("i1")] == ["e1", "e4"]
    assert [s.seq for s in store.iter_events(batch_size=4)] == sequences
    assert [s.seq for s in store.iter_events(after_seq=sequences[3])] == sequences[4:]
    assert store.count_events() == 6 and store.count_events(user_id="u1") == 3
    assert store.count_events(item_id="i2") == 2 and store.count_events(user_id="u0", item_id="i0") == 1
    assert store.last_sequence() == sequences[-1]
    assert store.events_for_user("nobody") == [] and store.get_state("nobody") is None


def test_duplicate_event_id_is_reported_and_not_appended_twice(store: Store) -> None:
    first = store.append_and_update(ev(1), b"one", 0)
    again = store.append(ev(1, item="other"))
    assert again.duplicate and again.sequence == first.sequence
    # A retried update is a duplicate, not a conflict, even though the version moved on.
    retried = store.append_and_update(ev(1), b"two", 0)
    assert retried.duplicate and retried.sequence == first.sequence and retried.version == 1
    assert store.get_state("u1") == VersionedState(1, b"one", first.sequence)
    assert store.count_events() == 1
    results = store.append_many([ev(2), ev(2), ev(1), ev(3)])
    assert [r.duplicate for r in results] == [False, True, True, False]
    assert store.count_events() == 3


def test_append_and_update_is_atomic_under_conflict(store: Store) -> None:
    assert store.append_and_update(ev(1), b"a", expected_version=0).version == 1
    with pytest.raises(ConflictError) as info:
        store.append_and_update(ev(2), b"b", expected_version=0)
    assert (info.value.user_id, info.value.expected_version, info.value.actual_version) == ("u1", 0, 1)
    assert isinstance(info.value, StoreError)
    assert store.count_events() == 1 and store.get_state("u1") == VersionedState(1, b"a", 1)
    assert store.append_and_update(ev(2), b"b", expected_version=1).version == 2

    batch = store.append_and_update_many(
        [StateUpdate(ev(3), b"c", 2), StateUpdate(ev(4), b"d", 2), StateUpdate(ev(5, user="u2"), b"x", 0)]
    )
    assert isinstance(batch[1], ConflictError)
    assert [getattr(r, "version", None) for r in batch] == [3, None, 1]
    assert [s.event.event_id for s in store.events_for_user("u1")] == ["e1", "e2", "e3"]
    assert store.get_state("u1") == VersionedState(3, b"c", store.events_for_user("u1")[-1].seq)


def test_put_state_compare_and_set(store: Store) -> None:
    assert store.put_state("u1", b"a", 0) == 1
    assert store.put_state("u1", b"b", 1, seq=42) == 2
    with pytest.raises(ConflictError):
        store.put_state("u1", b"c", 1)
    assert store.put_state("u1", b"\x00\xff", 2) == 3
    assert store.get_state("u1") == VersionedState(3, b"\x00\xff", 42)
    assert store.count_states() == 1
    assert store.delete_state("u1") and not store.delete_state("u1")
    assert store.get_state("u1") is None and store.put_state("u1", b"new", 0) == 1


def test_read_your_writes_across_store_objects(backend: Backend) -> None:
    replica_a, replica_b = backend.open(), backend.open()
    for n in range(5):
        result = replica_a.append_and_update(ev(n), f"s{n}".encode(), n)
        state = replica_b.get_state("u1")
        assert state == VersionedState(n + 1, f"s{n}".encode(), result.sequence)
        assert replica_b.events_for_user("u1")[-1].event.event_id == f"e{n}"
    replica_b.put_item(ItemRecord("new-item", title="Fresh"))
    assert replica_a.get_item("new-item") == ItemRecord("new-item", title="Fresh")


def test_forget_user_erases_state_events_and_exposures(store: Store) -> None:
    for n in range(3):
        store.append_and_update(ev(n, item=f"i{n}"), f"{n}".encode(), n)
    store.append_and_update(ev("other", user="u2", item="i1"), b"keep", 0)
    store.increment_promotion_exposure("u1", "c1")
    store.increment_promotion_exposure("u2", "c1")
    store.record_exposure(Exposure("r1", "u1", "B", ("i1",), 1))
    store.record_exposure(Exposure("r2", "u2", "A", ("i2",), 2))
    store.record_served([ServedPage("u1", 3), ServedPage("u2", 1)])

    forgotten = store.forget_user("u1")
    assert (forgotten.events, forgotten.state) == (3, True)
    assert store.get_state("u1") is None and store.events_for_user("u1") == []
    assert [s.event.user_id for s in store.events_for_item("i1")] == ["u2"]
    assert store.promotion_exposures("u1") == {} and store.get_exposure("r1") is None
    assert store.count_events() == 1 and store.get_state("u2") is not None
    assert store.promotion_exposures("u2") == {"c1": 1} and store.get_exposure("r2") is not None
    assert store.served_counts("u1") == ServedCounts() and store.served_counts("u2").pages == 1
    # Ids are erased too: a late retry of a forgotten event is accepted as new.
    assert not store.append(ev(0)).duplicate

    assert store.delete_user_events("u2") == 1
    assert store.get_state("u2") is not None and store.forget_user("nobody").events == 0


def test_items_crud(store: Store) -> None:
    item = ItemRecord("i1", "Title", ("books", "sci-fi"), ("new",), "a text", {"price": 9.5, "year": 1999})
    assert store.put_item(item) and store.get_item("i1") == item
    changed = ItemRecord("i1", "Other", attributes={"nested": {"a": [1, 2]}})
    assert not store.put_item(changed) and store.get_item("i1") == changed
    store.put_item(ItemRecord("i2"))
    assert store.count_items() == 2 and sorted(i.item_id for i in store.iter_items()) == ["i1", "i2"]
    assert set(store.get_items(["i2", "missing", "i1", "i2"])) == {"i1", "i2"}
    assert store.delete_item("i1") and not store.delete_item("i1") and store.get_item("i1") is None
    with pytest.raises(TypeError, match="JSON"):
        store.put_item(ItemRecord("bad", attributes={"x": object()}))


def test_campaigns_and_promotion_counters(store: Store) -> None:
    assert store.put_campaign("c1", {"items": ["i1"], "boost": 0.3, "cap": 3})
    assert not store.put_campaign("c1", {"items": ["i1", "i2"], "boost": 0.5})
    store.put_campaign("c2", {"items": []})
    assert store.get_campaign("c1") == {"items": ["i1", "i2"], "boost": 0.5}
    assert list(store.list_campaigns()) == ["c1", "c2"]
    assert store.delete_campaign("c2") and store.get_campaign("c2") is None
    assert [store.increment_promotion_exposure("u1", "c1") for _ in range(3)] == [1, 2, 3]
    assert store.increment_promotion_exposure("u1", "c2", by=5) == 5
    assert store.promotion_exposures("u1") == {"c1": 3, "c2": 5} and store.promotion_exposures("u9") == {}


def test_catalogue_revision_moves_with_every_item_and_campaign_write(backend: Backend) -> None:
    store, other_replica = backend.open(), backend.open()
    seen = [other_replica.catalogue_revision()]

    def moved() -> bool:  # another replica sees each write as a new revision
        seen.append(other_replica.catalogue_revision())
        return seen[-1] != seen[-2]

    store.put_item(ItemRecord("i1"))
    assert moved()
    store.put_item(ItemRecord("i1", "A new title"))  # an update, same count
    assert moved() and store.count_items() == 1
    store.put_campaign("c1", {"items": ["i1"]})
    assert moved()
    store.put_campaign("c1", {"items": ["i1"], "boost": 0.2})
    assert moved()
    store.append(ev(1))
    store.put_state("u1", b"state", 0)
    store.record_served([ServedPage("u1", 1)])
    assert not moved()  # events, states and counters are not the catalogue
    assert store.delete_campaign("c1") and moved()
    assert store.delete_item("i1") and moved()
    assert not store.delete_item("i1")


def test_served_page_counters_follow_the_signal_count(backend: Backend) -> None:
    store, other_replica = backend.open(), backend.open()
    assert store.served_counts("u1") == ServedCounts(0, 0, {})
    store.record_served([ServedPage("u1", 2, ("c1",)), ServedPage("u1", 2), ServedPage("u2", 0)])
    assert other_replica.served_counts("u1") == ServedCounts(2, 2, {"c1": 1})
    assert other_replica.served_counts("u1").pages_at(2) == 2
    other_replica.record_served([ServedPage("u1", 1, ("c1", "c2"))])  # ranked before the 2nd signal
    assert store.served_counts("u1") == ServedCounts(2, 2, {"c1": 2, "c2": 1})
    store.record_served([ServedPage("u1", 3)])  # a new signal: the count starts over
    counts = store.served_counts("u1")
    assert (counts.signals, counts.pages, counts.pages_at(2), counts.pages_at(3)) == (3, 1, 0, 1)
    assert store.promotion_exposures("u1") == {"c1": 2, "c2": 1}
    assert store.served_counts("u2") == ServedCounts(0, 1, {})
    store.record_served([])


def test_read_for_ranking_is_the_three_reads_in_one(backend: Backend) -> None:
    store, other_replica = backend.open(), backend.open()

    def separately(user: str) -> RankingRead:
        return RankingRead(store.catalogue_revision(), store.get_state(user), store.served_counts(user))

    assert store.read_for_ranking("nobody") == separately("nobody")
    assert store.read_for_ranking("nobody").state is None
    other_replica.put_item(ItemRecord("i1", title="One"))
    other_replica.append_and_update(ev(1), b"\x00state\xff", 0)  # bytes, not text
    other_replica.record_served([ServedPage("u1", 1, ("c1", "c2")), ServedPage("u1", 1, ("c1",))])
    read = store.read_for_ranking("u1")
    assert read == separately("u1")
    assert read.revision > 0 and read.state is not None and read.state.data == b"\x00state\xff"
    assert read.served == ServedCounts(1, 2, {"c1": 2, "c2": 1})
    assert store.read_for_ranking("u2") == separately("u2")  # another user's rows stay out


def test_ab_exposures(store: Store) -> None:
    exposure = Exposure("req-1", "u1", "treatment", ("i3", "i1"), 1_700_000_000_123)
    assert store.record_exposure(exposure)
    assert not store.record_exposure(Exposure("req-1", "u2", "control", (), 0))
    assert store.get_exposure("req-1") == exposure and store.get_exposure("req-2") is None


def test_ab_outcomes_counters_assignments_and_allocations(backend: Backend) -> None:
    store, other = backend.open(), backend.open()  # two replicas on the same store
    shown = [Exposure(f"r{n}", f"u{n}", "B" if n % 2 else "A", ("i1",), n, "exp") for n in range(5)]
    assert all(store.record_exposure(e) for e in shown)
    assert not other.record_exposure(shown[0])  # a repeated request id is not counted twice
    assert store.get_exposure("r1") == shown[1]
    store.record_exposure(Exposure("plain", "u9", "A", (), 9))  # no experiment: no counter
    assert store.record_outcome("r1", "clicks") and not other.record_outcome("r1", "clicks")
    assert other.record_outcome("r1", "conversions") and store.record_outcome("r2", "clicks")
    assert not store.record_outcome("missing", "clicks") and store.record_outcome("plain", "clicks")
    assert other.experiment_counts("exp") == {
        "A": {"exposures": 3, "clicks": 1},
        "B": {"exposures": 2, "clicks": 1, "conversions": 1},
    }
    assert store.experiment_counts("other") == {}

    assert store.get_assignment("exp", "u1") is None
    assert store.assign_variant("exp", "u1", "B") == "B"
    assert other.assign_variant("exp", "u1", "A") == "B"  # sticky: the first assignment stays
    assert other.get_assignment("exp", "u1") == "B" and store.get_assignment("exp2", "u1") is None

    assert store.get_allocation("exp") is None
    store.put_allocation("exp", {"A": 0.25, "B": 0.75})
    other.put_allocation("exp", {"A": 0.5, "B": 0.5})
    assert store.get_allocation("exp") == {"A": 0.5, "B": 0.5}

    store.forget_user("u1")  # personal data goes, aggregate counters stay
    assert store.get_exposure("r1") is None and store.get_assignment("exp", "u1") is None
    assert store.experiment_counts("exp")["B"]["clicks"] == 1
    store.record_exposure(Exposure("r1", "u1", "B", ("i1",), 1, "exp"))
    assert store.record_outcome("r1", "clicks")  # its outcome marks were erased with it


def concat(state: bytes | None, events: Sequence[StoredEvent]) -> bytes:
    """A fold that remembers the order of the events it saw."""
    return b",".join(([state] if state else []) + [s.event.event_id.encode() for s in events])


def fold_live(store: Store, event: Event) -> None:
    """What serving does on an event: read the state, fold the event in, compare-and-set."""
    current = store.get_state(event.user_id)
    data = concat(current.data if current else None, [StoredEvent(0, event)])
    store.append_and_update(event, data, current.version if current else 0)


def test_snapshot_restore_and_replay(backend: Backend, tmp_path: Path) -> None:
    store = backend.open()
    for user in range(6):
        for n in range(3):
            fold_live(store, ev(f"{user}-{n}", user=f"u{user}"))
    info = write_snapshot(store, tmp_path / "states.snap")
    assert (info.states, info.last_seq) == (6, store.last_sequence())
    assert read_snapshot_info(tmp_path / "states.snap") == info
    at_snapshot = dict(store.iter_states())

    # After the snapshot: one more event for u0 and u1, and a new user u9.
    for late_user in ("u0", "u1", "u9"):
        fold_live(store, ev(f"{late_user}-late", user=late_user))
    live = dict(store.iter_states())

    restore_snapshot(store, tmp_path / "states.snap")
    assert dict(store.iter_states()) == at_snapshot
    assert replay(store, concat, after_seq=info.last_seq) == 3
    assert dict(store.iter_states()) == live

    fresh = backend.open("fresh")
    restore_snapshot(fresh, tmp_path / "states.snap")
    assert dict(fresh.iter_states()) == at_snapshot

    # A model change: every state re-derived from the user's whole history.
    replay(store, lambda state, events: str(len(events)).encode(), from_scratch=True)
    assert {u: s.data for u, s in store.iter_states()} == {f"u{u}": b"3" for u in range(6)} | {
        "u0": b"4",
        "u1": b"4",
        "u9": b"1",
    }
    with pytest.raises(StoreError, match="does not exist"):
        restore_snapshot(store, tmp_path / "missing.snap")


def test_restart_keeps_every_acknowledged_write(backend: Backend) -> None:
    store = backend.open()
    for n in range(40):
        bump(store, ev(n, user=f"u{n % 4}", item=f"i{n % 7}"))
    store.put_item(ItemRecord("i1", "kept"))
    store.put_campaign("c1", {"boost": 1})
    store.increment_promotion_exposure("u1", "c1", by=2)
    store.record_exposure(Exposure("r1", "u1", "A", ("i1",), 5))
    events, states = list(store.iter_events()), dict(store.iter_states())
    survivor = backend.open()  # a replica that stays up while the store restarts under it
    store.close()

    backend.restart()
    assert survivor.get_state("u1") == states["u1"]
    reopened = backend.open()
    assert list(reopened.iter_events()) == events and dict(reopened.iter_states()) == states
    assert {s.data for s in states.values()} == {b"10"}
    assert reopened.get_item("i1") == ItemRecord("i1", "kept") and reopened.get_campaign("c1") == {"boost": 1}
    assert reopened.promotion_exposures("u1") == {"c1": 2} and reopened.get_exposure("r1") is not None
    assert reopened.append(ev(0)).duplicate and reopened.last_sequence() == events[-1].seq


def _overlapping_ids(worker: int, per_worker: int) -> list[Event]:
    """Neighbouring workers share half their event ids (retries seen by two replicas)."""
    start = worker * per_worker // 2
    return [ev(n, user="hot", item=f"i{n % 5}") for n in range(start, start + per_worker)]


def test_concurrent_threads_lose_nothing(store: Store) -> None:
    workers, per_worker = 4, 16
    applied: list[int] = []
    barrier = threading.Barrier(workers)

    def run(worker: int) -> None:
        barrier.wait()
        applied.append(sum(bump(store, event) for event in _overlapping_ids(worker, per_worker)))

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    unique = len({e.event_id for w in range(workers) for e in _overlapping_ids(w, per_worker)})
    assert sum(applied) == unique == store.count_events()
    assert store.get_state("hot") == VersionedState(unique, str(unique).encode(), store.last_sequence())


def _process_worker(url: str, worker: int, per_worker: int, start_at: float) -> int:
    store = open_store(url)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        return sum(bump(store, event) for event in _overlapping_ids(worker, per_worker))
    finally:
        store.close()


def test_concurrent_processes_lose_nothing(backend: Backend) -> None:
    workers, per_worker = 2, 30
    start_at = time.time() + 1.0
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_process_worker, backend.url, w, per_worker, start_at) for w in range(workers)]
        applied = [f.result(timeout=60) for f in futures]
    store = backend.open()
    unique = per_worker + per_worker // 2
    assert sum(applied) == unique == store.count_events()
    assert store.get_state("hot") == VersionedState(unique, str(unique).encode(), store.last_sequence())


def test_throughput(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    store = backend.open()
    started = time.perf_counter()
    for batch in range(100):
        store.append_many([ev(f"{batch}-{n}", user=f"u{n % 50}") for n in range(100)])
    batched = 10_000 / (time.perf_counter() - started)
    started = time.perf_counter()
    for n in range(100):
        store.append_and_update(ev(f"single-{n}", user="solo"), b"x" * 256, n)
    single = 100 / (time.perf_counter() - started)
    timings = []
    for _ in range(500):
        started = time.perf_counter()
        store.get_state("solo")
        timings.append(time.perf_counter() - started)
    timings.sort()
    assert store.count_events() == 10_100
    with capsys.disabled():
        print(
            f"\n[{backend.name}] 10k appends in batches of 100: {batched:,.0f}/s; "
            f"append_and_update one at a time: {single:,.0f}/s; get_state p50 {timings[250] * 1e6:.0f} us, "
            f"p99 {timings[495] * 1e6:.0f} us"
        )
