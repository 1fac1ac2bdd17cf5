"""Model lifecycle without Ray: the bundle registry, re-deriving states, the retraining protocol."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.ids import IdIndex
from recsys.embeddings import EmbeddingSpace, EmbeddingUpdater, UserState
from recsys.engine import Engine, IncomingEvent
from recsys.engine.lifecycle import decide, holdout_split, read_fresh_events, training_interactions
from recsys.engine.rederive import state_fold
from recsys.engine.versions import BundleRegistry, resolve_serving_bundle
from recsys.errors import ArtifactError, ConfigError
from recsys.store import Event, open_store
from recsys.store.snapshot import replay, restore_snapshot, write_snapshot

ITEMS = [f"i{n}" for n in range(8)]


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=lc-{uuid.uuid4().hex[:8]}:&require_fsync=true"


def fake_bundle(directory: Path, marker: str) -> dict[str, object]:
    directory.mkdir(parents=True)
    document = {"format": 1, "marker": marker}
    (directory / "bundle.json").write_text(json.dumps(document))
    return document


def test_registry_publishes_versions_and_moves_the_champion(tmp_path: Path) -> None:
    registry = BundleRegistry(tmp_path / "bundles")
    first = registry.publish_bundle(lambda d: fake_bundle(d, "a"), {"parent": None})
    second = registry.publish_bundle(lambda d: fake_bundle(d, "b"), {"parent": first})
    assert (first, second) == ("v0001", "v0002") and registry.versions() == ["v0001", "v0002"]
    assert registry.champion() is None
    registry.set_champion(second)
    assert registry.champion() == "v0002"
    assert registry.manifest()["bundle"]["marker"] == "b" and registry.manifest()["parent"] == "v0001"
    assert registry.manifest()["kind"] == "wayfinder.bundle"
    assert resolve_serving_bundle(registry.path, None) == (registry.path / "versions" / "v0002", "v0002")
    assert resolve_serving_bundle(registry.path, "v0001")[1] == "v0001"
    with pytest.raises(ArtifactError, match="not a version name"):
        resolve_serving_bundle(registry.path, "latest")


def test_a_failed_build_leaves_no_version_behind(tmp_path: Path) -> None:
    registry = BundleRegistry(tmp_path / "bundles")

    def broken(directory: Path) -> dict[str, object]:
        fake_bundle(directory, "x")
        raise RuntimeError("training failed")

    with pytest.raises(RuntimeError):
        registry.publish_bundle(broken, {})
    assert registry.versions() == [] and list((tmp_path / "bundles" / "versions").iterdir()) == []


def test_resolving_a_plain_bundle_and_nonsense(tmp_path: Path) -> None:
    fake_bundle(tmp_path / "plain", "p")
    assert resolve_serving_bundle(tmp_path / "plain", None) == (tmp_path / "plain", None)
    with pytest.raises(ConfigError, match="model_version='v0001' needs a bundle registry"):
        resolve_serving_bundle(tmp_path / "plain", "v0001")
    with pytest.raises(ArtifactError, match="neither a serving bundle"):
        resolve_serving_bundle(tmp_path / "nothing", None)


def space(dim: int, seed: int) -> EmbeddingSpace:
    vectors = np.random.default_rng(seed).normal(size=(len(ITEMS), dim)).astype(np.float32)
    return EmbeddingSpace.from_vectors(vectors, np.arange(1, len(ITEMS) + 1, dtype=np.float32), n_regions=2)


def engine(store_url: str, dim: int, seed: int, version: str | None) -> Engine:
    return Engine(
        space=space(dim, seed), item_ids=IdIndex(ITEMS), store=open_store(store_url), model_version=version
    )


def expected_state(engine_: Engine, store_url: str, user: str, version: str | None) -> UserState:
    store = open_store(store_url)
    fold = state_fold(EmbeddingUpdater(engine_.space), engine_.item_index, version)
    return UserState.from_bytes(fold(None, store.events_for_user(user)))


def test_a_new_model_version_rederives_a_state_on_first_touch(url: str) -> None:
    old = engine(url, 4, 0, "v0001")
    events = [IncomingEvent("u", ITEMS[n], "like", 1_700_000_000.0 + n, event_id=f"e{n}") for n in range(3)]
    events.append(IncomingEvent("u", "unknown-item", "like", 1_700_000_010.0, event_id="pending"))
    old.ingest(events)
    old.record_served(old.recommend("u", 3))  # a served-page counter: it lives beside the state
    state, version = old.state("u")
    assert state.model_version == "v0001" and state.interests[0].total.shape == (4,)

    new = engine(url, 6, 1, "v0002")
    rederived, new_version = new.state("u")
    assert new_version == version + 1  # written back, compare-and-set
    # the events fold into the new space; the served-page counter (beside the state) is kept
    assert dataclasses.replace(rederived, pages_since_signal=0) == expected_state(new, url, "u", "v0002")
    assert rederived.pages_since_signal == 1
    assert rederived.n_signals == 3 and rederived.interests[0].total.shape == (6,)
    assert UserState.from_bytes(open_store(url).get_state("u").data).model_version == "v0002"  # type: ignore[union-attr]
    assert new.state("u") == (rederived, new_version)  # no second re-derivation

    ack = old.ingest([IncomingEvent("u", ITEMS[5], "click", 1_700_000_020.0, event_id="e5")])[0]
    assert ack.status == "applied"  # the old version re-derives back into its own space, then applies
    assert old.state("u")[0] == expected_state(old, url, "u", "v0001")


def test_snapshot_restore_then_replay_rebuilds_every_state(url: str, tmp_path: Path) -> None:
    live = engine(url, 4, 0, "v0001")
    live.ingest(
        [
            IncomingEvent(f"u{n % 3}", ITEMS[n % 8], "like", 1_700_000_000.0 + n, event_id=f"a{n}")
            for n in range(9)
        ]
    )
    store = open_store(url)
    write_snapshot(store, tmp_path / "states.snap")
    live.ingest(
        [
            IncomingEvent(f"u{n % 3}", ITEMS[n % 8], "view", 1_700_000_100.0 + n, event_id=f"b{n}")
            for n in range(6)
        ]
    )
    before = {user: live.state(user)[0] for user in ("u0", "u1", "u2")}
    info = restore_snapshot(store, tmp_path / "states.snap")
    fold = state_fold(EmbeddingUpdater(live.space), live.item_index, "v0001")
    assert replay(store, fold, after_seq=info.last_seq) == 3
    assert {user: live.state(user)[0] for user in before} == before


def fresh_frame() -> pd.DataFrame:
    store_events = [
        Event("1", "a", "i1", "like", 1),
        Event("2", "a", "i2", "like", 2),
        Event("3", "a", "i3", "dislike", 3),
        Event("4", "a", "i4", "like", 4),
        Event("5", "a", "i5", "purchase", 5),
        Event("6", "a", "i6", "view", 6),
        Event("7", "b", "i1", "like", 1),
        Event("8", "b", "i2", "like", 2),
        Event("9", "b", "zz", "like", 3),
        Event("10", "old", "i7", "rating", 7, value=5.0),
    ]

    class Log:
        def iter_events(self, *, after_seq: int = 0, batch_size: int = 1000):  # type: ignore[no-untyped-def]
            from recsys.store.base import StoredEvent

            return iter(StoredEvent(n + 1, e) for n, e in enumerate(store_events) if n + 1 > after_seq)

    return read_fresh_events(Log())  # type: ignore[arg-type]


def test_holdout_hides_the_latest_positives_and_everything_after() -> None:
    fresh = fresh_frame()
    assert fresh["weight"].tolist() == pytest.approx([3, 3, -3, 3, 5, 0.5, 3, 3, 3, 1.0])
    split = holdout_split(fresh, IdIndex(ITEMS), holdout=2, min_history=2)
    assert split.users == ["a"]  # b has 2 known positives (zz is unknown), old 1
    assert split.truth["a"] == ["i5", "i6"]  # purchase and view: the two latest positives
    assert [e.event_id for e in split.histories["a"]] == ["1", "2", "3", "4"]
    assert split.hidden == 2 and len(split.train) == 8
    assert holdout_split(fresh, IdIndex(ITEMS), newer_than=4).users == ["a"]
    assert holdout_split(fresh, IdIndex(ITEMS), newer_than=5).users == []  # i5 (seq 5) was seen
    rows, counts = training_interactions(split.train, IdIndex(["old", "x"]), IdIndex(ITEMS))
    assert counts == {"events": 8, "used": 7, "unknown_item": 1, "new_users": 2}
    assert sorted(set(rows["user_idx"])) == [0, 2, 3]  # old -> 0; a -> 2, b -> 3 after the 2 known


def test_decide_promotes_only_a_win_by_more_than_the_margin() -> None:
    champion, challenger = {"ndcg@10": 0.20, "users": 5.0}, {"ndcg@10": 0.25, "users": 5.0}
    assert decide(champion, challenger, margin=0.0).promote
    assert not decide(champion, challenger, margin=0.05).promote
    assert not decide(challenger, champion).promote
    assert decide(None, challenger).promote
    assert not decide(champion, {"ndcg@10": 0.9, "users": 0.0}).promote
    with pytest.raises(ConfigError, match="auc"):
        decide(champion, challenger, metric="auc")
