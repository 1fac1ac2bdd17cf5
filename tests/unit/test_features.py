"""Feature engineering: tokenizer, TF-IDF, item featurizer, sentiment, time, weights, artifacts."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import ArtifactError, DataError, SchemaError
from recsys.features import (
    FORMAT_VERSION,
    ItemFeaturizer,
    ItemTextVectorizer,
    SentimentScorer,
    Tokenizer,
    WeightConfig,
    day_of_week,
    event_weights,
    hour_of_day,
    load_features,
    recency_days,
    save_features,
    temporal_features,
)
from tests.conftest import ML_LATEST_SMALL

MOVIES = ML_LATEST_SMALL / "movies.csv"
UTC = "UTC"


def _cosine(matrix: sp.csr_matrix) -> np.ndarray:
    dense = matrix.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    unit = dense / np.where(norms == 0, 1.0, norms)
    return unit @ unit.T


@pytest.fixture
def catalogue() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["Space wars", None, "Cooking pasta at home"],
            "text": ["Rebels fight an empire among the stars", "Robots in space", None],
            "categories": [["scifi", "action"], None, ["food"]],
            "tags": [["space opera"], [], None],
            "price": [10.0, np.nan, 30.0],
            "year": [2000.0, 2010.0, 2020.0],
        }
    )


# ------------------------------------------------------------------------------------------ text
def test_tokenizer_stems_and_drops_stop_words() -> None:
    tokenize = Tokenizer()
    assert tokenize("running") == ["run"]
    assert tokenize("runs") == ["run"]
    assert tokenize("The cat and the dog are running") == ["cat", "dog", "run"]
    # "ß" case-folds to "ss" before stemming; apostrophes inside words are dropped; numbers too.
    assert tokenize("Straße CAFÉ don't 1995") == ["strass", "café", "dont"]
    assert Tokenizer(keep_numbers=True)("1995") == ["1995"]
    assert tokenize("") == []


def test_tfidf_rows_unit_norm_and_similar_texts_closer() -> None:
    items = pd.DataFrame(
        {
            "title": ["Dog training", "Training your dog", "Quantum physics", ""],
            "text": ["teach the puppy to sit", "puppies learn to sit", "particles and waves", None],
            "tags": [["pets"], ["pets"], ["science"], None],
        }
    )
    vec = ItemTextVectorizer()
    matrix = vec.fit_transform(items)
    assert sp.issparse(matrix) and matrix.dtype == np.float32
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms[:3], 1.0, rtol=1e-6)
    assert norms[3] == 0.0
    sims = _cosine(matrix)
    assert sims[0, 1] > 0.5 > sims[0, 2]
    assert "#pets" in vec.vocabulary and "dog" in vec.vocabulary and "the" not in vec.vocabulary
    # Unknown words at transform time are ignored.
    assert vec.transform(pd.DataFrame({"title": ["zzz qqq"]})).nnz == 0


def test_tag_weight_raises_tag_share() -> None:
    items = pd.DataFrame({"title": ["alpha beta"], "tags": [["gamma"]]})
    light = ItemTextVectorizer(tag_weight=1.0).fit_transform(items).toarray()[0]
    heavy = ItemTextVectorizer(tag_weight=3.0).fit_transform(items).toarray()[0]
    tag_column = ItemTextVectorizer().fit(items).vocabulary.index("#gamma")
    assert heavy[tag_column] > light[tag_column]


# ----------------------------------------------------------------------------------------- items
def test_multi_hot_exact(catalogue: pd.DataFrame) -> None:
    featurizer = ItemFeaturizer(normalize_blocks=False, numeric_columns=[]).fit(catalogue)
    result = featurizer.transform(catalogue)
    block = result.matrix[:, featurizer.block_slices["categories"]].toarray()
    assert featurizer.categories_ == ["action", "food", "scifi"]
    np.testing.assert_array_equal(block, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    names = result.feature_names
    assert names[featurizer.block_slices["categories"]] == ["cat:action", "cat:food", "cat:scifi"]
    assert len(names) == result.matrix.shape[1]
    normalized = ItemFeaturizer(numeric_columns=[]).fit_transform(catalogue)
    np.testing.assert_allclose(
        normalized.matrix[:, featurizer.block_slices["categories"]].toarray()[0],
        [2**-0.5, 0, 2**-0.5],
        rtol=1e-6,
    )


def test_imputation_exact_with_counts(catalogue: pd.DataFrame) -> None:
    featurizer = ItemFeaturizer(missing_indicators=True).fit(catalogue)
    assert featurizer.numeric_columns_ == ["price", "year"]
    result = featurizer.transform(catalogue)
    items = result.items
    assert items["title"].tolist() == ["Space wars", "", "Cooking pasta at home"]
    assert items["text"].tolist()[2] == ""
    assert items["categories"].tolist() == [["scifi", "action"], [], ["food"]]
    assert items["tags"].tolist() == [["space opera"], [], []]
    assert items["price"].tolist() == [10.0, 20.0, 30.0]  # median of 10 and 30
    assert items["price_missing"].tolist() == [0, 1, 0]
    assert items["year_missing"].tolist() == [0, 0, 0]
    expected = {"title": 1, "text": 1, "categories": 1, "tags": 1, "price": 1, "year": 0}
    assert result.imputed == expected
    assert featurizer.imputation_counts_ == expected
    numeric = result.matrix[:, featurizer.block_slices["numeric"]].toarray()
    assert result.feature_names[featurizer.block_slices["numeric"]] == [
        "num:price",
        "num:year",
        "num:price_missing",
        "num:year_missing",
    ]
    np.testing.assert_allclose(numeric[:, 2], [0.0, 0.5, 0.0])  # indicator x numeric_weight


def test_minmax_and_zscore(catalogue: pd.DataFrame) -> None:
    items = ItemFeaturizer().fit_transform(catalogue).items
    np.testing.assert_allclose(items["year_minmax"], [0.0, 0.5, 1.0])
    assert items["price_minmax"].between(0, 1).all()
    z = items["year_z"].to_numpy()
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1.0) < 1e-12


def test_transform_new_item_with_unseen_category(catalogue: pd.DataFrame) -> None:
    featurizer = ItemFeaturizer().fit(catalogue)
    new = pd.DataFrame(
        {
            "item_id": ["z"],
            "title": ["Space pasta"],
            "categories": [["food", "garden", "garden2"]],
            "price": [100.0],
        }
    )
    result = featurizer.transform(new)
    assert result.matrix.shape == (1, len(featurizer.feature_names))
    assert result.unseen_categories == {"garden": 1, "garden2": 1}
    assert result.n_unseen_categories == 2
    assert result.imputed["text"] == 1 and result.imputed["year"] == 1
    assert result.items["price_minmax"].tolist() == [1.0]  # clipped to the fitted range
    assert result.items["year"].tolist() == [2010.0]
    cat = featurizer.block_slices["categories"]
    assert result.matrix[:, cat].toarray().tolist() == [[0.0, 1.0, 0.0]]
    with pytest.raises(SchemaError, match="item_id"):
        featurizer.transform(pd.DataFrame({"title": ["x"]}))


def test_fitted_featurizer_pickles(catalogue: pd.DataFrame) -> None:
    featurizer = ItemFeaturizer().fit(catalogue)
    clone = pickle.loads(pickle.dumps(featurizer))
    assert (clone.transform(catalogue).matrix != featurizer.transform(catalogue).matrix).nnz == 0


# ------------------------------------------------------------------------------------- sentiment
def test_sentiment_signs_and_nulls() -> None:
    scorer = SentimentScorer()
    texts = ["What a wonderful, brilliant film. I love it!", "Terrible, boring and awful.", None, "  "]
    scores = scorer.score(texts)
    assert scores.shape == (4,)
    assert scores[0] > 0.5 and scores[1] < -0.5
    assert scores[2] == 0.0 and scores[3] == 0.0
    assert np.all(np.abs(scores) <= 1.0)
    np.testing.assert_array_equal(scorer.score(texts[:2] * 3), np.tile(scores[:2], 3))


# -------------------------------------------------------------------------------------- temporal
def test_temporal_exact() -> None:
    ts = pd.Series(
        pd.to_datetime(["2024-01-01 00:30:00", "2024-03-10 23:59:59", "1969-12-31 23:00:00", "NaT"], utc=True)
    ).astype("datetime64[ms, UTC]")
    now = pd.Timestamp("2024-01-11 00:30", tz=UTC)
    assert hour_of_day(ts).tolist() == [0, 23, 23, -1]
    assert day_of_week(ts).tolist() == [0, 6, 2, -1]  # Monday, Sunday, Wednesday
    ages = recency_days(ts, now)
    assert ages[0] == 10.0 and ages[1] < 0 and np.isnan(ages[3])
    other_zone = ts.dt.tz_convert("America/New_York")
    assert hour_of_day(other_zone).tolist() == [0, 23, 23, -1]
    frame = temporal_features(ts, now, cyclical_encoding=True)
    assert list(frame.columns) == ["hour_sin", "hour_cos", "dow_sin", "dow_cos", "recency_days"]
    np.testing.assert_allclose(frame.loc[0, ["hour_sin", "hour_cos"]].to_numpy(float), [0.0, 1.0])
    np.testing.assert_allclose(frame["hour_cos"].to_numpy()[1], np.cos(2 * np.pi * 23 / 24))
    with pytest.raises(SchemaError):
        hour_of_day(pd.Series(pd.to_datetime(["2024-01-01"])))


# --------------------------------------------------------------------------------------- weights
def test_event_weights_types_and_ratings() -> None:
    types = [
        "view",
        "click",
        "like",
        "dislike",
        "skip",
        "purchase",
        "rating",
        "rating",
        "rating",
        "rating",
        "rating",
        "rating",
    ]
    values = [9.0, None, None, None, None, None, 5.0, 4.0, 3.0, 1.0, 0.5, None]
    weights = event_weights(types, values)
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(
        weights,
        np.array([0.5, 1.0, 3.0, -3.0, -0.5, 5.0, 1.0, 0.5, 0.0, -1.0, -1.25, 1.0], dtype=np.float32),
    )
    config = WeightConfig(rating_neutral=2.5, rating_scale=2.5)
    assert event_weights(["rating"], [5.0], config=config).tolist() == [1.0]
    with pytest.raises(DataError, match="unknown event types"):
        event_weights(["view", "teleport"])


def test_event_weights_decay_and_sentiment() -> None:
    config = WeightConfig(half_life_days=10.0, sentiment_alpha=0.5)
    decayed = event_weights(["like"] * 4, ages_days=[10.0, 20.0, -5.0, np.nan], config=config)
    np.testing.assert_allclose(decayed, [1.5, 0.75, 3.0, 3.0])
    types = ["like", "dislike", "dislike", "like", "rating"]
    sentiments = [0.8, -0.8, 0.8, np.nan, -1.0]
    weighted = event_weights(types, [None, None, None, None, 1.0], sentiments, config=config)
    np.testing.assert_allclose(weighted, [4.2, -4.2, -1.8, 3.0, -1.5], rtol=1e-6)
    no_decay = WeightConfig(half_life_days=None)
    assert event_weights(["like"], ages_days=[1000.0], config=no_decay).tolist() == [3.0]


def test_negative_events_stay_negative_and_vectorised_speed() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    names = np.array(sorted(WeightConfig().event_types.weights), dtype=object)
    types = rng.choice(names, n)
    values = rng.uniform(0.5, 5.0, n)
    sentiments = np.where(rng.random(n) < 0.5, np.nan, rng.uniform(-1, 1, n))
    ages = rng.uniform(0, 365, n)
    config = WeightConfig(half_life_days=90.0, sentiment_alpha=0.9)
    start = time.perf_counter()
    weights = event_weights(types, values, sentiments, ages, config)
    elapsed = time.perf_counter() - start
    assert weights.shape == (n,) and weights.dtype == np.float32
    negative = (types == "dislike") | (types == "skip")
    assert (weights[negative] < 0).all()
    assert (weights[(types == "rating") & (values < 3.0)] < 0).all()
    assert elapsed < 1.5  # typically ~0.1 s; loose bound for loaded CI machines


def test_weight_config_is_frozen_and_strict() -> None:
    config = WeightConfig()
    with pytest.raises(ValueError):
        WeightConfig.model_validate({"unknown_field": 1})
    with pytest.raises(ValueError):
        WeightConfig(sentiment_min_multiplier=2.0, sentiment_max_multiplier=1.0)
    with pytest.raises(ValueError):
        setattr(config, "half_life_days", 3.0)  # noqa: B010 - mypy does not know it is frozen


# ------------------------------------------------------------------------------------- artifacts
def test_artifacts_round_trip(tmp_path: Path, catalogue: pd.DataFrame) -> None:
    featurizer = ItemFeaturizer(missing_indicators=True, tag_weight=3.0, min_df=1).fit(catalogue)
    config = WeightConfig(half_life_days=14.0, sentiment_alpha=0.3)
    save_features(tmp_path / "features", featurizer=featurizer, weight_config=config)
    assert not list((tmp_path / "features").glob("*.pkl"))
    loaded = load_features(tmp_path / "features")
    assert loaded.weight_config == config
    assert loaded.featurizer is not None
    new = pd.DataFrame(
        {
            "item_id": ["n"],
            "title": ["Home wars"],
            "tags": [["space opera"]],
            "categories": [["food", "other"]],
        }
    )
    for frame in (catalogue, new):
        before, after = featurizer.transform(frame), loaded.featurizer.transform(frame)
        assert before.feature_names == after.feature_names
        assert (before.matrix != after.matrix).nnz == 0
        np.testing.assert_array_equal(before.matrix.data, after.matrix.data)
        pd.testing.assert_frame_equal(before.items, after.items)
        assert before.imputed == after.imputed
    assert loaded.featurizer.imputation_counts_ == featurizer.imputation_counts_


def test_artifacts_wrong_version_and_missing(tmp_path: Path, catalogue: pd.DataFrame) -> None:
    save_features(tmp_path, featurizer=ItemFeaturizer().fit(catalogue))
    document = json.loads((tmp_path / "features.json").read_text())
    document["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "features.json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="format_version"):
        load_features(tmp_path)
    with pytest.raises(ArtifactError, match="missing"):
        load_features(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------- real data
def test_movielens_movies_fit_and_neighbours() -> None:
    movies = pd.read_csv(MOVIES)
    genres = movies["genres"].str.split("|")
    items = pd.DataFrame(
        {
            "item_id": movies["movieId"].astype(str),
            "title": movies["title"],
            "categories": [[g for g in row if g != "(no genres listed)"] for row in genres],
        }
    )
    distinct = {g for row in genres for g in row} - {"(no genres listed)"}
    featurizer = ItemFeaturizer().fit(items)
    result = featurizer.transform(items)
    assert result.matrix.shape[0] == len(items) == 9742
    assert len(distinct) == 19
    assert featurizer.categories_ == sorted(distinct)
    block = featurizer.block_slices["categories"]
    assert block.stop - block.start == 19
    # The raw "(no genres listed)" marker is also ignored by default, not a 20th category.
    raw = items.assign(categories=genres)
    assert ItemFeaturizer().fit(raw).categories_ == sorted(distinct)

    matrix = result.matrix
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    toy = int(np.flatnonzero(items["title"] == "Toy Story (1995)")[0])
    sims = np.asarray((matrix @ matrix[toy].T).todense()).ravel() / (norms * norms[toy] + 1e-12)
    sims[toy] = -1.0
    neighbours = np.argsort(-sims)[:10]
    toy_genres = set(items["categories"][toy])
    assert all(toy_genres & set(items["categories"][j]) for j in neighbours)
    assert items["title"][neighbours[0]].startswith("Toy Story")
    assert set(items["categories"][neighbours[0]]) == toy_genres
