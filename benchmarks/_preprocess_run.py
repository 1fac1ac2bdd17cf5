"""One preprocessing run for benchmarks/preprocess.py, in its own process so its memory can be measured.

``--engine ray`` runs the real job (three streaming stages as Ray Data tasks on a local 2-CPU cluster);
``--engine pandas`` runs the same library steps on the whole input at once in this one process, the way
a single-machine pandas script would. Prints one JSON line: seconds (pipeline only), startup seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime

import pandas as pd

from recsys.data import schema as s
from recsys.data.catalog import build_catalog
from recsys.data.cleaning import (
    CleaningConfig,
    bot_users,
    deduplicate,
    to_quarantine,
    user_activity,
    validate_events,
)
from recsys.data.ids import IdIndex
from recsys.data.pipeline import EventSource, PreprocessConfig
from recsys.data.sources import parse_source
from recsys.data.storage import Location, write_frame
from recsys.features.events import engineer_event_features


def pandas_preprocess(source: EventSource, out: Location, config: PreprocessConfig) -> int:
    """Every step on the whole input in memory; returns rows written."""
    batches = [
        batch for file in source.event_files() for batch in source.batches(file, batch_rows=config.batch_rows)
    ]
    raw = pd.concat(batches, ignore_index=True)
    valid, quarantined = validate_events(raw, config.cleaning)
    del raw, batches
    kept, _ = deduplicate(valid, config.cleaning)
    del valid
    bots, _ = bot_users(user_activity(kept, config.cleaning), config.cleaning)
    is_bot = kept[s.USER_ID].isin(list(bots)).to_numpy(dtype=bool)
    quarantine = pd.concat([quarantined, to_quarantine(kept[is_bot], "bot_user")], ignore_index=True)
    write_frame(quarantine, out.child("quarantine", "part-00000.parquet"))
    kept = kept[~is_bot].reset_index(drop=True)
    catalog = build_catalog(source, out, set(kept[s.ITEM_ID].unique().tolist()), config)
    users = IdIndex(sorted(kept[s.USER_ID].unique().tolist()))
    kept.insert(0, "item_idx", catalog.index.lookup(kept[s.ITEM_ID].tolist()))
    kept.insert(0, "user_idx", users.lookup(kept[s.USER_ID].tolist()))
    reference: datetime = kept[s.TIMESTAMP].max().to_pydatetime()
    features = engineer_event_features(kept, reference_time=reference, config=config.weights)
    final = pd.concat([kept.drop(columns=[s.SOURCE_FILE, s.SOURCE_ROW]), features], axis=1)
    write_frame(final, out.child("interactions", "part-00000.parquet"))
    return len(final)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=["ray", "pandas"], required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--now", required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    source = parse_source(
        f"events:{args.data}/events", items=f"{args.data}/items", users=f"{args.data}/users"
    )
    config = PreprocessConfig(cleaning=CleaningConfig(now=datetime.fromisoformat(args.now)))
    out = Location.parse(args.out)
    out.remove()
    if args.engine == "ray":
        from jobs._executor import RayDataExecutor
        from jobs._ray import init_ray
        from recsys.data.runner import preprocess

        init_ray(num_cpus=2)
        # A long-lived cluster has its worker pool warm: spawn it before timing, count it as start-up.
        RayDataExecutor(progress=False).map(lambda x: x, [0, 1], stage="warm-up")
        startup = time.perf_counter() - started
        began = time.perf_counter()
        report = preprocess(source, out, config, executor=RayDataExecutor(progress=False))
        rows = int(report["rows_out"])
    else:
        startup = time.perf_counter() - started
        began = time.perf_counter()
        rows = pandas_preprocess(source, out, config)
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "startup": startup, "rows_out": rows}), flush=True)


if __name__ == "__main__":
    main()
