"""Runs the three preprocessing stages through an executor and writes the outputs and quality.json.

The executor decides where the stages run: :class:`SerialExecutor` runs them one after another in this
process; ``jobs.preprocess.RayDataExecutor`` runs each stage's pieces as parallel Ray Data tasks. The
results are byte-for-byte the same either way.

Output layout under ``out``::

    interactions/part-NNNNN.parquet   clean events + user_idx, item_idx, temporal features, weight
    items/part-00000.parquet          cleaned catalogue (imputed), one row per item index
    users/part-00000.parquet          user attributes, when the source has them
    quarantine/*.parquet              every rejected row, as text, with _reason, _source_file, _source_row
    ids/users.parquet, ids/items.parquet      the stable id indices
    features/                         fitted item transformers and the item feature matrix
    quality.json                      counts per step; rows_in == rows_out + quarantined + duplicates
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

import pandas as pd

from recsys.data.catalog import build_catalog
from recsys.data.cleaning import bot_users
from recsys.data.ids import IdIndex
from recsys.data.pipeline import (
    BucketStats,
    EventSource,
    FileStats,
    FinalStats,
    PreprocessConfig,
    bucket_count,
    dedup_bucket,
    finalize_bucket,
    stage_file,
)
from recsys.data.storage import Location, write_frame, write_json
from recsys.errors import DataError

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[str, int, int], None]
"""Called as ``(stage, done, total)`` while a stage runs."""


class Executor(Protocol):
    """Runs ``fn`` over ``tasks`` and returns the results in task order."""

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], *, stage: str) -> list[R]: ...


class SerialExecutor:
    """Runs every task in this process, one after another."""

    def __init__(self, on_progress: Progress | None = None) -> None:
        self._on_progress = on_progress

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], *, stage: str) -> list[R]:
        results = []
        for done, task in enumerate(tasks, start=1):
            results.append(fn(task))
            if self._on_progress is not None:
                self._on_progress(stage, done, len(tasks))
        return results


def preprocess(
    source: EventSource,
    out: Location,
    config: PreprocessConfig | None = None,
    *,
    executor: Executor | None = None,
    file_sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline; return the quality report (also written to ``quality.json``)."""
    config = config or PreprocessConfig()
    if config.cleaning.now is None:  # freeze 'now' once so every task uses the same bound
        config = config.model_copy(
            update={"cleaning": config.cleaning.model_copy(update={"now": datetime.now(timezone.utc)})}
        )
    executor = executor or SerialExecutor()
    files = list(source.event_files())
    if not files:
        raise DataError("the source has no event files")
    out.mkdir()
    for stale in ("interactions", "quarantine", "items", "users", "ids", "features", "_staging"):
        out.child(stale).remove()
    staging = out.child("_staging")
    sizes = file_sizes if file_sizes is not None else [_size_of(f) for f in files]
    n_buckets = bucket_count(sum(sizes), config)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    file_stats: list[FileStats] = executor.map(
        lambda task: stage_file(
            source, task[1], task[0], out=out, staging=staging, n_buckets=n_buckets, config=config
        ),
        list(enumerate(files)),
        stage="validate",
    )
    timings["validate"] = time.perf_counter() - started

    started = time.perf_counter()
    bucket_stats: list[BucketStats] = executor.map(
        lambda bucket: dedup_bucket(staging, bucket, config), list(range(n_buckets)), stage="deduplicate"
    )
    timings["deduplicate"] = time.perf_counter() - started

    activity = pd.concat([b.activity for b in bucket_stats]) if bucket_stats else pd.DataFrame()
    bots, volume_limit = bot_users(activity, config.cleaning)
    stamps = [b.max_timestamp for b in bucket_stats if b.max_timestamp is not None]
    reference_time = max(stamps).to_pydatetime() if stamps else datetime.now(timezone.utc)

    started = time.perf_counter()
    seen_items: set[str] = set().union(*(f.items for f in file_stats))
    catalog = build_catalog(source, out, seen_items, config)
    users = sorted(str(u) for u in activity.index if str(u) not in bots)
    user_index = IdIndex(users)
    user_attributes = source.load_users()
    if user_attributes is not None:
        write_frame(user_attributes, out.child("users", "part-00000.parquet"))
    user_index.save(out.child("ids", "users.parquet"))
    timings["catalog"] = time.perf_counter() - started

    extras = sorted(set().union(*(f.extras for f in file_stats)))
    user_map = {u: i for i, u in enumerate(users)}
    item_map = {item: i for i, item in enumerate(catalog.index.ids)}
    started = time.perf_counter()
    final_stats: list[FinalStats] = executor.map(
        lambda bucket: finalize_bucket(
            staging,
            out,
            bucket,
            bots=bots,
            reference_time=reference_time,
            user_index=user_map,
            item_index=item_map,
            known_items=catalog.catalogue_ids,
            extras=extras,
            config=config,
        ),
        list(range(n_buckets)),
        stage="features",
    )
    timings["features"] = time.perf_counter() - started
    staging.remove()

    report = _quality(file_stats, bucket_stats, final_stats, n_buckets, bots, volume_limit)
    report["users"] = len(users)
    report["items"] = len(catalog.index)
    report["catalog"] = catalog.quality
    report["reference_time"] = reference_time.isoformat()
    write_json(report, out.child("quality.json"))
    report["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return report


def _size_of(file: Any) -> int:
    size = getattr(file, "size", None)
    if size is not None:
        return int(size)
    location = Location.parse(str(getattr(file, "uri", file)))
    return int(location.fs.get_file_info(location.path).size or 0)


def _quality(
    file_stats: Sequence[FileStats],
    bucket_stats: Sequence[BucketStats],
    final_stats: Sequence[FinalStats],
    n_buckets: int,
    bots: set[str],
    volume_limit: float,
) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    for f in file_stats:
        reasons.update(f.reasons)
    bot_rows = sum(f.bot_rows for f in final_stats)
    if bot_rows:
        reasons["bot_user"] += bot_rows
    duplicates: Counter[str] = Counter()
    for b in bucket_stats:
        duplicates.update(b.duplicates)
    by_type: Counter[str] = Counter()
    for final in final_stats:
        by_type.update(final.by_event_type)
    rows_in = sum(f.rows_in for f in file_stats)
    rows_out = sum(f.rows_out for f in final_stats)
    quarantined = sum(reasons.values())
    n_duplicates = sum(duplicates.values())
    if rows_in != rows_out + quarantined + n_duplicates:
        raise AssertionError(  # an invariant of this code, not a property of the input
            f"row accounting broken: {rows_in} in != {rows_out} out + {quarantined} quarantined "
            f"+ {n_duplicates} duplicates"
        )
    valid = sum(f.valid for f in file_stats)
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "quarantined": quarantined,
        "duplicates": n_duplicates,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "duplicate_kinds": dict(sorted(duplicates.items())),
        "steps": {
            "read": rows_in,
            "validated": valid,
            "deduplicated": valid - n_duplicates,
            "bots_removed": valid - n_duplicates - bot_rows,
            "written": rows_out,
        },
        "bots": {"users": len(bots), "rows": bot_rows, "volume_threshold": volume_limit},
        "by_event_type": dict(sorted(by_type.items())),
        "events_unknown_item": sum(f.unknown_items for f in final_stats),
        "files": len(file_stats),
        "buckets": n_buckets,
    }
