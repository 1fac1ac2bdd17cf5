"""User embeddings: the update rule, idempotency, multi-interest, exact ALS fold-in, serialisation."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.embeddings import (
    ContentProjection,
    EmbeddingSpace,
    EmbeddingUpdater,
    Event,
    ItemMetadata,
    StagePopularity,
    UpdaterConfig,
    UserState,
)
from recsys.embeddings import _least_squares as _least_squares_module
from recsys.embeddings.coldstart import ColdStartData, curve, holdout_mask, mean_curve, ndcg_at_k
from recsys.errors import ArtifactError, ConfigError
from recsys.models import ALSRecommender, EASERecommender

N_CLUSTERS, PER_CLUSTER, DIM = 5, 40, 16


def planted_space(n_regions: int = N_CLUSTERS, seed: int = 0) -> EmbeddingSpace:
    """Five well-separated clusters of 40 items; cluster 0 is by far the most popular."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:N_CLUSTERS]
    vectors = np.repeat(centres, PER_CLUSTER, axis=0) + 0.15 * rng.normal(
        size=(N_CLUSTERS * PER_CLUSTER, DIM)
    )
    popularity = np.repeat([400.0, 150.0, 150.0, 150.0, 150.0], PER_CLUSTER) * rng.uniform(0.5, 1.0, 200)
    popularity[:PER_CLUSTER] += 1000.0
    n = N_CLUSTERS * PER_CLUSTER
    metadata = ItemMetadata(
        item_ids=[f"i{j}" for j in range(n)],
        titles=[f"Title {j}" for j in range(n)],
        categories=[[f"genre{j // PER_CLUSTER}"] for j in range(n)],
        tags=[["tag-even" if j % 2 == 0 else "tag-odd"] for j in range(n)],
        attributes={"price": np.arange(n, dtype=np.float64)},
    )
    return EmbeddingSpace.from_vectors(vectors.astype(np.float32), popularity, metadata, n_regions=n_regions)


def cluster_of(item: int) -> int:
    return item // PER_CLUSTER


def like(item: int, t: float = 0.0, event_id: str | None = None, kind: str = "like") -> Event:
    return Event(item, kind, t, event_id=event_id)


@pytest.fixture(scope="module")
def space() -> EmbeddingSpace:
    return planted_space()


def test_like_pulls_and_dislike_pushes(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space)
    state = UserState("u")
    updater.apply(state, like(0))
    before = float(state.mixture() @ space.unit[5])
    updater.apply(state, like(5, 1.0))
    assert float(state.mixture() @ space.unit[5]) > before
    disliked = 7
    before = float(state.mixture() @ space.unit[disliked])
    updater.apply(state, like(disliked, 2.0, kind="dislike"))
    assert float(state.mixture() @ space.unit[disliked]) < before


def test_repeated_event_id_changes_nothing_and_version_counts_applied(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space)
    state = UserState("u")
    assert updater.apply(state, like(3, event_id="e1")) == (state, True)
    snapshot = state.to_dict()
    assert updater.apply(state, like(3, 5.0, event_id="e1"))[1] is False
    assert state.to_dict() == snapshot
    updater.apply(state, like(4, 6.0, event_id="e2"))
    updater.apply(state, like(9, 7.0))
    assert state.version == 3 and list(state.event_ids) == ["e1", "e2"]


def test_event_id_memory_is_bounded(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space, UpdaterConfig(max_event_ids=3, max_seen=2))
    state = UserState("u")
    for j in range(5):
        updater.apply(state, like(j, float(j), event_id=f"e{j}"))
    assert list(state.event_ids) == ["e2", "e3", "e4"] and list(state.seen) == [3, 4]


def test_unknown_item_is_counted_then_applied_once_known(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space)
    state = UserState("u")
    pending = Event("new-item", "like", 0.0, event_id="late")
    assert updater.apply(state, pending)[1] is True
    assert state.counts["unknown_item"] == 1 and not state.has_signal and "late" not in state.event_ids
    grown = space.add_items(["new-item"], vectors=space.vectors[:1] * 1.01)
    known = Event(grown.n_items - 1, "like", 0.0, event_id="late")
    _, applied = EmbeddingUpdater(grown).apply_many(state, [known, known])
    assert applied == 1 and state.has_signal


