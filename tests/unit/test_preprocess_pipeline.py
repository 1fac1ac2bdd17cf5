"""The whole pipeline (serial executor) on synthetic data with known dirt: every count exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsys.data.cleaning import CleaningConfig
from recsys.data.pipeline import PreprocessConfig
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.data.synthetic import SyntheticConfig, SyntheticManifest, generate

QUARANTINE_KINDS = (
    "malformed_row",
    "malformed_timestamp",
    "malformed_value",
    "missing_user_id",
    "missing_item_id",
    "missing_event_type",
    "missing_timestamp",
    "unknown_event_type",
    "value_out_of_range",
    "impossible_timestamp",
)


def run(data: Path, out: Path, synthetic: SyntheticConfig, **overrides: Any) -> dict[str, Any]:
    source = parse_source(f"events:{data}/events", items=f"{data}/items", users=f"{data}/users")
    config = PreprocessConfig(cleaning=CleaningConfig(now=synthetic.end), **overrides)
    return preprocess(source, Location.parse(str(out)), config, executor=SerialExecutor())


@pytest.fixture(scope="module", params=["parquet", "csv", "jsonl"])
def dirty(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    config = SyntheticConfig(seed=3, n_events=20_000, format=request.param, chunk_rows=6_000)
    data = tmp_path_factory.mktemp(f"synthetic-{request.param}")
    manifest = generate(config, str(data))
    return data, (config, manifest)


def test_every_kind_of_dirt_is_counted_exactly(dirty: tuple[Path, Any], tmp_path: Path) -> None:
    data, (config, manifest) = dirty
    assert isinstance(manifest, SyntheticManifest)
    injected = manifest.injected
    report = run(data, tmp_path, config, bucket_bytes=200_000)
    assert report["buckets"] > 1  # the per-bucket steps really ran on several pieces
    reasons = report["quarantine_reasons"]
    for kind in QUARANTINE_KINDS:
        assert reasons.get(kind, 0) == getattr(injected, kind), kind
    assert reasons["bot_user"] == injected.bot_events
    assert report["bots"]["users"] == injected.bot_users
    assert report["duplicate_kinds"] == {
        "exact_duplicate": injected.exact_duplicate,
        "duplicate_event_id": injected.event_id_replay,
        "near_duplicate": injected.near_duplicate,
    }
    assert report["rows_in"] == manifest.events.rows
    assert report["rows_out"] == manifest.clean_events
    assert report["rows_in"] == report["rows_out"] + report["quarantined"] + report["duplicates"]
    assert report["users"] == manifest.clean_users
    catalog = report["catalog"]
    assert catalog["duplicate_rows"] == manifest.injected_items.duplicate
    assert catalog["imputed"]["title"] == manifest.injected_items.missing_title
    assert catalog["imputed"]["price"] == manifest.injected_items.missing_price
    quarantine = pd.read_parquet(tmp_path / "quarantine")
    assert len(quarantine) == report["quarantined"]
    assert quarantine["_source_file"].notna().all()
    assert quarantine["_reason"].notna().all()


def test_same_input_gives_the_same_bytes(dirty: tuple[Path, Any], tmp_path: Path) -> None:
    data, (config, _) = dirty
    first, second = tmp_path / "a", tmp_path / "b"
    run(data, first, config, bucket_bytes=200_000)
    run(data, second, config, bucket_bytes=200_000)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert any(str(f).startswith("interactions/") for f in files)
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_bucket_count_does_not_change_the_result(dirty: tuple[Path, Any], tmp_path: Path) -> None:
    data, (config, _) = dirty
    one = run(data, tmp_path / "one", config, min_buckets=1)
    many = run(data, tmp_path / "many", config, bucket_bytes=100_000)
    assert one["buckets"] == 1 and many["buckets"] > 3
    for key in ("rows_out", "quarantine_reasons", "duplicate_kinds", "users", "items"):
        assert one[key] == many[key], key
    frame = pd.read_parquet(tmp_path / "one" / "interactions")
    other = pd.read_parquet(tmp_path / "many" / "interactions")
    key = ["user_id", "timestamp", "event_id"]
    pd.testing.assert_frame_equal(
        frame.sort_values(key).reset_index(drop=True), other.sort_values(key).reset_index(drop=True)
    )


def test_quality_json_matches_the_returned_report(dirty: tuple[Path, Any], tmp_path: Path) -> None:
    data, (config, _) = dirty
    report = run(data, tmp_path, config)
    written = json.loads((tmp_path / "quality.json").read_text())
    assert written["rows_out"] == report["rows_out"]
    assert "seconds" not in written  # timings vary run to run; quality.json must not
