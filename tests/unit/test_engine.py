"""The serving engine without Ray: batched ingest and served-page counters over one shared store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from recsys.data.ids import IdIndex
from recsys.embeddings import EmbeddingSpace
from recsys.engine import Engine, IncomingEvent
from recsys.engine._served import PendingPages, ServedRecorder
from recsys.ranking import RankerConfig
from recsys.store import ServedPage, open_store
from tests.unit.test_embeddings import planted_space


@pytest.fixture(scope="module")
def space() -> EmbeddingSpace:
    return planted_space()


def replica(space: EmbeddingSpace, path: Path, **config: object) -> Engine:
    """One serving replica's engine; replicas built on the same ``path`` share their state."""
    ids = IdIndex([f"i{n}" for n in range(space.n_items)])
    store = open_store(f"sqlite:///{path}")
    return Engine(space=space, item_ids=ids, store=store, ranker_config=RankerConfig(**config))


def like(user: str, item: int, n: int, kind: str = "like") -> IncomingEvent:
    return IncomingEvent(user, f"i{item}", kind, 1_700_000_000.0 + n, event_id=f"{user}-{n}")


def test_a_batch_is_applied_in_order_per_user_with_one_version_each(
    space: EmbeddingSpace, tmp_path: Path
) -> None:
    engine = replica(space, tmp_path / "s.db")
    batch = [like("a", 120, 0), like("b", 10, 1), like("a", 121, 2), like("a", 122, 3), like("c", 30, 4)]
    batch += [IncomingEvent("b", "not-yet", "like", 1.7e9, event_id="b-wait"), like("a", 120, 0)]
    acks = engine.ingest(batch)
    assert [(a.user_id, a.status, a.state_version) for a in acks] == [
        ("a", "applied", 1), ("b", "applied", 1), ("a", "applied", 2), ("a", "applied", 3),
        ("c", "applied", 1), ("b", "pending_item", 1), ("a", "duplicate", 3),
    ]  # fmt: skip
    state, version = engine.state("a")
    assert version == 3 and state.n_signals == 3 and set(state.seen) == {120, 121, 122}
    assert [s.item for s in state.recent] == [120, 121, 122]


