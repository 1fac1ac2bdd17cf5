"""Ranking: the zero-history prior, blending, filters, MMR, journey, promotions, explanations, intent."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from recsys.embeddings import EmbeddingSpace, EmbeddingUpdater, Event, UserState
from recsys.errors import ConfigError
from recsys.ranking import (
    BlendConfig,
    Campaign,
    Filters,
    ItemItemScorer,
    IVFIndex,
    JourneyConfig,
    JourneyStage,
    RankedItem,
    Ranker,
    RankerConfig,
    RequestContext,
    exact_top_k,
    mean_pairwise_similarity,
    mmr,
    recall_at_k,
)
from recsys.ranking import ranker as ranker_module
from recsys.ranking._explain import signal_sources
from recsys.ranking._scoring import Blended
from tests.unit.test_embeddings import PER_CLUSTER, planted_space


def cluster_of(item: int) -> int:
    return item // PER_CLUSTER


@pytest.fixture(scope="module")
def space() -> EmbeddingSpace:
    return planted_space()


def liked(space: EmbeddingSpace, items: list[int], kind: str = "like") -> UserState:
    updater = EmbeddingUpdater(space)
    state = UserState("u")
    for step, item in enumerate(items):
        updater.apply(state, Event(item, kind, float(step)))
    return state


def test_zero_history_page_spreads_over_regions_and_beats_popularity(space: EmbeddingSpace) -> None:
    page = [r.item for r in Ranker(space).recommend(UserState("new"), k=10)]
    assert len({cluster_of(i) for i in page}) >= 3
    popular = np.argsort(-space.prior.overall, kind="stable")[:10]
    assert {cluster_of(i) for i in popular} == {0}
    # planted users: each likes one cluster (cluster 0 the most common); hit rate of the first page
    share = np.array([0.4, 0.15, 0.15, 0.15, 0.15])

    def hit_rate(items: list[int] | np.ndarray) -> float:
        return float(sum(share[c] for c in range(5) if any(cluster_of(i) == c for i in items)))

    assert hit_rate(page) >= hit_rate(popular)
    assert all(r.provenance == "popular" for r in Ranker(space).recommend(UserState("new"), k=10))


def test_first_signal_changes_the_page_but_keeps_some_prior(space: EmbeddingSpace) -> None:
    ranker = Ranker(
        space, config=RankerConfig(blend=BlendConfig(confidence_half=2.0))
    )  # c = 0.6 after a like
    cold = [r.item for r in ranker.recommend(UserState("new"), k=10)]
    first = ranker.recommend(liked(space, [130]), k=10)
    clusters = [cluster_of(r.item) for r in first]
    assert [r.item for r in first] != cold
    assert 3 in clusters and any(c != 3 for c in clusters)
    many = ranker.recommend(liked(space, [130, 131, 132, 133, 134, 135, 136, 137]), k=10)
    assert sum(cluster_of(r.item) == 3 for r in many) > clusters.count(3)


def test_multi_interest_page_covers_both_clusters(space: EmbeddingSpace) -> None:
    state = liked(space, [0, 120, 1, 121, 2, 122, 3, 123])
    page = Ranker(space).recommend(state, k=10)
    assert {cluster_of(r.item) for r in page if r.provenance == "exploit"} >= {0, 3}


def test_filters_seen_category_attribute_allow_deny(space: EmbeddingSpace) -> None:
    ranker = Ranker(space)
    state = liked(space, [120, 121, 122])
    assert not {r.item for r in ranker.recommend(state, k=20)} & {120, 121, 122}
    assert {120, 121} & {r.item for r in ranker.recommend(state, k=40, filters=Filters(exclude_seen=False))}
    only = ranker.recommend(state, k=10, filters=Filters(include_categories=["genre1"]))
    assert {cluster_of(r.item) for r in only} == {1}
    without = ranker.recommend(state, k=30, filters=Filters(exclude_categories=["genre3"]))
    assert 3 not in {cluster_of(r.item) for r in without}
    cheap = ranker.recommend(state, k=10, filters=Filters(attribute_ranges={"price": (None, 9.0)}))
    assert {r.item for r in cheap} <= set(range(10))
    allow = ranker.recommend(state, k=10, filters=Filters(allow=[5, 6, 7, 121], deny=[6]))
    assert {r.item for r in allow} == {5, 7}
    with pytest.raises(ConfigError, match="unknown item attribute"):
        ranker.recommend(state, filters=Filters(attribute_ranges={"colour": (0.0, 1.0)}))


def test_mmr_lowers_average_pairwise_similarity(space: EmbeddingSpace) -> None:
    state = liked(space, [0, 120])
    focused = RankerConfig(journey=JourneyConfig(stages=(JourneyStage(name="focus", mmr_lambda=1.0),)))
    diverse = RankerConfig(journey=JourneyConfig(stages=(JourneyStage(name="focus", mmr_lambda=0.3),)))
    pages = [[r.item for r in Ranker(space, config=c).recommend(state, k=10)] for c in (focused, diverse)]
    assert mean_pairwise_similarity(pages[1], space.unit) < mean_pairwise_similarity(pages[0], space.unit)
    unit = np.array([[1, 0], [0.99, 0.14], [0, 1]], dtype=np.float32)
    assert mmr(np.array([0, 1, 2]), np.array([1.0, 0.95, 0.5]), unit, 2, 0.5) == [0, 2]
    with pytest.raises(ConfigError, match="mmr_lambda"):
        mmr(np.array([0, 1, 2]), np.array([1.0, 0.95, 0.5]), unit, 2, 1.5)


def test_journey_policy_transitions_and_exploration_share(space: EmbeddingSpace) -> None:
    ranker = Ranker(space)
    journey = ranker.config.journey
    state = UserState("u")
    assert journey.stage(state).name == "cold"
    updater = EmbeddingUpdater(space)
    updater.apply(state, Event(0, "like", 0.0))
    updater.apply(state, Event(1, "like", 1.0))
    names = []
    for _ in range(5):
        names.append(journey.stage(state).name)
        page = ranker.recommend(state, k=10)
        ranker.served(state, page)
    assert names == ["focus", "focus", "browse", "browse", "explore"]
    page = ranker.recommend(state, k=10)
    explore = [r for r in page if r.provenance == "explore"]
    assert len(explore) == 4 and all(cluster_of(r.item) != 0 for r in explore)
    updater.apply(state, Event(2, "like", 2.0))
    assert journey.stage(state).name == "focus"
    assert not [r for r in ranker.recommend(state, k=10) if r.provenance == "explore"]
    with pytest.raises(ValueError, match="increase strictly"):
        JourneyConfig(stages=(JourneyStage(name="a"), JourneyStage(name="b")))


def test_promotions_need_relevance_and_respect_the_cap(space: EmbeddingSpace) -> None:
    near = Campaign("near", items=(150, 151), relevance_floor=0.5, per_user_cap=2, slot=1)
    far = Campaign("far", items=(60, 61), relevance_floor=0.5, per_user_cap=5, slot=0)
    ranker = Ranker(space, campaigns=(far, near), config=RankerConfig(max_promotions=2))
    state = liked(space, [120, 121, 122])
    shown = []
    for _ in range(3):
        page = ranker.recommend(state, k=10, request_context=RequestContext(now=100.0))
        shown.append([r for r in page if r.provenance == "promoted"])
        ranker.served(state, page)
    assert [p[0].campaign_id for p in shown[:2]] == ["near", "near"] and shown[2] == []
    assert shown[0][0].item in (150, 151) and state.exposures == {"near": 2}
    timed = Ranker(space, campaigns=(Campaign("later", items=(150,), relevance_floor=0.0, start=1e9),))
    page = timed.recommend(liked(space, [120]), k=10, request_context=RequestContext(now=100.0))
    assert not [r for r in page if r.provenance == "promoted"]
    assert not [r for r in ranker.recommend(UserState("new"), k=10) if r.provenance == "promoted"]


@pytest.mark.parametrize("sparse", [False, True])
def test_every_item_has_score_provenance_and_an_explanation_naming_signals(
    space: EmbeddingSpace, sparse: bool
) -> None:
    scorer = ItemItemScorer("pairs", np.eye(space.n_items, k=1, dtype=np.float32) * 5.0)
    scorer = scorer.pruned(3) if sparse else scorer
    state = liked(space, [120, 121, 122])
    page = Ranker(space, scorers=[scorer]).recommend(state, k=10)
    assert all(np.isfinite(r.score) and r.explanation for r in page)
    exploit = [r for r in page if r.provenance == "exploit"]
    assert exploit and all(set(r.because) <= {120, 121, 122} and r.because for r in exploit)
    top = page[0]
    assert top.item == 123 and top.because[0] == 122 and "Title 122" in top.explanation
    assert json.dumps([r.to_dict() for r in page])


def test_intent_summary_shape(space: EmbeddingSpace) -> None:
    state = liked(space, [0, 120, 1, 121, 2])
    intent = Ranker(space).intent(state)
    assert json.loads(json.dumps(intent)) == intent
    assert set(intent) == {"user_id", "version", "confidence", "journey_stage", "n_signals", "positives",
                           "interests", "drift", "recent_signals"}  # fmt: skip
    assert len(intent["interests"]) == 2 and intent["interests"][0]["share"] > intent["interests"][1]["share"]
    assert intent["interests"][0]["categories"][0]["name"] == "genre0"
    assert intent["recent_signals"][0]["item"] == 2 and 0 < intent["confidence"] < 1


def test_similar_items(space: EmbeddingSpace) -> None:
    similar = Ranker(space).similar_items(45, k=5)
    assert {cluster_of(r.item) for r in similar} == {1} and 45 not in {r.item for r in similar}


def test_next_items_and_session_scorers_learn_sequences(tmp_path: Path) -> None:
    users = np.repeat(np.arange(30), 4)
    items = np.tile([0, 1, 2, 3], 30)
    times = np.tile(np.arange(4.0), 30)
    for scorer in (
        ItemItemScorer.fit_next_items(users, items, times, n_items=6, past=2, future=1, l2=1.0),
        ItemItemScorer.fit_session_ease(users, items, times, n_items=6, window=2, stride=1, l2=1.0),
    ):
        from recsys.embeddings.state import Signal

        scores = scorer.scores([Signal(0, 1.0, 0.0, 0, "like")], n_signals=1, n_items=7)
        assert int(np.argmax(scores)) == 1 and scores[6] == 0.0
        sparse = scorer.pruned(2)
        assert int(np.argmax(sparse.scores([Signal(0, 1.0, 0.0, 0, "like")], 1, 6))) == 1
        for saved in (scorer, sparse):
            saved.save(tmp_path / "scorer.npz")
            again = ItemItemScorer.load(tmp_path / "scorer.npz")
            assert again.name == saved.name and again.half_life_events == saved.half_life_events
            np.testing.assert_array_equal(
                again.scores([Signal(2, 1.0, 0.0, 0, "like")], 1, 6),
                saved.scores([Signal(2, 1.0, 0.0, 0, "like")], 1, 6),
            )


def test_sparse_contributions_equal_the_dense_ones() -> None:
    """The explanations' per-signal contributions read the same from a pruned (sparse) matrix that
    kept every entry, for repeated page items and items newer than the matrix (which get none)."""
    from recsys.embeddings.state import Signal

    rng = np.random.default_rng(3)
    matrix = (rng.random((40, 40)) * (rng.random((40, 40)) < 0.6)).astype(np.float32)
    dense = ItemItemScorer("m", matrix, half_life_events=2.0)
    sparse = dense.pruned(40)
    signals = [
        Signal(int(i), w, 0.0, n, "like")
        for n, (i, w) in enumerate([(3, 1.0), (7, 0.5), (3, 2.0), (39, -1.0)])
    ]
    page = np.array([5, 12, 5, 39, 0, 41, 44, 12])  # 41 and 44: added after the matrix was fitted
    dense_sources, dense_values = dense.contributions(signals, 4, page)
    sparse_sources, sparse_values = sparse.contributions(signals, 4, page)
    np.testing.assert_array_equal(dense_sources, sparse_sources)
    np.testing.assert_allclose(sparse_values, dense_values, rtol=1e-6)
    assert dense_values[:, 5:7].sum() == 0 and np.count_nonzero(dense_values) > 5
    np.testing.assert_array_equal(sparse_values[:, 2], sparse_values[:, 0])  # a repeated item
    assert sparse.contributions([], 0, page)[1].shape == (0, page.size)


def test_exact_and_approximate_retrieval() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    ids, _ = exact_top_k(queries, vectors, 10, batch=7)
    np.testing.assert_array_equal(ids[0], np.argsort(-(vectors @ queries[0]))[:10])
    index = IVFIndex.build(vectors, n_lists=30, random_state=0)
    assert recall_at_k(index, vectors, queries, k=10, n_probe=30) == 1.0
    assert recall_at_k(index, vectors, queries, k=10, n_probe=8) > 0.6


def test_large_catalogue_path_uses_the_index(space: EmbeddingSpace) -> None:
    ranker = Ranker(space, config=RankerConfig(exact_search_max_items=50, ann_probe=4))
    state = liked(space, [120, 121])
    page = ranker.recommend(state, k=10)
    assert ranker._index is not None and len(page) == 10 and 3 in {cluster_of(r.item) for r in page}


def test_items_added_live_can_be_recommended(space: EmbeddingSpace) -> None:
    grown = space.add_items(["brand-new"], vectors=space.vectors[[125]] * 1.05, categories=[["genre3"]])
    ranker = Ranker(space).with_space(grown)
    state = liked(grown, [120, 121, 122, 123, 124, 125, 126])
    assert grown.n_items - 1 in {r.item for r in ranker.recommend(state, k=10)}


def test_zero_history_pages_are_kept_per_k_and_category_and_match_a_fresh_ranker(
    space: EmbeddingSpace,
) -> None:
    kept = Ranker(space)
    asks = [(10, None), (5, None), (10, ["genre2"]), (10, None), (5, None), (10, ["genre2"])]
    for k, categories in asks:
        page = kept.recommend(UserState("new"), k, Filters(include_categories=categories))
        assert page == Ranker(space).recommend(UserState("new"), k, Filters(include_categories=categories))
        assert len(page) == k and (categories is None or all(cluster_of(r.item) == 2 for r in page))
    seen = UserState("new")
    seen.seen[0] = None  # an event on an item without a signal: no longer the shared page
    assert 0 not in {r.item for r in kept.recommend(seen, 10)}
    assert 0 in {r.item for r in kept.recommend(UserState("new"), 200)}


def test_recommend_from_kept_scores_equals_scoring_again(space: EmbeddingSpace) -> None:
    ranker = Ranker(space)
    state = liked(space, [120, 121, 81, 82], kind="click")
    scored = ranker.scores(state)
    assert not scored.scores.flags.writeable  # shared between requests: read-only
    for pages in (0, 2, 5):
        state.pages_since_signal = pages
        assert ranker.recommend(state, 10, scored=scored) == ranker.recommend(state, 10)


def _pages_without_shortlist(ranker: Ranker, state: UserState, k: int, **kw: object) -> list[RankedItem]:
    """The page computed over the whole catalogue: the blend without its shortlist."""
    scored = ranker.scores(state)
    return ranker.recommend(state, k, scored=dataclasses.replace(scored, shortlist=None), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("sparse", [False, True])
def test_the_blend_shortlist_changes_no_page(sparse: bool) -> None:
    """Pages that filter out only the seen items read the blend's shortlist (pool, its cosines
    and groups, explanations, adjacent items); they equal the pages ranked over the whole catalogue,
    for users with one to many interests, every journey stage, promotions, small pools and the IVF
    path (the blend scores a subset of the catalogue)."""
    rng = np.random.default_rng(11 if sparse else 12)
    space = planted_space(n_regions=12, seed=3)
    matrix = (rng.random((space.n_items, space.n_items)) * (rng.random((space.n_items,) * 2) < 0.2)).astype(
        np.float32
    )
    scorer = ItemItemScorer("m", matrix, half_life_events=3.0)
    campaigns = (Campaign("c", items=tuple(range(0, 200, 7)), relevance_floor=0.1, per_user_cap=50, slot=1),)
    configs = [  # without campaigns, every page reads the shortlist's pool; with them, some do
        (RankerConfig(), ()),
        (RankerConfig(pool_size=12, max_promotions=2, adjacent_min_similarity=-1.0), campaigns),
        (RankerConfig(exact_search_max_items=50, ann_probe=2, pool_size=12), ()),  # IVF: item subsets
    ]
    kinds = ["like", "click", "view", "purchase", "dislike", "skip"]
    compared = 0
    for config, offers in configs:
        ranker = Ranker(space, [scorer.pruned(30) if sparse else scorer], config, offers)
        for user in range(24):
            if user % 2:  # many signals anywhere
                items = rng.integers(0, space.n_items, size=int(rng.integers(1, 60))).tolist()
            else:  # a strong and a weak interest: the weak one's quota decides a slot
                strong, weak = rng.choice(5, size=2, replace=False) * PER_CLUSTER
                items = (strong + rng.integers(0, PER_CLUSTER, size=12)).tolist()
                items[2::4] = (weak + rng.integers(0, PER_CLUSTER, size=3)).tolist()
            state = liked(space, items, kind=kinds[user % len(kinds)])
            subset = ranker.scores(state).items  # IVF: the blend scores a subset of the catalogue
            assert (subset is not None and subset.size < space.n_items) == (ranker._index is not None)
            for pages in (0, 2, 5):
                state.pages_since_signal = pages
                for k in (1, 10, 25):
                    page = ranker.recommend(state, k)
                    assert page == _pages_without_shortlist(ranker, state, k)
                    compared += 1
    assert compared == 3 * 24 * 3 * 3
    # A request with another filter does not read the shortlist: the same page as a fresh ranking.
    state = liked(space, [120, 121, 122])
    filters = Filters(deny=[123, 124])
    expected = _pages_without_shortlist(ranker, state, 10, filters=filters)
    assert ranker.recommend(state, 10, filters) == expected


def test_adjacent_items_read_all_near_rows_when_the_nearest_have_too_few_fresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page's adjacent items come from the shortlist's nearest rows (outside the seen items'
    regions) when enough of them are outside the page's regions too; else from all the near rows:
    the same items either way as ranking over the whole catalogue."""
    space = planted_space(n_regions=40, seed=5)
    ranker = Ranker(space, config=RankerConfig(adjacent_min_similarity=-1.0))
    state = liked(space, list(range(120, 130)))
    allowed = ~np.isin(np.arange(space.n_items), list(state.seen))
    count = 3  # 12 candidates wanted
    regions = space.regions.tolist()
    cases = []
    for limit in (40, 6):  # enough nearest rows; too few
        monkeypatch.setattr(ranker_module, "NEAREST", limit)
        scored = ranker.scores(state)
        assert scored.shortlist is not None and scored.shortlist.nearest.size == limit
        cases.append((scored, set()))
    # Items on the page whose regions cover all but the last few nearest rows: too few left.
    nearest = cases[0][0].shortlist.nearest.tolist()
    spared = {regions[r] for r in nearest[-3:]}
    covered = {regions[r] for r in nearest} - spared
    taken = {next(i for i in range(space.n_items) if regions[i] == r and allowed[i]) for r in covered}
    assert 0 < sum(regions[r] not in covered for r in nearest) < 4 * count
    cases.append((cases[0][0], taken))
    for scored, on_page in cases:
        picked = ranker._explore(state, scored, scored.shortlist, None, on_page, count)
        assert picked == ranker._explore(state, scored, None, allowed, on_page, count)
        touched = {regions[i] for i in state.seen} | (covered if on_page else set())
        assert len(picked) == count and not {regions[i] for i in picked} & touched


