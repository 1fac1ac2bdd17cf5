"""The model registry: versions, the champion pointer, refusal of mismatched artifacts, any filesystem."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.ids import IdIndex
from recsys.data.storage import Location
from recsys.ensemble import Blender, EnsembleRecommender
from recsys.errors import ArtifactError
from recsys.features.artifacts import save_features
from recsys.features.weights import WeightConfig
from recsys.models import build
from recsys.registry import Registry, build_manifest, data_fingerprint

X = sp.csr_matrix(
    np.array([[1, 1, 0, 0, 1], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [1, 0, 0, 1, 1]]),
    dtype=np.float32,
)
ITEMS = ["a", "b", "c", "d", "e"]


def make_data(root: Path) -> Location:
    """A minimal preprocessed dataset: quality.json, the id indices and feature transformers."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "quality.json").write_text(json.dumps({"rows_in": 12, "rows_out": 12}))
    IdIndex([f"u{i}" for i in range(5)]).save(root / "ids" / "users.parquet")
    IdIndex(ITEMS).save(root / "ids" / "items.parquet")
    save_features(root / "features", weight_config=WeightConfig())
    return Location.parse(str(root))


def make_model(weight: float = 1.0) -> EnsembleRecommender:
    members = {"ease": build("ease", l2=1.0).fit(X), "popularity": build("popularity").fit(X)}
    blender = Blender.from_state({"kind": "blending", "weights": {"ease": weight, "popularity": 1 - weight}})
    return EnsembleRecommender(
        members=members, item_popularity=np.asarray(X.sum(0)).ravel(), combiner=blender
    )


def manifest_for(data: Location, ndcg: float = 0.5) -> dict[str, Any]:
    return build_manifest(
        data=data,
        dataset={"users": 5, "items": 5},
        config={"search": "bayes"},
        test={"ndcg@10": ndcg, "recall@10": 0.4},
        valid={"ndcg@10": ndcg - 0.1},
        families={"ease": {"test": {"ndcg@10": 0.4, "recall@10": 0.3}, "params": {"l2": 1.0}}},
        ensemble={"method": "blending", "weights": {"ease": 1.0, "popularity": 0.0}},
    )


@pytest.fixture(params=["path", "uri"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    root = tmp_path / "models"
    return Registry(str(root) if request.param == "path" else f"file://{root}")


def publish(registry: Registry, data: Location, **kwargs: Any) -> str:
    model = kwargs.pop("model", make_model())
    return registry.publish(
        model, manifest_for(data), data=data, item_ids=ITEMS, item_idx=[0, 1, 2, 3, 4], **kwargs
    )


def test_publish_then_load_by_version_and_champion(registry: Registry, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    model = make_model()
    assert publish(registry, data, model=model) == "v0001"
    assert registry.champion() == "v0001" and registry.versions() == ["v0001"]
    for ref in ("champion", "v0001"):
        loaded = registry.load(ref)
        assert loaded.version == "v0001" and loaded.item_ids == ITEMS
        assert loaded.items.ids == ITEMS and len(loaded.users) == 5
        assert loaded.features is not None and loaded.features.weight_config == WeightConfig()
        assert loaded.manifest["test"]["ndcg@10"] == 0.5
        ids, scores = loaded.model.recommend(X, 2)
        expected_ids, expected_scores = model.recommend(X, 2)
        assert np.array_equal(ids, expected_ids) and np.allclose(scores, expected_scores)
    pointer = json.loads(Path(registry.root.path, "champion", "manifest.json").read_text())
    assert pointer["version"] == "v0001" and set(pointer) >= {"test", "families", "ensemble", "code", "data"}


def test_new_versions_become_champion_unless_told_not_to(registry: Registry, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    publish(registry, data)
    assert publish(registry, data, model=make_model(0.0)) == "v0002"
    assert registry.champion() == "v0002"
    assert publish(registry, data, promote=False) == "v0003"
    assert registry.champion() == "v0002" and registry.versions() == ["v0001", "v0002", "v0003"]
    registry.set_champion("v0001")
    assert registry.load().version == "v0001"


def test_the_champion_pointer_moves_atomically(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "models"))
    data = make_data(tmp_path / "data")
    publish(registry, data)
    publish(registry, data)
    pointer = tmp_path / "models" / "champion" / "manifest.json"
    seen: set[str] = set()
    failures: list[Exception] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(json.loads(pointer.read_text())["version"])
            except Exception as exc:  # a torn or missing file would land here
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for flip in range(300):
        registry.set_champion("v0001" if flip % 2 else "v0002")
    stop.set()
    reader.join()
    assert not failures
    assert seen <= {"v0001", "v0002"}
    assert sorted(p.name for p in pointer.parent.iterdir()) == ["manifest.json"]  # no temporary left


def edit_manifest(registry: Registry, version: str, change: Any) -> None:
    path = Path(registry.root.path, "versions", version, "manifest.json")
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(schema_version=99), "schema_version 99"),
        (lambda m: m["code"].update(package="9.9.0"), "wayfinder 9.9.0"),
        (lambda m: m["data"]["schema"].update(features=99), "features=99"),
        (lambda m: m.update(kind="something else"), "not a Wayfinder model manifest"),
    ],
)
def test_mismatched_code_or_schema_is_refused(
    registry: Registry, tmp_path: Path, change: Any, message: str
) -> None:
    publish(registry, make_data(tmp_path / "data"))
    edit_manifest(registry, "v0001", change)
    with pytest.raises(ArtifactError, match=message):
        registry.load("v0001")