def test_two_far_clusters_give_two_interests(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space)
    state = UserState("u")
    for step, item in enumerate([0, 120, 1, 121, 2, 122]):
        updater.apply(state, like(item, float(step)))
    assert len(state.interests) == 2
    clusters = sorted(cluster_of(int(np.argmax(space.unit @ i.direction))) for i in state.interests)
    assert clusters == [0, 3]


def test_close_interests_merge(space: EmbeddingSpace) -> None:
    config = UpdaterConfig(spawn_threshold=0.999, merge_threshold=0.5)
    state = UserState("u")
    updater = EmbeddingUpdater(space, config)
    updater.apply(state, like(0))
    updater.apply(state, like(1, 1.0))  # spawns (below 0.999) then merges (above 0.5)
    assert len(state.interests) == 1 and state.interests[0].weight == pytest.approx(
        3.0 * 0.5 ** (1 / 20) + 3.0
    )
    updater.apply(state, like(160, 2.0))  # far away: stays separate
    assert len(state.interests) == 2


def test_max_interests_evicts_the_weakest(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space, UpdaterConfig(max_interests=2, half_life_events=1.0))
    state = UserState("u")
    for step, item in enumerate([0, 40, 80]):
        updater.apply(state, like(item, float(step)))
    assert len(state.interests) == 2
    assert {cluster_of(a) for i in state.interests for a, _ in i.anchors} == {1, 2}


def test_recency_decay_by_events_and_time(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space, UpdaterConfig(half_life_events=None, half_life_seconds=10.0))
    state = UserState("u")
    updater.apply(state, like(0, 0.0))
    updater.apply(state, like(1, 10.0))
    assert state.interests[0].weight == pytest.approx(3.0 * 0.5 + 3.0)
    updater.apply(state, like(2, 0.0))  # 10 s older than the clock: counts half, nothing decays
    assert state.interests[0].weight == pytest.approx(4.5 + 1.5) and state.clock == 10.0


def test_rating_weight_comes_from_the_weighting_function(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space)
    assert updater.weight(Event(0, "rating", 0.0, value=5.0)) == pytest.approx(1.0)
    assert updater.weight(Event(0, "rating", 0.0, value=1.0)) == pytest.approx(-1.0)
    assert updater.weight(Event(0, "skip", 0.0)) < 0


@pytest.fixture(scope="module")
def als_space() -> tuple[ALSRecommender, EmbeddingSpace]:
    rng = np.random.default_rng(0)
    matrix = sp.csr_matrix((rng.random((60, 30)) < 0.2).astype(np.float32))
    model = ALSRecommender(
        factors=8, regularization=0.1, alpha=2.0, iterations=5, random_state=0, device="cpu"
    )
    model.fit(matrix)
    return model, EmbeddingSpace.from_model(model, np.asarray(matrix.sum(axis=0)).ravel(), n_regions=3)


def _least_squares(space: EmbeddingSpace, confidences: dict[int, float]) -> np.ndarray:
    y = space.vectors.astype(np.float64)
    system = y.T @ y + space.regularization * np.eye(space.dim)
    rhs = np.zeros(space.dim)
    for item, c in confidences.items():
        system += (abs(c) - 1.0) * np.outer(y[item], y[item])
        rhs += max(c, 0.0) * y[item]
    return np.linalg.solve(system, rhs)


