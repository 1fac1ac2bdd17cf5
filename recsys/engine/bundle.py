"""The serving bundle: the models and item data one serving replica loads.

A bundle directory holds ``bundle.json`` (what is inside, where the data came from), ``space/`` (a
fitted model with item embeddings: the user space, ALS by default), optionally ``scorer.npz`` (the
item-item matrix of a model such as EASE, pruned to each item's strongest links, blended into the
personal score), ``scorers/*.npz`` (the sequence-aware next-items and session-EASE scorers of
:mod:`recsys.ranking.sequence_fit`, pruned and sparse, each with its blend weight), ``prior.npz``
(item popularity per journey stage, :class:`~recsys.embeddings.StagePopularity`) and copies of the
preprocessed ``ids/``, ``items/``, ``features/`` and the item popularity, so a bundle is
self-contained. The scorers and the stage prior are what the cold-start curve
(``benchmarks/coldstart.py``) needs to rank over HTTP as the offline pipeline does.

:func:`train_bundle` fits it from preprocessed data; :func:`load_bundle` reads it back into the
objects the :class:`~recsys.engine.core.Engine` is built from.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.ids import IdIndex
from recsys.embeddings import EmbeddingSpace, ItemMetadata, StagePopularity, load_item_features
from recsys.errors import ArtifactError
from recsys.features.artifacts import load_features
from recsys.features.items import ItemFeaturizer
from recsys.models import build, load
from recsys.ranking import ItemItemScorer
from recsys.ranking.sequence_fit import SequenceConfig, fit_sequence_scorers

BUNDLE_FORMAT = 1
DEFAULT_SPACE: dict[str, Any] = {"family": "als", "factors": 64, "regularization": 0.05, "iterations": 15}
DEFAULT_SCORER: dict[str, Any] | None = {"family": "ease", "l2": 250.0}
SCORER_TOP_K = 200
"""Each item keeps its 200 strongest item-item links: a dense EASE matrix is n_items^2 floats."""


@dataclass
class BundleParts:
    """What a serving replica needs, loaded."""

    space: EmbeddingSpace
    scorers: list[ItemItemScorer]
    item_ids: IdIndex
    featurizer: ItemFeaturizer | None
    manifest: dict[str, Any]


def _interactions(data: Path, extra: pd.DataFrame | None = None) -> tuple[sp.csr_matrix, int, int]:
    frame = pd.read_parquet(data / "interactions", columns=["user_idx", "item_idx", "weight"])
    n_users = len(IdIndex.load(data / "ids" / "users.parquet"))
    n_items = len(IdIndex.load(data / "ids" / "items.parquet"))
    if extra is not None and len(extra):  # fresh events (recsys.engine.lifecycle): new users get new rows
        frame = pd.concat([frame, extra[["user_idx", "item_idx", "weight"]]], ignore_index=True)
        n_users = max(n_users, int(extra["user_idx"].max()) + 1)
    matrix = sp.csr_matrix(
        (frame["weight"].to_numpy(np.float32), (frame["user_idx"].to_numpy(), frame["item_idx"].to_numpy())),
        shape=(n_users, n_items),
    )
    matrix.sum_duplicates()
    return matrix, n_users, n_items


def train_bundle(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    space: dict[str, Any] | None = None,
    scorer: dict[str, Any] | None = DEFAULT_SCORER,
    sequence: SequenceConfig | None = SequenceConfig(),  # noqa: B008 - frozen, immutable default
    extra: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Fit the space model and the item-item scorers on all preprocessed interactions; save a bundle.

    ``sequence=None`` leaves out the next-items and session-EASE scorers (and the stage prior is
    still fitted when the interactions carry timestamps). ``extra`` adds interactions (``user_idx``,
    ``item_idx``, ``weight``; rows past the data's users are new users), e.g. the fresh events of the
    serving log when retraining.
    """
    data, out = Path(data_dir), Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    matrix, n_users, n_items = _interactions(data, extra)
    popularity = np.asarray((matrix > 0).sum(axis=0), dtype=np.float32).ravel()
    np.save(out / "popularity.npy", popularity)
    space_params = dict(space or DEFAULT_SPACE)
    build(**space_params).fit(matrix).save(out / "space")
    scorer_params = dict(scorer) if scorer else None
    if scorer_params:
        sp.save_npz(out / "scorer.npz", _item_item_matrix(build(**scorer_params).fit(matrix)))
    positives = _positive_events(data)
    if positives is not None:
        users, items, stamps = positives
        _save_prior(StagePopularity.fit(users, items, stamps, n_items=n_items), out / "prior.npz")
        if sequence is not None:
            (out / "scorers").mkdir()
            fitted = fit_sequence_scorers(users, items, stamps, n_items=n_items, config=sequence)
            for position, item_scorer in enumerate(fitted):
                item_scorer.save(out / "scorers" / f"{position:02d}-{item_scorer.name}.npz")
    for part in ("ids", "items", "features"):
        shutil.copytree(data / part, out / part)
    manifest = {
        "format": BUNDLE_FORMAT,
        "space": space_params,
        "scorer": scorer_params,
        "sequence": sequence.model_dump() if sequence is not None and positives is not None else None,
        "prior": "stage" if positives is not None else "popularity",
        "users": n_users,
        "items": n_items,
        "interactions": int(matrix.nnz),
        "extra_interactions": 0 if extra is None else len(extra),
        "data": str(data),
    }
    (out / "bundle.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def load_bundle(bundle_dir: str | Path) -> BundleParts:
    """Read a bundle written by :func:`train_bundle` into the engine's parts."""
    root = Path(bundle_dir)
    manifest_path = root / "bundle.json"
    if not manifest_path.exists():
        raise ArtifactError(
            f"{root} is not a serving bundle: bundle.json is missing (run wayfinder pipeline)"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ArtifactError(
            f"bundle {root} has format {manifest.get('format')}, this code reads {BUNDLE_FORMAT}"
        )
    item_ids = IdIndex.load(root / "ids" / "items.parquet")
    items = pd.read_parquet(root / "items")
    metadata = ItemMetadata.from_frame(items, item_ids.ids)
    features = load_item_features(root / "features" / "item_matrix.npz")
    model = load(root / "space")
    prior = _load_prior(root / "prior.npz") if (root / "prior.npz").exists() else None
    space = EmbeddingSpace.from_model(
        model, prior or np.load(root / "popularity.npy"), metadata, item_features=features
    )
    scorers = []
    if (root / "scorer.npz").exists():
        family = str((manifest.get("scorer") or {}).get("family", "item-item"))
        scorers.append(ItemItemScorer(family, sp.load_npz(root / "scorer.npz").tocsr()))
    scorers += [ItemItemScorer.load(path) for path in sorted((root / "scorers").glob("*.npz"))]
    featurizer = load_features(root / "features").featurizer
    return BundleParts(space, scorers, item_ids, featurizer, manifest)


def _item_item_matrix(model: Any) -> sp.csr_matrix:
    """The model's item-item matrix, each row pruned to its :data:`SCORER_TOP_K` strongest links."""
    weights = model.weights_ if hasattr(model, "weights_") else model.similarity_
    dense = weights.toarray() if sp.issparse(weights) else np.asarray(weights, dtype=np.float32)
    scorer = ItemItemScorer("pruned", dense).pruned(SCORER_TOP_K)
    return sp.csr_matrix(scorer.matrix)


def _positive_events(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(user, item, timestamp ms)`` of positive interactions, first per (user, item), time order.

    ``None`` when the interactions carry no timestamps (no sequence to learn from).
    """
    try:
        frame = pd.read_parquet(
            data / "interactions", columns=["user_idx", "item_idx", "weight", "timestamp"]
        )
    except (KeyError, ValueError):
        return None
    frame = frame[frame["weight"] > 0]
    stamps = frame["timestamp"]
    if isinstance(stamps.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(stamps):
        millis = stamps.dt.tz_localize(None) if isinstance(stamps.dtype, pd.DatetimeTZDtype) else stamps
        frame = frame.assign(timestamp=millis.astype("datetime64[ms]").astype(np.int64))
    frame = frame.sort_values(["user_idx", "timestamp"], kind="stable")
    frame = frame.drop_duplicates(["user_idx", "item_idx"], keep="first")
    return (
        frame["user_idx"].to_numpy(np.int64),
        frame["item_idx"].to_numpy(np.int64),
        frame["timestamp"].to_numpy(np.int64),
    )


def _save_prior(prior: StagePopularity, path: Path) -> None:
    table = prior.table if prior.table is not None else np.zeros((0, prior.n_items), np.float32)
    np.savez(path, overall=prior.overall, stages=np.asarray(prior.stages, np.int64), table=table,
             window=np.asarray(prior.window))  # fmt: skip


def _load_prior(path: Path) -> StagePopularity:
    try:
        with np.load(path, allow_pickle=False) as npz:
            table = npz["table"]
            return StagePopularity(
                overall=npz["overall"],
                stages=tuple(int(s) for s in npz["stages"]),
                table=table if table.size else None,
                window=int(npz["window"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"stage prior {path} is missing or corrupt: {exc}") from exc