def _signal_sources_by_loop(scored: Blended, items: list[int]) -> dict[int, list[int]]:
    """The explanations' sources as a loop over scorers, items and signals summing into dicts."""
    pulled: dict[int, dict[int, float]] = {item: {} for item in items}
    for scorer, rows in scored.signal_rows:
        sources, values = scorer.contributions_from(rows, np.asarray(items))
        for column, item in enumerate(items):
            for row, source in enumerate(sources.tolist()):
                if values[row, column] > 0:
                    pulled[item][source] = pulled[item].get(source, 0.0) + scorer.weight * values[row, column]
    return {item: sorted(p, key=lambda s: -p[s])[:2] for item, p in pulled.items()}


def test_signal_sources_sum_over_scorers_and_break_ties_by_first_contribution() -> None:
    space = planted_space()
    rng = np.random.default_rng(4)
    dense = (rng.random((space.n_items, space.n_items)) * (rng.random((space.n_items,) * 2) < 0.3)).astype(
        np.float32
    )
    twin = dense.copy()
    twin[7] = twin[9]  # two signals with equal rows: equal contributions, a tie to break
    scorers = [
        ItemItemScorer("a", twin, weight=1.0, half_life_events=None),
        ItemItemScorer("b", dense, weight=0.5, half_life_events=2.0, max_history=3).pruned(40),
    ]
    ranker = Ranker(space, scorers)
    # Repeated signals on 9, 7 and 3; "b" reads only the last three (so 9 and 7 tie in "a" alone).
    state = liked(space, [9, 7, 3, 9, 7, 55, 120, 61, 3])
    scored = ranker.scores(state)
    items = list(range(0, 200, 3))
    expected = _signal_sources_by_loop(scored, items)
    assert signal_sources(scored, np.asarray(items)) == expected
    assert any(len(v) == 2 for v in expected.values())
    ties = [v for v in expected.values() if set(v) == {7, 9}]
    assert ties and all(v == [9, 7] for v in ties)  # 9 contributed first (the older signal)