def test_exact_fold_in_equals_least_squares(als_space: tuple[ALSRecommender, EmbeddingSpace]) -> None:
    model, space = als_space
    updater = EmbeddingUpdater(space)
    state = UserState("u")
    events = [like(3), like(7, 1.0, kind="view"), like(3, 2.0, kind="click"), like(11, 3.0, kind="dislike")]
    events += [like(7, 4.0, kind="purchase"), Event(20, "rating", 5.0, value=4.5)]
    for event in events:
        updater.apply(state, event)
    weights = {3: 3.0 + 1.0, 7: 0.5 + 5.0, 11: -3.0, 20: 0.75}
    confidences = {item: space.alpha * w for item, w in weights.items()}
    expected = _least_squares(space, confidences)
    np.testing.assert_allclose(state.ls_vector, expected, rtol=1e-4, atol=1e-5)
    row = sp.csr_matrix(
        (
            list(weights.values()),
            ([0] * 4, list(weights)),
        ),
        shape=(1, 30),
        dtype=np.float32,
    )
    np.testing.assert_allclose(state.ls_vector, model.fold_in(row)[0], rtol=1e-3, atol=1e-3)
    restored = UserState.from_bytes(state.to_bytes())  # cache rebuilt from stored confidences
    updater.apply(restored, like(5, 6.0))
    np.testing.assert_allclose(
        restored.ls_vector, _least_squares(space, confidences | {5: 3.0 * space.alpha}), rtol=1e-4, atol=1e-5
    )


