"""Saving and loading fitted feature transformers: JSON plus ``.npz``, never pickle.

A feature artifact is a directory with two files:

``features.json``
    ``format_version``, the :class:`~recsys.features.items.ItemFeaturizer` hyperparameters and fitted
    state (text vectorizer parameters and vocabulary in column order, category list, numeric
    statistics, imputation counts) and the :class:`~recsys.features.weights.WeightConfig`. Either part
    may be ``null``.
``features.npz``
    The IDF vector of the text vocabulary (float64, so the reloaded transform is bit-identical).

``features.json`` is written last, so a directory without it is an incomplete artifact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import ArtifactError
from recsys.features.items import ItemFeaturizer, NumericStats
from recsys.features.text import ItemTextVectorizer
from recsys.features.weights import WeightConfig

FORMAT_VERSION = 1
"""Bumped whenever the layout or meaning of the saved state changes."""

JSON_FILE = "features.json"
ARRAYS_FILE = "features.npz"
_KIND = "wayfinder.features"


@dataclass(frozen=True)
class FeatureArtifacts:
    """The fitted transformers read back by :func:`load_features`.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> items = pd.DataFrame({"item_id": ["a", "b"], "title": ["Red shoes", "Blue hat"]})
    >>> featurizer = ItemFeaturizer().fit(items)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = save_features(tmp, featurizer=featurizer, weight_config=WeightConfig())
    ...     loaded = load_features(tmp)
    >>> loaded.featurizer.feature_names == featurizer.feature_names
    True
    """

    featurizer: ItemFeaturizer | None = None
    weight_config: WeightConfig | None = None


def save_features(
    path: str | Path,
    *,
    featurizer: ItemFeaturizer | None = None,
    weight_config: WeightConfig | None = None,
) -> Path:
    """Write a fitted featurizer and/or a weight config to the directory ``path``; return it."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": _KIND,
        "featurizer": None,
        "weight_config": weight_config.model_dump(mode="json") if weight_config is not None else None,
    }
    if featurizer is not None:
        if not hasattr(featurizer, "numeric_stats_"):
            raise ArtifactError("cannot save an ItemFeaturizer that is not fitted; call fit(items) first")
        text = featurizer.text_vectorizer_
        arrays["idf"] = text.idf_
        document["featurizer"] = {
            "params": featurizer.get_params(),
            "categories": featurizer.categories_,
            "numeric_stats": {name: asdict(stats) for name, stats in featurizer.numeric_stats_.items()},
            "n_items": featurizer.n_items_,
            "imputation_counts": featurizer.imputation_counts_,
            "text": {"params": text.get_params(), "vocabulary": text.vocabulary},
        }
    np.savez(directory / ARRAYS_FILE, **arrays)  # type: ignore[arg-type]
    (directory / JSON_FILE).write_text(json.dumps(document, indent=1, allow_nan=False), encoding="utf-8")
    return directory


def load_features(path: str | Path) -> FeatureArtifacts:
    """Read an artifact written by :func:`save_features`.

    Raises
    ------
    ArtifactError
        The directory or a file is missing, unreadable, of another ``format_version``, or inconsistent.
    """
    directory = Path(path)
    json_path, arrays_path = directory / JSON_FILE, directory / ARRAYS_FILE
    for required in (json_path, arrays_path):
        if not required.is_file():
            raise ArtifactError(
                f"feature artifact {directory} is incomplete: {required.name} is missing; "
                "re-run preprocessing to write it"
            )
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {json_path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("kind") != _KIND:
        raise ArtifactError(f"{json_path} is not a Wayfinder feature artifact")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{json_path} has format_version {version!r} but this code reads version {FORMAT_VERSION}; "
            "re-run preprocessing with this version to rebuild the feature artifact"
        )
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        weight_config = (
            WeightConfig.model_validate(document["weight_config"])
            if document.get("weight_config") is not None
            else None
        )
        featurizer = (
            _featurizer_from(document["featurizer"], arrays)
            if document.get("featurizer") is not None
            else None
        )
    except ArtifactError:
        raise
    except Exception as exc:  # a corrupt artifact can fail in many ways; report them as one kind
        raise ArtifactError(f"feature artifact {directory} is corrupt or inconsistent: {exc}") from exc
    return FeatureArtifacts(featurizer=featurizer, weight_config=weight_config)


def _featurizer_from(state: dict[str, Any], arrays: dict[str, np.ndarray]) -> ItemFeaturizer:
    text_state = state["text"]
    text = ItemTextVectorizer(**text_state["params"])
    text._set_fitted(list(text_state["vocabulary"]), arrays["idf"])
    featurizer = ItemFeaturizer(**state["params"])
    featurizer._set_fitted(
        text_vectorizer=text,
        categories=list(state["categories"]),
        numeric_stats={name: NumericStats(**stats) for name, stats in state["numeric_stats"].items()},
        n_items=int(state["n_items"]),
        imputation_counts={str(k): int(v) for k, v in state["imputation_counts"].items()},
    )
    return featurizer