def test_a_model_of_other_data_is_refused_when_the_data_is_given(registry: Registry, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    publish(registry, data)
    assert registry.load(fingerprint=data_fingerprint(data)).version == "v0001"
    (tmp_path / "data" / "quality.json").write_text(json.dumps({"rows_in": 13}))
    with pytest.raises(ArtifactError, match="fingerprint"):
        registry.load(fingerprint=data_fingerprint(data))


def test_incomplete_unknown_and_missing_versions_are_clear_errors(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no champion yet"):
        registry.load()
    data = make_data(tmp_path / "data")
    publish(registry, data)
    Path(registry.root.path, "versions", "v0001", "manifest.json").unlink()  # as if the write had died
    assert registry.versions() == []
    with pytest.raises(ArtifactError, match="not in registry"):
        registry.load("v0001")
    with pytest.raises(ArtifactError, match="is not a version name"):
        registry.load("latest")
    assert publish(registry, data) == "v0002"  # the broken directory's number is never reused


def test_a_version_is_never_overwritten(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "models"))
    data = make_data(tmp_path / "data")
    publish(registry, data)
    from recsys.registry import write_version

    with pytest.raises(ArtifactError, match="never overwritten"):
        write_version(
            registry.root.child("versions", "v0001"),
            make_model(),
            manifest_for(data),
            data=data,
            item_ids=ITEMS,
            item_idx=[0, 1, 2, 3, 4],
        )


def test_a_registry_on_another_filesystem_stages_files_through_a_temporary_directory(tmp_path: Path) -> None:
    from pyarrow.fs import _MockFileSystem  # pyarrow's in-memory filesystem, standing in for S3 or GCS

    registry = Registry(Location(_MockFileSystem(), "bucket/models"))
    data = make_data(tmp_path / "data")
    model = make_model()
    assert publish(registry, data, model=model) == "v0001" and registry.champion() == "v0001"
    loaded = registry.load()
    assert loaded.item_ids == ITEMS and loaded.features is not None
    assert np.array_equal(loaded.model.recommend(X, 3)[0], model.recommend(X, 3)[0])
    publish(registry, data)
    assert registry.load().version == "v0002" and registry.versions() == ["v0001", "v0002"]
