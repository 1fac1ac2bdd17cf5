"""The preprocessing pipeline as three streaming stages over bounded pieces of data.

Each stage is a plain function of one piece (a source file or a user bucket), so the same code runs
serially in one process (tests, the pandas baseline) or as parallel Ray Data tasks (``jobs/preprocess``):

1. :func:`stage_file`: read one source file in batches, validate every row, write quarantined rows to
   ``quarantine/`` and valid rows to ``_staging/valid/bucket=NNNNN/`` by a stable hash of the user id.
2. :func:`dedup_bucket`: read one bucket (all rows of its users), drop duplicates, measure each user's
   activity for bot detection.
3. :func:`finalize_bucket`: quarantine the bots' rows, add temporal features and the confidence weight,
   map ids to dense indices and write ``interactions/part-NNNNN.parquet``.

Memory is bounded by one read batch (stage 1) and one bucket (stages 2-3); the number of buckets
grows with the input so a bucket stays near ``bucket_bytes`` of source data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.data import schema as s
from recsys.data.cleaning import (
    CleaningConfig,
    deduplicate,
    to_quarantine,
    user_activity,
    validate_events,
)
from recsys.data.storage import Location, read_frames, write_frame
from recsys.features.events import engineer_event_features
from recsys.features.weights import WeightConfig

USER_IDX = "user_idx"
ITEM_IDX = "item_idx"


class PreprocessConfig(BaseModel):
    """Settings of the preprocessing pipeline (cleaning thresholds, weights, sizes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    weights: WeightConfig = Field(default_factory=WeightConfig)
    batch_rows: int = Field(default=262_144, ge=1)
    bucket_bytes: int = Field(default=32 * 2**20, ge=1)
    """Source bytes per user bucket; more input means more buckets, each bounded in memory."""
    min_buckets: int = Field(default=8, ge=1)
    """At least this many buckets, so stages 2 and 3 have pieces to run in parallel. It does not
    depend on the executor, so serial and parallel runs write the same files."""
    max_buckets: int = Field(default=4096, ge=1)

    @model_validator(mode="after")
    def _one_set_of_event_types(self) -> PreprocessConfig:
        if self.cleaning.event_types != self.weights.event_types:
            raise ValueError("cleaning.event_types and weights.event_types must be the same set of types")
        return self


class FileLike(Protocol):
    @property
    def uri(self) -> str: ...


class EventSource(Protocol):
    """Where raw events (and optionally items and users) come from."""

    def event_files(self) -> Sequence[Any]: ...

    def batches(self, file: Any, *, batch_rows: int) -> Iterator[pd.DataFrame]: ...

    def load_items(self) -> pd.DataFrame | None: ...

    def load_users(self) -> pd.DataFrame | None: ...


@dataclass
class FileStats:
    """What stage 1 saw in one source file."""

    rows_in: int = 0
    valid: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    items: set[str] = field(default_factory=set)
    extras: set[str] = field(default_factory=set)


@dataclass
class BucketStats:
    """What stage 2 saw in one user bucket."""

    bucket: int
    rows: int
    duplicates: dict[str, int]
    activity: pd.DataFrame
    max_timestamp: pd.Timestamp | None


@dataclass
class FinalStats:
    """What stage 3 wrote for one user bucket."""

    bucket: int
    rows_out: int
    bot_rows: int
    by_event_type: dict[str, int]
    unknown_items: int


def bucket_count(total_bytes: int, config: PreprocessConfig) -> int:
    """Number of user buckets for an input of ``total_bytes``."""
    wanted = max(config.min_buckets, math.ceil(total_bytes / config.bucket_bytes))
    return max(1, min(config.max_buckets, wanted))


def bucket_of(user_ids: pd.Series, n_buckets: int) -> np.ndarray:
    """Stable bucket of each user id (the same in every process and run)."""
    hashes = pd.util.hash_pandas_object(user_ids.astype("string"), index=False).to_numpy()
    return (hashes % np.uint64(n_buckets)).astype(np.int64)


def _bucket_dir(staging: Location, kind: str, bucket: int) -> Location:
    return staging.child(kind, f"bucket={bucket:05d}")


def stage_file(
    source: EventSource,
    file: Any,
    file_index: int,
    *,
    out: Location,
    staging: Location,
    n_buckets: int,
    config: PreprocessConfig,
) -> FileStats:
    """Stage 1 for one source file: validate, quarantine, and spread valid rows over user buckets."""
    stats = FileStats()
    for batch_no, batch in enumerate(source.batches(file, batch_rows=config.batch_rows)):
        stats.rows_in += len(batch)
        valid, quarantined = validate_events(batch, config.cleaning)
        name = f"f{file_index:05d}-b{batch_no:05d}.parquet"
        if len(quarantined):
            stats.reasons.update(quarantined[s.REASON].astype(str).tolist())
            write_frame(quarantined, out.child("quarantine", name))
        if valid.empty:
            continue
        stats.valid += len(valid)
        stats.items.update(valid[s.ITEM_ID].unique().tolist())
        stats.extras.update(c for c in valid.columns if c not in s.EVENT_COLUMNS and not c.startswith("_"))
        buckets = bucket_of(valid[s.USER_ID], n_buckets)
        for bucket in np.unique(buckets):
            write_frame(valid[buckets == bucket], _bucket_dir(staging, "valid", int(bucket)).child(name))
    return stats


def dedup_bucket(staging: Location, bucket: int, config: PreprocessConfig) -> BucketStats:
    """Stage 2 for one user bucket: deduplicate and measure user activity."""
    source = _bucket_dir(staging, "valid", bucket)
    if not source.exists():
        return BucketStats(bucket, 0, {}, user_activity(pd.DataFrame(), config.cleaning), None)
    events = read_frames(source)
    kept, duplicates = deduplicate(events, config.cleaning)
    write_frame(kept, staging.child("dedup", f"bucket-{bucket:05d}.parquet"))
    latest = kept[s.TIMESTAMP].max() if len(kept) else None
    return BucketStats(bucket, len(kept), duplicates, user_activity(kept, config.cleaning), latest)


def finalize_bucket(
    staging: Location,
    out: Location,
    bucket: int,
    *,
    bots: set[str],
    reference_time: datetime,
    user_index: dict[str, int],
    item_index: dict[str, int],
    known_items: set[str] | None,
    extras: Sequence[str],
    config: PreprocessConfig,
) -> FinalStats:
    """Stage 3 for one user bucket: quarantine bots, engineer features, write interactions."""
    path = staging.child("dedup", f"bucket-{bucket:05d}.parquet")
    if not path.exists():
        return FinalStats(bucket, 0, 0, {}, 0)
    events = read_frames(path)
    is_bot = events[s.USER_ID].isin(list(bots)).to_numpy(dtype=bool)
    if is_bot.any():
        write_frame(
            to_quarantine(events[is_bot], "bot_user"), out.child("quarantine", f"bots-{bucket:05d}.parquet")
        )
    events = events[~is_bot].reset_index(drop=True)
    for name in extras:
        if name not in events.columns:
            events[name] = pd.Series(pd.NA, index=events.index, dtype="string")
    events = events[[*s.EVENT_COLUMNS, *extras]]
    events.insert(0, ITEM_IDX, events[s.ITEM_ID].map(item_index).astype("int64"))
    events.insert(0, USER_IDX, events[s.USER_ID].map(user_index).astype("int64"))
    features = engineer_event_features(events, reference_time=reference_time, config=config.weights)
    final = pd.concat([events, features], axis=1)
    write_frame(final, out.child("interactions", f"part-{bucket:05d}.parquet"))
    unknown = 0 if known_items is None else int((~events[s.ITEM_ID].isin(list(known_items))).sum())
    counts = events[s.EVENT_TYPE].value_counts()
    return FinalStats(
        bucket,
        rows_out=len(final),
        bot_rows=int(is_bot.sum()),
        by_event_type={str(k): int(v) for k, v in counts.items()},
        unknown_items=unknown,
    )
