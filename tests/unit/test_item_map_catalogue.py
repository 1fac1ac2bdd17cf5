"""The demo page's pure parts: the PCA item map, users placed on it, and catalogue search."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.embeddings import EmbeddingSpace, EmbeddingUpdater, ItemMetadata, UpdaterConfig, UserState
from recsys.embeddings import Event as UpdateEvent
from recsys.engine.catalogue import Catalogue
from recsys.engine.item_map import PlanarProjection, map_sample, primary_categories, user_map
from recsys.errors import ConfigError, DataError


@pytest.fixture()
def space() -> EmbeddingSpace:
    """Two well-separated clusters of items in 8-d, with titles and genres, one item without a vector."""
    rng = np.random.default_rng(3)
    centres = np.zeros((2, 8))
    centres[0, 0], centres[1, 1] = 1.0, 1.0
    vectors = np.vstack([centres[i // 10] + 0.1 * rng.normal(size=8) for i in range(20)] + [np.zeros(8)])
    meta = ItemMetadata(
        item_ids=[f"i{i}" for i in range(21)],
        titles=[f"{'Space' if i < 10 else 'Love'} story {i}" for i in range(21)],
        categories=[["Drama", "Sci-Fi"] if i < 10 else ["Drama", "Romance"] for i in range(21)],
        tags=[["robots"] if i == 3 else [] for i in range(21)],
    )
    popularity = np.arange(21, 0, -1, dtype=np.float32)  # item 0 most popular
    return EmbeddingSpace.from_vectors(vectors.astype(np.float32), popularity, meta, n_regions=2)


def test_projection_recovers_the_main_axes_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(500, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    pca = PlanarProjection.fit(rows)
    assert abs(pca.components[0] @ np.eye(5)[0]) > 0.99 and abs(pca.components[1] @ np.eye(5)[1]) > 0.99
    assert pca.explained[0] > pca.explained[1] > 0.1 and sum(pca.explained) < 1.0
    again = PlanarProjection.fit(rows[::-1])  # same rows, other order: same picture
    np.testing.assert_allclose(again.project(rows), pca.project(rows), atol=1e-9)
    assert pca.project(rows[0]).shape == (1, 2)
    with pytest.raises(DataError, match="dimension 3"):
        pca.project(np.ones(3))


def test_projection_skips_zero_rows_and_handles_one_dimension() -> None:
    rows = np.array([[1.0], [3.0], [0.0]])
    pca = PlanarProjection.fit(rows)
    np.testing.assert_allclose(pca.mean, [2.0])  # the zero row (an item without a vector) is left out
    np.testing.assert_allclose(pca.project(rows)[:2], [[-1.0, 0.0], [1.0, 0.0]])


def test_map_separates_the_clusters_and_samples_the_most_popular(space: EmbeddingSpace) -> None:
    pca = PlanarProjection.fit(space.unit)
    points = pca.project(space.unit[:20])
    first, second = points[:10, 0], points[10:, 0]
    assert first.max() < second.min() or second.max() < first.min()  # the first axis splits them
    assert map_sample(space.prior.overall, 3).tolist() == [0, 1, 2]
    assert map_sample(space.prior.overall, 100).size == 21
    with pytest.raises(DataError):
        map_sample(space.prior.overall, 0)


def test_items_are_coloured_by_their_rarest_category(space: EmbeddingSpace) -> None:
    assert primary_categories(space, np.array([0, 15])) == ["Sci-Fi", "Romance"]  # not "Drama"


def test_the_user_moves_towards_what_they_like(space: EmbeddingSpace) -> None:
    pca = PlanarProjection.fit(space.unit)
    updater = EmbeddingUpdater(space, UpdaterConfig())
    state = UserState("u")
    blank = user_map(space, state, pca, lambda i: f"i{i}")
    assert blank["position"] is None and blank["signals"] == [] and blank["n_signals"] == 0

    state, _ = updater.apply(state, UpdateEvent(2, "like", 1.0, None, "e1", None))
    one = user_map(space, state, pca, lambda i: f"i{i}")
    item_2 = pca.project(space.unit[2])[0]
    assert np.allclose([one["position"]["x"], one["position"]["y"]], item_2, atol=1e-4)  # on the item
    assert one["signals"][0]["item_id"] == "i2" and one["signals"][0]["weight"] > 0

    for n, item in enumerate([12, 13, 14, 15], start=2):
        state, _ = updater.apply(state, UpdateEvent(item, "like", float(n), None, f"e{n}", None))
    moved = user_map(space, state, pca, lambda i: f"i{i}")
    position = np.array([moved["position"]["x"], moved["position"]["y"]])
    romance = pca.project(space.unit[10:20]).mean(axis=0)
    scifi = pca.project(space.unit[:10]).mean(axis=0)
    assert np.linalg.norm(position - romance) < np.linalg.norm(position - scifi)  # it moved over
    assert len(moved["interests"]) >= 1 and abs(sum(i["share"] for i in moved["interests"]) - 1) < 1e-3
    assert [s["item_id"] for s in moved["signals"]] == ["i2", "i12", "i13", "i14", "i15"]


def test_search_matches_every_word_most_popular_first(space: EmbeddingSpace) -> None:
    catalogue = Catalogue.from_space(space, [f"i{i}" for i in range(21)])
    page = catalogue.search("space story", limit=3)
    assert page.total == 10 and page.items.tolist() == [0, 1, 2]
    assert catalogue.search("space", offset=8, limit=5).items.tolist() == [8, 9]
    assert catalogue.search("ROBOTS").items.tolist() == [3]  # tags and case-insensitive
    assert catalogue.search("romance").total == 11  # categories too (items 10-20)
    assert catalogue.search("space love").total == 0
    assert catalogue.search("").total == 21


def test_category_filter_and_facets(space: EmbeddingSpace) -> None:
    catalogue = Catalogue.from_space(space, [f"i{i}" for i in range(21)])
    page = catalogue.search("story", category="Romance", limit=50)
    assert page.total == 11 and set(page.items.tolist()) == set(range(10, 21))
    assert page.facets == [("Drama", 21), ("Romance", 11), ("Sci-Fi", 10)]  # of the query, before the filter
    assert catalogue.category_names() == ["Drama", "Romance", "Sci-Fi"]
    with pytest.raises(ConfigError, match="'Jazz'"):
        catalogue.search("", category="Jazz")
    with pytest.raises(ConfigError):
        catalogue.search("", limit=0)


def test_catalogue_without_metadata_uses_ids() -> None:
    space = EmbeddingSpace.from_vectors(np.eye(3, dtype=np.float32), np.array([1.0, 3.0, 2.0]), n_regions=1)
    catalogue = Catalogue.from_space(space, ["a", "b", "c"])
    assert catalogue.search("").items.tolist() == [1, 2, 0]
    assert catalogue.titles == ["a", "b", "c"] and catalogue.category_names() == []