def test_two_replicas_writing_the_same_users_lose_nothing(space: EmbeddingSpace, tmp_path: Path) -> None:
    one, two = replica(space, tmp_path / "s.db"), replica(space, tmp_path / "s.db")
    users = [f"u{n}" for n in range(4)]
    errors: list[BaseException] = []

    def send(engine: Engine, offset: int) -> None:
        try:
            for n in range(10):
                engine.ingest([like(user, (offset + n) % 200, 100 * offset + n) for user in users])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(e, o)) for e, o in ((one, 0), (two, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for user in users:
        state, version = two.state(user)
        assert (state.n_signals, version) == (20, 20)


def test_served_pages_move_the_journey_on_every_replica(space: EmbeddingSpace, tmp_path: Path) -> None:
    one, two = replica(space, tmp_path / "s.db"), replica(space, tmp_path / "s.db")
    one.ingest([like("u", 0, 0), like("u", 1, 1)])
    stages = []
    for step in range(5):
        engine = (one, two)[step % 2]  # pages alternate between replicas
        state, _ = engine.state("u")
        stages.append(engine._ranker.config.journey.stage(state).name)
        page = engine.recommend("u", 10)
        assert page.signals == 2 and page.state_version == 2  # counting a page moves no version
        engine.record_served(page)
    assert stages == ["focus", "focus", "browse", "browse", "explore"]
    assert len([r for r in two.recommend("u", 10).items if r.provenance == "explore"]) == 4
    one.ingest([like("u", 2, 2)])  # a signal: focus again, whatever the counters say
    state, version = two.state("u")
    assert version == 3 and state.pages_since_signal == 0
    assert not [r for r in two.recommend("u", 10).items if r.provenance == "explore"]


def test_promotion_caps_hold_across_replicas_and_background_counting(
    space: EmbeddingSpace, tmp_path: Path
) -> None:
    one, two = replica(space, tmp_path / "s.db"), replica(space, tmp_path / "s.db")
    document = {"item_ids": ["i150", "i151"], "relevance_floor": 0.5, "max_per_user": 2}
    one.put_promotion("near", document)
    two.sync()
    one.ingest([like("u", 120, 0), like("u", 121, 1), like("u", 122, 2)])
    shown = []
    for step in range(4):
        engine = (one, two)[step % 2]
        page = engine.recommend("u", 10)
        shown.append([r.campaign_id for r in page.items if r.provenance == "promoted"])
        engine.served_later(page)
        engine.close()  # waits for the background thread's write
    assert shown == [["near"], ["near"], [], []]
    assert two.state("u")[0].exposures == {"near": 2}
    assert one.forget("u").state and one.state("u")[0].exposures == {}


def test_kept_states_and_blends_give_what_a_fresh_replica_decodes(
    space: EmbeddingSpace, tmp_path: Path
) -> None:
    """The engine keeps the states it writes and the blends it ranks by; a replica that keeps
    nothing (a new engine on the same store, fresh for every read) must see the same bytes and
    the same pages, through events, repeat pages, dislikes and another replica's writes."""
    kept, other = replica(space, tmp_path / "s.db"), replica(space, tmp_path / "s.db")
    kinds = ("like", "click", "dislike", "view")
    users = [f"u{n}" for n in range(5)]
    for step in range(8):
        writer = other if step % 3 == 2 else kept  # the kept copy goes stale: must be re-read
        writer.ingest(
            [
                like(user, (37 * step + 11 * n) % 200, step, kinds[(step + n) % 4])
                for n, user in enumerate(users)
            ]
        )
        for user in users:
            pages = [kept.recommend(user, 10).items for _ in range(2)]  # the second from the kept blend
            fresh = replica(space, tmp_path / "s.db")
            assert pages[0] == pages[1] == fresh.recommend(user, 10).items
            state, version = kept.state(user)
            assert (state.to_bytes(), version) == (fresh.state(user)[0].to_bytes(), fresh.state(user)[1])
    first = kept.state("u0")[0]
    copy = first.copy()
    kept.ingest([like("u0", 5, 100)])
    assert kept.state("u0")[0].n_signals == first.n_signals + 1 and copy.to_bytes() == first.to_bytes()


def test_unwritten_served_pages_count_at_once_here_and_everywhere_once_written(
    space: EmbeddingSpace, tmp_path: Path
) -> None:
    engine, other = replica(space, tmp_path / "s.db"), replica(space, tmp_path / "s.db")
    engine.ingest([like("u", 120, 0)])
    for _ in range(3):
        engine.served_later(engine.recommend("u", 10))
    assert engine.state("u")[0].pages_since_signal == 3  # written or not yet (the writer waits 50 ms)
    engine.close()  # writes what is left
    assert other.state("u")[0].pages_since_signal == 3


def test_served_recorder_batches_keeps_pending_and_discards_a_forgotten_user() -> None:
    written: list[list[ServedPage]] = []
    recorder = ServedRecorder(written.append, linger_s=30.0)  # nothing is written until close
    pages = [ServedPage("u", 1), ServedPage("v", 1), ServedPage("u", 1, ("c1",))]
    pages.append(ServedPage("u", 2, ("c1", "c2")))
    for page in pages:
        recorder.submit(page)
    assert recorder.pending("u") == PendingPages({1: 2, 2: 1}, {"c1": 2, "c2": 1})
    assert recorder.pending("u").pages_at(1) == 2 and recorder.pending("u").pages_at(3) == 0
    assert recorder.pending("v") == PendingPages({1: 1})
    recorder.discard("v")
    assert recorder.pending("v") == PendingPages()
    recorder.close()
    assert written == [[pages[0], pages[2], pages[3]]] and recorder.pending("u") == PendingPages()


def test_pending_pages_stay_summed_while_the_writer_is_busy() -> None:
    """Pages taken by a slow write and pages queued behind it both count, once each."""
    release, taken = threading.Event(), threading.Event()
    written: list[list[ServedPage]] = []

    def slow_write(batch: list[ServedPage]) -> None:
        taken.set()
        release.wait(10)
        written.append(batch)

    recorder = ServedRecorder(slow_write, linger_s=0.0)
    recorder.submit(ServedPage("u", 4, ("c",)))
    assert taken.wait(10)  # the first page is being written
    for _ in range(500):
        recorder.submit(ServedPage("u", 4))
    assert recorder.pending("u") == PendingPages({4: 501}, {"c": 1})
    release.set()
    recorder.close()
    assert sum(len(batch) for batch in written) == 501 and recorder.pending("u") == PendingPages()