def test_copies_keep_the_fold_in_cache_and_stay_exact(
    als_space: tuple[ALSRecommender, EmbeddingSpace], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine updates a copy of the kept state per event: the copy reuses ``A^-1`` (an O(d^2)
    Sherman-Morrison step, no O(d^3) rebuild), agrees with the exact solve, and leaves the original
    and its cache untouched."""
    _, space = als_space
    updater = EmbeddingUpdater(space)
    state = UserState("u")
    updater.apply(state, like(3))  # the first event builds the cache
    rebuilds: list[int] = []
    real = _least_squares_module.rebuild
    monkeypatch.setattr(_least_squares_module, "rebuild", lambda *a: rebuilds.append(1) or real(*a))
    confidences = {3: 3.0 * space.alpha}  # a like weighs 3
    for step, item in enumerate([7, 11, 3, 20, 7], start=1):
        before, before_bytes, before_confidences = state, state.to_bytes(), dict(confidences)
        state = before.copy()
        updater.apply(state, like(item, float(step)))
        confidences[item] = confidences.get(item, 0.0) + 3.0 * space.alpha
        np.testing.assert_allclose(state.ls_vector, _least_squares(space, confidences), rtol=1e-4, atol=1e-5)
        assert before.to_bytes() == before_bytes
        np.testing.assert_allclose(
            before.ls_vector, _least_squares(space, before_confidences), rtol=1e-4, atol=1e-5
        )
    assert rebuilds == []
    with pytest.raises(ValueError, match="read-only"):
        state._cache["ls"][1][0, 0] = 1.0  # shared between copies, so never changed in place


def test_state_round_trip_is_exact(
    space: EmbeddingSpace, als_space: tuple[ALSRecommender, EmbeddingSpace]
) -> None:
    _, als = als_space
    for current in (space, als):
        updater = EmbeddingUpdater(current)
        state = UserState("user-1")
        for step, item in enumerate([0, 25, 3, 29]):
            updater.apply(state, Event(item, "rating", 1.7e9 + step, value=4.5, event_id=f"e{step}"))
        updater.apply(state, like(1, 1.7e9 + 9, kind="dislike"))
        state.exposures["spring"] = 2
        document = state.to_dict()
        assert json.loads(json.dumps(document)) == document
        again = UserState.from_dict(json.loads(json.dumps(document)))
        assert again == state and again.to_dict() == document
        assert UserState.from_bytes(state.to_bytes()) == state
        assert again.interests[0].total.tobytes() == state.interests[0].total.tobytes()


def test_state_bytes_read_what_the_standard_json_wrote(space: EmbeddingSpace) -> None:
    """States stored before the pydantic-core codec (stdlib ``json``, zlib level 6) decode to the
    same state; ids beyond ASCII and non-finite floats survive the round trip both ways."""
    updater = EmbeddingUpdater(space)
    state = UserState("usér-\u2028-\U0001f600")
    for step, item in enumerate([0, 25, 3, 29, 7]):
        updater.apply(state, Event(item, "like", 1.7e9 + step, event_id=f"é-{step}"))
    state.exposures["printemps-été"] = 1
    state.evidence, state.last_signal_time = float("inf"), float("nan")
    old = zlib.compress(json.dumps(state.to_dict(), separators=(",", ":")).encode("utf-8"), 6)
    for payload in (old, state.to_bytes()):
        again = UserState.from_bytes(payload)
        assert again.to_dict().keys() == state.to_dict().keys()
        assert json.dumps(again.to_dict()) == json.dumps(state.to_dict())  # NaN too, as text
        assert math.isinf(again.evidence) and math.isnan(again.last_signal_time)
    documents = [json.dumps(json.loads(zlib.decompress(payload))) for payload in (old, state.to_bytes())]
    assert documents[0] == documents[1]
    with pytest.raises(ArtifactError, match="compressed JSON"):
        UserState.from_bytes(zlib.compress(b'{"format_version": 1, '))


def test_state_rejects_other_format_versions() -> None:
    document = UserState("u").to_dict() | {"format_version": 99}
    with pytest.raises(ArtifactError, match="format_version"):
        UserState.from_dict(document)


def test_forget_gives_a_blank_state_with_a_higher_version(space: EmbeddingSpace) -> None:
    updater = EmbeddingUpdater(space)
    state, _ = updater.apply(UserState("u"), like(0))
    blank = updater.forget(state)
    assert blank.version == 2 and not blank.has_signal and not blank.seen


def test_space_needs_item_embeddings() -> None:
    ease = EASERecommender(l2=1.0).fit(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    with pytest.raises(ConfigError, match="ItemItemScorer"):
        EmbeddingSpace.from_model(ease, np.ones(3))


def test_content_projection_places_new_item_near_content_neighbours(space: EmbeddingSpace) -> None:
    rng = np.random.default_rng(1)
    clusters = np.arange(space.n_items) // PER_CLUSTER
    features = np.zeros((space.n_items, 30))
    features[np.arange(space.n_items), clusters * 6 + rng.integers(0, 6, space.n_items)] = 1.0
    projection = ContentProjection.fit(sp.csr_matrix(features), space.vectors, alpha=0.5)
    grown = space.add_items(["fresh"], vectors=projection.project(sp.csr_matrix(features[[130]])))
    neighbours = np.argsort(-(grown.unit[:-1] @ grown.unit[-1]))[:10]
    assert {int(n) // PER_CLUSTER for n in neighbours} == {3}
    assert grown.regions[-1] == space.regions[130] and grown.metadata.label(grown.n_items - 1) == "fresh"


def test_stage_popularity_uses_the_users_stage() -> None:
    users = np.array([0, 0, 0, 1, 1, 1])
    items = np.array([0, 1, 2, 0, 2, 1])
    prior = StagePopularity.fit(
        users, items, np.array([1, 2, 3, 1, 2, 3]), n_items=3, stages=(0, 1), window=1
    )
    assert prior.for_count(0).tolist() == [2, 0, 0]
    assert prior.for_count(1).tolist() == [0, 1, 1]
    assert prior.for_count(5).tolist() == [2, 2, 2]


class _OracleAgent:
    """Knows the future: recommends exactly the next positives."""

    def __init__(self, items: np.ndarray) -> None:
        self.items = items

    def reset(self, user: int) -> None:
        self.n = 0

    def observe(self, item: int, timestamp: float, rating: float, position: int) -> None:
        assert item == self.items[position]
        self.n += 1

    def recommend(self, k: int) -> np.ndarray:
        return self.items[self.n : self.n + k]


def test_coldstart_protocol_pieces() -> None:
    import pandas as pd

    items = np.arange(30)[::-1]
    frame = pd.DataFrame({"user_id": 0, "item_id": items, "timestamp": np.arange(30.0), "rating": 4.0})
    data = ColdStartData(frame, 1, 30, np.arange(30))
    (history,) = data.histories(np.array([0]))
    assert history.items[:3].tolist() == [29, 28, 27]
    results = mean_curve(curve(_OracleAgent(history.items), [history]))
    assert results == {0: 1.0, 1: 1.0, 3: 1.0, 5: 1.0, 10: 1.0, 20: 1.0}
    assert ndcg_at_k([1, 2], [1, 2]) == 1.0 and ndcg_at_k([5], [1]) == 0.0
    assert holdout_mask(608).sum() == 117
