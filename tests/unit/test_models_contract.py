"""One contract for every model family (adding a family = one entry in SPECS).

The data has planted structure: three taste groups of users and items; users interact with items of
their own group plus 10% noise, and item features are the one-hot group plus noise. Any sensible
personalised model must recommend in-group items to a new user who shows a few in-group items.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.models import (
    FAMILIES,
    HasItemEmbeddings,
    Recommender,
    SupportsScoring,
    build,
    load,
)
from recsys.models._common import mask_seen, top_k


@dataclass(frozen=True)
class Spec:
    id: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    personalised: bool = True
    ratings: bool = False  # fit and query on RATED, the explicit-rating view of the planted data
    exact_embeddings: bool = True  # fold_in @ item_embeddings.T reproduces recommend's ranking
    needs: tuple[str, ...] = ()  # optional modules: the spec is skipped where they are missing


SPECS = [
    Spec("popularity", "popularity", personalised=False),
    Spec("popularity_weight", "popularity", {"mode": "weight"}, personalised=False),
    Spec("userknn", "userknn", {"k": 20, "shrinkage": 1.0}),
    Spec("itemknn", "itemknn", {"k": 20, "shrinkage": 1.0}),
    Spec("itemknn_tfidf", "itemknn", {"k": 20, "weighting": "tfidf"}),
    Spec("itemknn_bm25", "itemknn", {"k": 20, "weighting": "bm25"}),
    Spec("ease", "ease", {"l2": 10.0}),
    Spec("puresvd", "puresvd", {"factors": 5, "random_state": 0}),
    Spec(
        "als",
        "als",
        {"factors": 8, "regularization": 0.1, "iterations": 10, "device": "cpu", "random_state": 0},
    ),
    Spec(
        "bpr",
        "bpr",
        {"factors": 8, "learning_rate": 0.05, "iterations": 60, "device": "cpu", "random_state": 0},
    ),
    Spec(
        "biased_mf",
        "biased_mf",
        {"factors": 4, "epochs": 100, "learning_rate": 0.02, "random_state": 0},
        ratings=True,
    ),
    Spec(
        "ncf",
        "ncf",
        {
            "factors": 8,
            "mlp_layers": (16, 8),
            "epochs": 20,
            "batch_size": 256,
            "learning_rate": 0.01,
            "validation_fraction": 0.0,
            "device": "cpu",
            "random_state": 0,
        },
        exact_embeddings=False,
        needs=("torch",),
    ),
    Spec("content", "content"),
    Spec("content_svd", "content", {"n_components": 3, "random_state": 0}),
    Spec(
        "weighted_hybrid",
        "weighted_hybrid",
        {"members": {"ease": {"l2": 10.0}, "cb": {"family": "content"}}, "weights": {"ease": 0.7, "cb": 0.3}},
    ),
    Spec(
        "switching_hybrid",
        "switching_hybrid",
        {"primary": {"family": "itemknn", "k": 20}, "fallback": {"family": "content"}, "min_history": 5},
    ),
]
IDS = [spec.id for spec in SPECS]

N_GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP, N_NEW_PER_GROUP, N_SHOWN = 3, 40, 30, 5, 4
N_ITEMS = N_GROUPS * ITEMS_PER_GROUP


@dataclass
class Planted:
    train: sp.csr_matrix
    features: sp.csr_matrix
    item_group: np.ndarray
    new_rows: sp.csr_matrix
    new_group: np.ndarray


def _make_planted() -> Planted:
    rng = np.random.default_rng(42)
    item_group = np.repeat(np.arange(N_GROUPS), ITEMS_PER_GROUP)

    def user_row(group: int, n_in: int, noise: float) -> dict[int, float]:
        own = rng.choice(np.flatnonzero(item_group == group), size=n_in, replace=False)
        row = {int(i): float(rng.choice([1.0, 2.0])) for i in own}
        for _ in range(rng.binomial(n_in, noise)):
            row[int(rng.integers(N_ITEMS))] = 1.0
        return row

    def to_csr(rows: list[dict[int, float]]) -> sp.csr_matrix:
        data, indices, indptr = [], [], [0]
        for row in rows:
            indices.extend(row)
            data.extend(row.values())
            indptr.append(len(indices))
        return sp.csr_matrix((np.array(data, np.float32), indices, indptr), shape=(len(rows), N_ITEMS))

    groups = np.repeat(np.arange(N_GROUPS), USERS_PER_GROUP)
    train = to_csr([user_row(g, 10, 0.1) for g in groups])
    new_group = np.repeat(np.arange(N_GROUPS), N_NEW_PER_GROUP)
    new_rows = to_csr([user_row(g, N_SHOWN, 0.0) for g in new_group])
    noise = rng.random((N_ITEMS, 5)) * 0.3
    features = sp.csr_matrix(np.hstack([np.eye(N_GROUPS)[item_group], noise]).astype(np.float32))
    return Planted(train, features, item_group, new_rows, new_group)


PLANTED = _make_planted()
_FITTED: dict[str, Any] = {}


def _as_ratings(rows: sp.csr_matrix, n_disliked: int = 0) -> sp.csr_matrix:
    """Explicit-rating view for rating models (biased_mf): own-group items 4-5 stars, others 1 star.

    A rating model learns taste from the contrast between high and low ratings, which the implicit
    data barely has, so ``n_disliked`` other-group items per row get 1 star as well.
    """
    rng = np.random.default_rng(7)
    dense = rows.toarray()
    counts = np.stack([(dense[:, PLANTED.item_group == g] > 0).sum(axis=1) for g in range(N_GROUPS)], axis=1)
    own = PLANTED.item_group[None, :] == counts.argmax(axis=1)[:, None]
    dense = np.where(dense > 0, np.where(own, dense + 3, 1), 0)
    for r in range(dense.shape[0]):
        dense[r, rng.choice(np.flatnonzero(~own[r] & (dense[r] == 0)), n_disliked, replace=False)] = 1
    return sp.csr_matrix(dense.astype(np.float32))


RATED = replace(
    PLANTED, train=_as_ratings(PLANTED.train, n_disliked=5), new_rows=_as_ratings(PLANTED.new_rows)
)


def data(spec: Spec) -> Planted:
    return RATED if spec.ratings else PLANTED


@pytest.fixture(autouse=True)
def _skip_without_optional_modules(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    for module in callspec.params["spec"].needs if callspec and "spec" in callspec.params else ():
        pytest.importorskip(module)


def fresh(spec: Spec) -> Any:
    return build(spec.family, **spec.params).fit(data(spec).train, PLANTED.features)


def fitted(spec: Spec) -> Any:
    if spec.id not in _FITTED:
        _FITTED[spec.id] = fresh(spec)
    return _FITTED[spec.id]


def test_every_family_is_covered() -> None:
    assert {spec.family for spec in SPECS} == set(FAMILIES)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_built_from_a_dict_and_fit_returns_self(spec: Spec) -> None:
    model = build(spec.family, **spec.params)
    assert isinstance(model, Recommender) and isinstance(model, SupportsScoring)
    params = model.get_params()
    assert {k: params[k] for k in spec.params} == spec.params
    assert type(model)(**params).get_params() == params
    assert model.fit(data(spec).train, PLANTED.features) is model


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_unfitted_model_and_wrong_width_raise(spec: Spec) -> None:
    with pytest.raises(ConfigError, match="not fitted"):
        build(spec.family, **spec.params).recommend(data(spec).new_rows)
    with pytest.raises(DataError, match="item columns"):
        fitted(spec).recommend(sp.csr_matrix((1, N_ITEMS + 1), dtype=np.float32))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_recommend_shapes_order_and_seen_filtering(spec: Spec) -> None:
    model, rows = fitted(spec), data(spec).new_rows
    ids, scores = model.recommend(rows, k=10)
    assert ids.shape == scores.shape == (rows.shape[0], 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ((ids >= 0) & (ids < N_ITEMS)).all()
    assert all(len(set(row)) == 10 for row in ids)
    assert (np.diff(scores, axis=1) <= 0).all()
    for r in range(rows.shape[0]):
        assert not set(ids[r]) & set(rows[r].indices)

    full = model.score(rows)
    assert full.shape == (rows.shape[0], N_ITEMS) and full.dtype == np.float32
    unfiltered = model.recommend(rows, k=10, filter_seen=False)
    np.testing.assert_array_equal(unfiltered[0], top_k(full.copy(), 10)[0])
    masked = full.copy()
    mask_seen(masked, rows)
    np.testing.assert_array_equal(ids, top_k(masked, 10)[0])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_allow_and_deny_lists(spec: Spec) -> None:
    model, rows = fitted(spec), data(spec).new_rows
    allow = np.arange(0, N_ITEMS, 7)
    ids, _ = model.recommend(rows, k=5, allow=allow)
    assert set(ids.ravel()) <= set(allow)
    deny = model.recommend(rows, k=3)[0].ravel()
    ids, _ = model.recommend(rows, k=10, deny=deny)
    assert not set(ids.ravel()) & set(deny)
    ids, scores = model.recommend(rows[:1], k=5, allow=np.array([1, 2]), filter_seen=False)
    assert sorted(ids[0, :2]) == [1, 2] and (ids[0, 2:] == -1).all()
    assert np.isneginf(scores[0, 2:]).all() and np.isfinite(scores[0, :2]).all()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_empty_history_gets_k_valid_items_deterministically(spec: Spec) -> None:
    empty = sp.csr_matrix((2, N_ITEMS), dtype=np.float32)
    ids, scores = fitted(spec).recommend(empty, k=10)
    assert ((ids >= 0) & (ids < N_ITEMS)).all() and len(set(ids[0])) == 10
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(ids[0], ids[1])
    np.testing.assert_array_equal(ids, fitted(spec).recommend(empty, k=10)[0])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_k_beyond_catalogue_is_padded(spec: Spec) -> None:
    ids, scores = fitted(spec).recommend(data(spec).new_rows[:1], k=N_ITEMS + 5)
    n_valid = N_ITEMS - data(spec).new_rows[0].nnz
    assert (ids[0, :n_valid] >= 0).all() and (ids[0, n_valid:] == -1).all()
    assert np.isneginf(scores[0, n_valid:]).all()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_save_load_round_trip(spec: Spec, tmp_path: Any) -> None:
    model = fitted(spec)
    model.save(tmp_path / "model")
    for restored in (type(model).load(tmp_path / "model"), load(tmp_path / "model")):
        assert type(restored) is type(model) and restored.get_params() == model.get_params()
        np.testing.assert_array_equal(restored.score(data(spec).new_rows), model.score(data(spec).new_rows))
        items = np.array([0, 45, 89])
        np.testing.assert_array_equal(restored.similar_items(items, 5)[0], model.similar_items(items, 5)[0])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_same_random_state_same_model(spec: Spec) -> None:
    rows = data(spec).new_rows
    np.testing.assert_array_equal(fresh(spec).score(rows), fitted(spec).score(rows))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_planted_groups_are_recommended(spec: Spec) -> None:
    model = fitted(spec)
    ids, _ = model.recommend(data(spec).new_rows, k=10)
    if not spec.personalised:
        popularity = model.score(sp.csr_matrix((1, N_ITEMS), dtype=np.float32))[0]
        assert (popularity[ids[:, 0]] == popularity.max()).all()
        return
    in_group = PLANTED.item_group[ids] == PLANTED.new_group[:, None]
    assert in_group.mean() >= 0.8, f"{spec.id}: only {in_group.mean():.0%} of top-10 in the user's group"


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.personalised], ids=[s.id for s in SPECS if s.personalised]
)
def test_similar_items_are_in_group(spec: Spec) -> None:
    items = np.array([0, 5, 30, 35, 60, 65])
    ids, scores = fitted(spec).similar_items(items, k=5)
    assert ids.shape == scores.shape == (items.size, 5)
    assert not (ids == items[:, None]).any()
    in_group = PLANTED.item_group[ids] == PLANTED.item_group[items][:, None]
    assert in_group.mean() >= 0.8, f"{spec.id}: only {in_group.mean():.0%} of similar items in group"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_item_embeddings_reproduce_scores(spec: Spec) -> None:
    model = fitted(spec)
    if not isinstance(model, HasItemEmbeddings):
        pytest.skip("no item embeddings")
    embeddings = model.item_embeddings
    rows = data(spec).new_rows
    users = model.fold_in(rows)
    assert embeddings.shape[0] == N_ITEMS and users.shape == (rows.shape[0], embeddings.shape[1])
    assert embeddings.dtype == users.dtype == np.float32
    ranking = np.argsort(-(users @ embeddings.T), axis=1, kind="stable")[:, :5]
    if spec.exact_embeddings:
        np.testing.assert_array_equal(ranking, model.recommend(rows, k=5, filter_seen=False)[0])
    else:  # e.g. NCF: its MLP tower is outside the space, which must still rank the planted groups
        assert (PLANTED.item_group[ranking] == PLANTED.new_group[:, None]).mean() >= 0.8
