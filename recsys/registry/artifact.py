"""A model version directory on any pyarrow filesystem: write it, read it back, refuse mismatches.

Layout of ``<registry>/versions/<version>/``::

    model/           the ensemble (recsys.ensemble.model: members/<family>/, ensemble.json, arrays.npz)
    items.parquet    model column -> item: ``item_id`` (the dataset's id) and ``item_idx`` (ids/ index)
    ids/             the preprocessing's id indices (users.parquet, items.parquet), copied
    features/        the fitted feature transformers and item matrix, copied (when the data has them)
    manifest.json    written last (recsys.registry.manifest)

Models and feature transformers read local paths, so a version on a remote filesystem is staged in
a temporary directory on write and on read.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from recsys.data.ids import IdIndex
from recsys.data.storage import Location, read_frames, write_frame, write_json
from recsys.ensemble.model import EnsembleRecommender
from recsys.errors import ArtifactError
from recsys.features.artifacts import FeatureArtifacts, load_features
from recsys.registry.manifest import MANIFEST_FILE, check_compatible, read_manifest

__all__ = ["ModelVersion", "copy_tree", "read_version", "write_version"]


@dataclass(frozen=True)
class ModelVersion:
    """A loaded model version.

    Attributes
    ----------
    version : str
        Its name in the registry.
    manifest : dict
        The parsed ``manifest.json``.
    model : EnsembleRecommender
        The champion ensemble; column ``j`` of its history rows is ``item_ids[j]``.
    item_ids : list of str
        The dataset's item id of every model column.
    users, items : IdIndex
        The preprocessing's id indices.
    features : FeatureArtifacts or None
        The fitted feature transformers, when the data had them.
    """

    version: str
    manifest: dict[str, Any]
    model: EnsembleRecommender
    item_ids: list[str]
    users: IdIndex
    items: IdIndex
    features: FeatureArtifacts | None


def copy_tree(source: Location, target: Location) -> int:
    """Copy every file below ``source`` to the same relative path below ``target``; return the count."""
    infos = source.fs.get_file_info(pafs.FileSelector(source.path, recursive=True))
    copied = 0
    for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        relative = info.path[len(source.path.rstrip("/")) + 1 :]
        destination = target.child(*relative.split("/"))
        destination.fs.create_dir(destination.path.rsplit("/", 1)[0], recursive=True)
        with (
            source.fs.open_input_stream(info.path) as reader,
            target.fs.open_output_stream(destination.path) as writer,
        ):
            while chunk := reader.read(1 << 22):
                writer.write(chunk)
        copied += 1
    return copied


def _local(location: Location) -> Path | None:
    return Path(location.path) if isinstance(location.fs, pafs.LocalFileSystem) else None


def write_version(
    target: Location,
    model: EnsembleRecommender,
    manifest: dict[str, Any],
    *,
    data: Location,
    item_ids: Sequence[str],
    item_idx: Sequence[int],
) -> None:
    """Write a complete version directory; ``manifest.json`` goes last."""
    if target.exists():
        raise ArtifactError(f"{target.uri} already exists; a version is never overwritten")
    if len(item_ids) != model.n_items_ or len(item_idx) != model.n_items_:
        raise ArtifactError(f"the model has {model.n_items_} item columns but {len(item_ids)} item ids")
    target.mkdir()
    with tempfile.TemporaryDirectory(prefix="wf-version-") as tmp:
        model.save(Path(tmp) / "model")
        copy_tree(Location(pafs.LocalFileSystem(), str(Path(tmp) / "model")), target.child("model"))
    columns = pd.DataFrame({"item_id": [str(i) for i in item_ids], "item_idx": list(item_idx)})
    write_frame(columns, target.child("items.parquet"))
    for part in ("ids", "features"):
        if data.child(part).is_dir():
            copy_tree(data.child(part), target.child(part))
    if not target.child("ids").is_dir():
        raise ArtifactError(f"{data.uri} has no ids/ directory: is it a preprocessed dataset?")
    write_json(manifest, target.child(MANIFEST_FILE))


def read_version(source: Location, *, fingerprint: str | None = None) -> ModelVersion:
    """Read a version directory, refusing one this code or the expected data cannot use."""
    manifest = read_manifest(source)
    check_compatible(manifest, source.child(MANIFEST_FILE).uri, fingerprint=fingerprint)
    with tempfile.TemporaryDirectory(prefix="wf-version-") as tmp:
        staged = _local(source) or Path(tmp)
        if _local(source) is None:
            for part in ("model", "features"):
                if source.child(part).is_dir():
                    copy_tree(source.child(part), Location(pafs.LocalFileSystem(), str(staged / part)))
        model = EnsembleRecommender.load(staged / "model")
        features = (
            load_features(staged / "features") if (staged / "features" / "features.json").exists() else None
        )
    columns = read_frames(source.child("items.parquet"))
    if len(columns) != model.n_items_:
        raise ArtifactError(
            f"{source.uri}/items.parquet has {len(columns)} rows, the model {model.n_items_} columns"
        )
    return ModelVersion(
        version=str(manifest.get("version", source.path.rsplit("/", 1)[-1])),
        manifest=manifest,
        model=model,
        item_ids=columns["item_id"].astype(str).tolist(),
        users=IdIndex.load(source.child("ids", "users.parquet")),
        items=IdIndex.load(source.child("ids", "items.parquet")),
        features=features,
    )
