"""Shared model machinery: top-k, masking, artifacts and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ArtifactError, ConfigError
from recsys.models import EASERecommender, ItemKNNRecommender, PopularityRecommender, build, load
from recsys.models._common import as_csr, excluded_items, row_chunks, top_k

X = sp.csr_matrix([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1]], dtype=np.float32)


def test_top_k_orders_and_breaks_ties_by_lower_id() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    ids, values = top_k(scores.copy(), 3)
    assert ids.tolist() == [[1, 0, 2], [0, 1, 2]]
    assert values.tolist() == [[pytest.approx(0.9), 0.5, 0.5], [1.0, 1.0, 1.0]]


def test_top_k_tie_breaking_is_independent_of_partition_order() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(50, 200)).astype(np.float32)
    ids, values = top_k(scores.copy(), 17)
    order = np.lexsort((np.broadcast_to(np.arange(200), scores.shape), -scores), axis=1)[:, :17]
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, order, axis=1))


def test_top_k_pads_masked_and_missing_slots() -> None:
    scores = np.array([[-np.inf, 2.0, np.nan]], dtype=np.float32)
    ids, values = top_k(scores, 5)
    assert ids.tolist() == [[1, -1, -1, -1, -1]]
    assert values[0, 0] == 2.0 and np.isneginf(values[0, 1:]).all()


def test_top_k_of_empty_blocks() -> None:
    ids, values = top_k(np.zeros((0, 4), dtype=np.float32), 2)
    assert ids.shape == values.shape == (0, 2)
    ids, _ = top_k(np.zeros((2, 0), dtype=np.float32), 2)
    assert (ids == -1).all()


def test_excluded_items_and_bad_ids() -> None:
    assert excluded_items(5) is None
    assert excluded_items(5, allow=[1, 3], deny=[3]).tolist() == [0, 2, 3, 4]
    with pytest.raises(ConfigError, match="allow"):
        excluded_items(5, allow=[7])
    with pytest.raises(ConfigError, match="integer"):
        excluded_items(5, deny=np.array([0.5]))


def test_row_chunks_bound_the_block() -> None:
    chunks = list(row_chunks(10, width=100, cells=300))
    assert [(c.start, c.stop) for c in chunks] == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_as_csr_sums_duplicates_and_accepts_dense() -> None:
    coo = sp.coo_matrix(([1.0, 2.0], ([0, 0], [1, 1])), shape=(1, 3))
    assert as_csr(coo).toarray().tolist() == [[0.0, 3.0, 0.0]]
    assert as_csr(np.eye(2)).dtype == np.float32


def test_chunked_recommend_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    model = EASERecommender(l2=1.0).fit(X)
    expected = model.recommend(X, k=2)
    monkeypatch.setattr("recsys.models._common.BLOCK_CELLS", 4)
    chunked = model.recommend(X, k=2)
    np.testing.assert_array_equal(expected[0], chunked[0])
    np.testing.assert_array_equal(model.score(X), EASERecommender(l2=1.0).fit(X).score(X))


def test_registry_rejects_unknown_family_and_bad_params() -> None:
    with pytest.raises(ConfigError, match=r"unknown model family 'nope'.*'ease'"):
        build("nope")
    with pytest.raises(ConfigError, match="bad parameters"):
        build("ease", lambda_=3)
    with pytest.raises(TypeError):
        EASERecommender(250.0)  # type: ignore[misc]


def test_artifact_is_json_plus_npz(tmp_path: Path) -> None:
    EASERecommender(l2=2.0).fit(X).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta == {"family": "ease", "format_version": 1, "params": {"l2": 2.0}}
    with np.load(tmp_path / "m" / "arrays.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"weights_", "n_items_"}


def test_wrong_family_version_or_missing_artifact_raise(tmp_path: Path) -> None:
    EASERecommender(l2=2.0).fit(X).save(tmp_path / "m")
    with pytest.raises(ArtifactError, match="holds a 'ease' model, not 'itemknn'"):
        ItemKNNRecommender.load(tmp_path / "m")
    meta_file = tmp_path / "m" / "model.json"
    meta = json.loads(meta_file.read_text())
    meta["format_version"] = 99
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="format_version 99"):
        load(tmp_path / "m")
    meta["format_version"], meta["family"] = 1, "mystery"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="unknown model family 'mystery'"):
        load(tmp_path / "m")
    with pytest.raises(ArtifactError, match="missing"):
        load(tmp_path / "nothing")
    meta_file.write_text("{not json")
    with pytest.raises(ArtifactError, match="not JSON"):
        load(tmp_path / "m")


def test_corrupt_arrays_and_unsaveable_params_raise(tmp_path: Path) -> None:
    PopularityRecommender().fit(X).save(tmp_path / "m")
    (tmp_path / "m" / "arrays.npz").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="corrupt"):
        load(tmp_path / "m")
    model = PopularityRecommender().fit(X)
    model.mode = np.random.default_rng(0)  # type: ignore[assignment]
    with pytest.raises(ArtifactError, match="JSON"):
        model.save(tmp_path / "bad")
