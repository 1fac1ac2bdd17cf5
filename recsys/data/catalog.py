"""The item side of preprocessing: clean the catalogue, index every item, fit item features.

Rules, each counted in ``quality.json`` under ``catalog``:

* a catalogue row without ``item_id`` is quarantined (``items_quarantined``);
* a repeated ``item_id`` keeps its last row (``duplicate_rows``);
* an item that appears in events but not in the catalogue gets a row with empty content
  (``events_only_items``), so it is still indexed and can be recommended by collaborative models;
* missing titles/texts become empty, missing category/tag lists become empty, a missing numeric
  attribute becomes the fitted median plus a ``<attr>_missing`` indicator (counts in ``imputed``).

The item index orders catalogue and event-only items by id, so the same input gives the same index.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data import schema as s
from recsys.data.cleaning import to_quarantine
from recsys.data.ids import IdIndex
from recsys.data.pipeline import EventSource, PreprocessConfig
from recsys.data.storage import Location, copy_directory, write_frame
from recsys.features.artifacts import save_features
from recsys.features.items import ItemFeaturizer


@dataclass
class Catalog:
    """The indexed catalogue produced by :func:`build_catalog`."""

    index: IdIndex
    catalogue_ids: set[str] | None
    """Ids present in the source's catalogue; ``None`` when the source has none."""
    quality: dict[str, Any]


def build_catalog(
    source: EventSource, out: Location, seen_items: set[str], config: PreprocessConfig
) -> Catalog:
    """Clean and index the catalogue, fit item features and write ``items/``, ``ids/``, ``features/``."""
    raw = source.load_items()
    quality: dict[str, Any] = {"rows_in": 0, "items_quarantined": 0, "duplicate_rows": 0}
    catalogue_ids: set[str] | None = None
    if raw is None:
        items = pd.DataFrame({s.ITEM_ID: pd.Series([], dtype="string")})
    else:
        quality["rows_in"] = len(raw)
        ids = raw[s.ITEM_ID].astype("string").str.strip()
        missing = (ids.isna() | (ids == "")).to_numpy(dtype=bool)
        if missing.any():
            write_frame(
                to_quarantine(raw[missing], "missing_item_id"), out.child("quarantine", "items.parquet")
            )
        items = raw[~missing].assign(**{s.ITEM_ID: ids[~missing]})
        quality["items_quarantined"] = int(missing.sum())
        repeated = items.duplicated(subset=[s.ITEM_ID], keep="last").to_numpy()
        quality["duplicate_rows"] = int(repeated.sum())
        items = items[~repeated]
        catalogue_ids = set(items[s.ITEM_ID].tolist())

    extra_ids = sorted(seen_items - set(items[s.ITEM_ID].tolist()))
    quality["events_only_items"] = len(extra_ids)
    if extra_ids:
        items = pd.concat([items, pd.DataFrame({s.ITEM_ID: extra_ids})], ignore_index=True)
    items = items.sort_values(s.ITEM_ID, kind="stable").reset_index(drop=True)
    index = IdIndex(items[s.ITEM_ID].tolist())

    featurizer = ItemFeaturizer().fit(items)
    features = featurizer.transform(items)
    quality["imputed"] = {k: int(v) for k, v in sorted(features.imputed.items())}
    quality["feature_columns"] = len(features.feature_names)

    cleaned = features.items.reset_index(drop=True)
    cleaned.insert(0, "item_idx", np.arange(len(cleaned), dtype=np.int64))
    write_frame(cleaned, out.child("items", "part-00000.parquet"))
    index.save(out.child("ids", "items.parquet"))
    _save_feature_artifacts(out.child("features"), featurizer, features.matrix, config)
    return Catalog(index=index, catalogue_ids=catalogue_ids, quality=quality)


def _save_feature_artifacts(
    target: Location, featurizer: ItemFeaturizer, matrix: sp.csr_matrix, config: PreprocessConfig
) -> None:
    """Fitted transformers (for serving's new items) and the item feature matrix, row = item index."""
    with tempfile.TemporaryDirectory(prefix="wf-features-") as tmp:
        save_features(tmp, featurizer=featurizer, weight_config=config.weights)
        sp.save_npz(Path(tmp) / "item_matrix.npz", matrix.astype(np.float32), compressed=True)
        copy_directory(Path(tmp), target)
