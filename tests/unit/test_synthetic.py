"""The synthetic generator: determinism, exact dirt counts (checked by an independent reference
cleaner written here), latent structure, the three formats and chunked streaming."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from recsys.data.schema import DEFAULT_EVENT_WEIGHTS, EVENT_COLUMNS
from recsys.data.synthetic import DirtConfig, SyntheticConfig, SyntheticManifest, generate
from recsys.data.synthetic._world import build_world
from recsys.errors import ConfigError

N_EVENTS = 20_000
DIRT = DirtConfig(
    malformed_row=0.002,
    malformed_timestamp=0.002,
    malformed_value=0.002,
    missing_user_id=0.002,
    missing_item_id=0.002,
    missing_event_type=0.002,
    missing_timestamp=0.002,
    unknown_event_type=0.002,
    value_out_of_range=0.002,
    impossible_timestamp=0.002,
    exact_duplicate=0.004,
    event_id_replay=0.003,
    near_duplicate=0.004,
    bot_users=2,
    bot_events_min=400,
    bot_events_max=900,
    item_missing_title=0.02,
    item_missing_text=0.03,
    item_missing_price=0.04,
    item_missing_year=0.05,
    item_duplicate=0.03,
)
ISO_MS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def _config(fmt: str = "parquet", **overrides: object) -> SyntheticConfig:
    base: dict[str, object] = {
        "n_events": N_EVENTS,
        "seed": 11,
        "chunk_rows": 6_000,
        "format": fmt,
        "dirt": DIRT,
    }
    base.update(overrides)
    return SyntheticConfig.model_validate(base)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, SyntheticManifest]]:
    out = {}
    for fmt in ("parquet", "csv", "jsonl"):
        path = tmp_path_factory.mktemp(fmt)
        out[fmt] = (path, generate(_config(fmt), str(path)))
    return out


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- reading back, independently


def _read(root: Path, table: str, fmt: str) -> tuple[pd.DataFrame, int]:
    """All rows of a table as a frame (text columns as strings for CSV/JSONL), and broken lines."""
    frames, broken = [], 0
    for path in sorted((root / table).iterdir()):
        if fmt == "parquet":
            frames.append(pq.read_table(path).to_pandas())
        elif fmt == "csv":
            bad: list[object] = []

            def skip(row: object, bad: list[object] = bad) -> str:
                bad.append(row)
                return "skip"

            header = path.open().readline().strip().split(",")
            frame = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True
                ),
            ).to_pandas()
            frames.append(frame)
            broken += len(bad)
        else:
            rows = []
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    broken += 1
            frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True), broken


def _parse_text(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Typed copy of a CSV/JSONL events frame, with masks of malformed timestamps and values."""
    typed = frame.copy()
    ts_text = frame["timestamp"].astype("string")
    ts = pd.to_datetime(ts_text, utc=True, errors="coerce", format="ISO8601")
    bad_ts = (ts.isna() & ts_text.notna()).to_numpy()
    value_text = frame["value"].map(lambda v: None if v is None or v != v else str(v))
    value = pd.to_numeric(value_text, errors="coerce")
    bad_value = (value.isna() & value_text.notna()).to_numpy()
    typed["timestamp"], typed["value"] = ts, value.astype("float64")
    return typed, bad_ts, bad_value


def _reference_clean(
    events: pd.DataFrame, config: SyntheticConfig, pre: dict[str, np.ndarray]
) -> tuple[dict[str, int], pd.DataFrame, set[str]]:
    """Apply the documented cleaning rules in order; count each reason; return the clean rows."""
    counts: dict[str, int] = {}
    remaining = np.ones(len(events), dtype=bool)

    def drop(reason: str, mask: np.ndarray) -> None:
        hit = remaining & mask
        counts[reason] = int(hit.sum())
        remaining[hit] = False

    for reason, mask in pre.items():
        drop(reason, mask)
    for column in ("user_id", "item_id", "event_type", "timestamp"):
        drop(f"missing_{column}", events[column].isna().to_numpy())
    drop("unknown_event_type", ~events["event_type"].isin(list(DEFAULT_EVENT_WEIGHTS)).to_numpy())
    rating = (events["event_type"] == "rating").to_numpy()
    value = events["value"].to_numpy(dtype=float, na_value=np.nan)
    drop("value_out_of_range", rating & ((value < 0.5) | (value > 5.0)))
    ts = events["timestamp"]
    late = config.end + timedelta(days=1)
    drop("impossible_timestamp", ((ts < pd.Timestamp("1995-01-01", tz="UTC")) | (ts > late)).to_numpy())

    rows = events[remaining].sort_values(["user_id", "timestamp"], kind="stable")
    exact = rows.duplicated(subset=list(EVENT_COLUMNS), keep="first")
    counts["exact_duplicate"] = int(exact.sum())
    rows = rows[~exact]
    replay = rows["event_id"].duplicated(keep="first")
    counts["event_id_replay"] = int(replay.sum())
    rows = rows[~replay].sort_values(["user_id", "item_id", "event_type", "timestamp"], kind="stable")
    gap = rows.groupby(["user_id", "item_id", "event_type"])["timestamp"].diff()
    near = (gap < pd.Timedelta(seconds=config.dedup_window_s)).to_numpy()
    counts["near_duplicate"] = int(near.sum())
    rows = rows[~near]

    per_minute = rows.groupby([rows["user_id"], rows["timestamp"].dt.floor("min")]).size()
    peak = per_minute.groupby(level=0).max()
    total = rows.groupby("user_id").size()
    bots = set(peak.index[peak > 20]) | set(total.index[total > 50 * total.median()])
    is_bot = rows["user_id"].isin(bots)
    counts["bot_users"], counts["bot_events"] = len(bots), int(is_bot.sum())
    return counts, rows[~is_bot], bots


def _check_counts(root: Path, manifest: SyntheticManifest, fmt: str) -> pd.DataFrame:
    events, broken = _read(root, "events", fmt)
    no_rows = np.zeros(len(events), dtype=bool)
    pre = {"malformed_timestamp": no_rows, "malformed_value": no_rows}
    if fmt != "parquet":
        events, bad_ts, bad_value = _parse_text(events)
        pre = {"malformed_timestamp": bad_ts, "malformed_value": bad_value}
    counts, clean, bots = _reference_clean(events, manifest.config, pre)
    counts["malformed_row"] = broken
    expected = manifest.injected.model_dump()
    assert counts == expected
    assert len(events) + broken == manifest.events.rows == manifest.clean_events + manifest.injected.rows()
    assert len(clean) == manifest.clean_events
    assert bots == set(manifest.bot_user_ids)
    return clean


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_same_seed_gives_same_bytes_and_other_seed_differs(tmp_path: Path, fmt: str) -> None:
    config = _config(fmt, n_events=10_000, chunk_rows=3_000)
    for name in ("a", "b"):
        generate(config, str(tmp_path / name))
    generate(config.model_copy(update={"seed": 12}), str(tmp_path / "c"))
    first, second, other = (_digest(tmp_path / name) for name in ("a", "b", "c"))
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if name.startswith(("events", "users")))


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_manifest_counts_match_an_independent_cleaner(datasets, fmt: str) -> None:
    root, manifest = datasets[fmt]
    assert manifest.injected.near_duplicate == 80 and manifest.injected.bot_users == 2
    if fmt == "parquet":
        assert manifest.injected.malformed_row == manifest.injected.malformed_timestamp == 0
    else:
        assert manifest.injected.malformed_row == 40
    clean = _check_counts(root, manifest, fmt)

    assert clean["event_id"].is_unique
    key = clean.sort_values(["user_id", "item_id", "event_type", "timestamp"])
    gap = key.groupby(["user_id", "item_id", "event_type"])["timestamp"].diff().dropna()
    assert gap.min() >= pd.Timedelta(seconds=2 * manifest.config.dedup_window_s)
    per_minute = clean.groupby([clean["user_id"], clean["timestamp"].dt.floor("min")]).size()
    assert per_minute.max() <= 20
    per_user = clean.groupby("user_id").size()
    assert per_user.max() <= 50 * per_user.median()
    assert len(per_user) == manifest.clean_users
    assert clean["timestamp"].min() >= pd.Timestamp(manifest.config.start)
    assert clean["timestamp"].max() < pd.Timestamp(manifest.config.end)


def test_manifest_json_mirrors_the_returned_manifest(datasets) -> None:
    root, manifest = datasets["parquet"]
    on_disk = SyntheticManifest.model_validate_json((root / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest.config.n_users == 400 and manifest.config.n_items == 200


def test_items_dirt_is_exact(datasets) -> None:
    for fmt, (root, manifest) in datasets.items():
        items, broken = _read(root, "items", fmt)
        assert broken == 0 and len(items) == manifest.items.rows
        dirt = manifest.injected_items
        assert dirt.duplicate == 6 and dirt.missing_year == 10
        duplicated = items[items["item_id"].duplicated(keep=False)]
        assert duplicated["item_id"].nunique() == dirt.duplicate == len(items) - manifest.config.n_items
        assert len(duplicated.astype("string").drop_duplicates()) == dirt.duplicate  # identical copies
        unique = items.drop_duplicates("item_id")
        for column, expected in (
            ("title", dirt.missing_title),
            ("text", dirt.missing_text),
            ("price", dirt.missing_price),
            ("year", dirt.missing_year),
        ):
            assert int(unique[column].isna().sum()) == expected, (fmt, column)


def test_three_formats_share_content(datasets) -> None:
    parquet = _read(datasets["parquet"][0], "users", "parquet")[0]
    for fmt in ("csv", "jsonl"):
        users = _read(datasets[fmt][0], "users", fmt)[0]
        assert list(users.columns) == list(parquet.columns)
        assert users["signup_at"].str.match(ISO_MS).all()
        stamps = pd.to_datetime(users["signup_at"], format="ISO8601", utc=True)
        assert (stamps.to_numpy() == parquet["signup_at"].to_numpy()).all()
        items = _read(datasets[fmt][0], "items", fmt)[0]
        assert items["categories"].dropna().str.len().gt(0).all()
    schema = pq.read_schema(next((datasets["parquet"][0] / "events").iterdir()))
    assert schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert pq.read_schema(next((datasets["parquet"][0] / "items").iterdir())).field("tags").type == pa.list_(
        pa.string()
    )


def test_clean_config_injects_nothing(tmp_path: Path) -> None:
    manifest = generate(_config(dirt=DirtConfig.none()), str(tmp_path))
    assert manifest.injected.rows() == 0 and manifest.bot_user_ids == []
    assert all(value == 0 for value in manifest.injected_items.model_dump().values())
    events = pq.read_table(tmp_path / "events").to_pandas()
    assert len(events) == N_EVENTS
    assert events[["user_id", "item_id", "event_type", "timestamp", "event_id"]].notna().all().all()
    assert events["event_type"].isin(list(DEFAULT_EVENT_WEIGHTS)).all()
    items = pq.read_table(tmp_path / "items").to_pandas()
    assert items["item_id"].is_unique and items.notna().all().all()
    _check_counts(tmp_path, manifest, "parquet")


def test_streams_in_chunks_and_reports_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    config = _config("csv", chunk_rows=1_000, n_items=1_500, n_users=1_200)
    manifest = generate(config, str(tmp_path), on_progress=lambda done, total: calls.append((done, total)))
    for table in (manifest.events, manifest.items, manifest.users):
        assert len(table.files) == math.ceil(table.rows / config.chunk_rows)
        sizes = [sum(1 for _ in (tmp_path / name).open()) - 1 for name in table.files]
        assert max(sizes) <= config.chunk_rows
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        Path(f).name for f in manifest.events.files
    ]
    assert [total for _, total in calls] == [manifest.events.rows] * len(manifest.events.files)
    assert calls[-1][0] == manifest.events.rows and calls[0][0] == 1_000
    assert manifest.users.rows == 1_200 + manifest.injected.bot_users


def test_dirt_is_scattered_not_appended(datasets) -> None:
    root, manifest = datasets["parquet"]
    files = [pq.read_table(root / name).to_pandas() for name in manifest.events.files]
    missing_users = [int(frame["user_id"].isna().sum()) for frame in files]
    assert sum(missing_users) == manifest.injected.missing_user_id
    assert sum(count > 0 for count in missing_users) >= len(files) - 1
    first = files[0]
    positions = np.flatnonzero(first["user_id"].isna().to_numpy())
    assert positions.min() < len(first) // 2


def test_structure_clusters_and_popularity(datasets) -> None:
    root, manifest = datasets["parquet"]
    world = build_world(manifest.config)
    clean = _check_counts(root, manifest, "parquet")
    user_index = {uid: i for i, uid in enumerate(world.user_ids.to_pylist())}
    users = clean["user_id"].map(user_index).to_numpy()
    items = clean["item_id"].str[1:].astype(int).to_numpy()
    item_cluster = world.item_cluster[items]
    in_taste = (item_cluster == world.user_primary[users]) | (item_cluster == world.user_secondary[users])
    assert in_taste.mean() > 0.7 > 5 * 2 / manifest.config.n_clusters
    negative = clean["event_type"].isin(["dislike", "skip"]).to_numpy()
    assert in_taste[negative].mean() < 0.5 * in_taste[~negative].mean()
    assert 0.03 < negative.mean() < 0.08

    counts = np.sort(np.bincount(items, minlength=world.n_items))[::-1]
    assert counts[: world.n_items // 10].sum() > 0.4 * counts.sum()

    rated = clean[clean["event_type"] == "rating"]
    assert set(rated["value"].unique()) <= {x / 2 for x in range(1, 11)}
    funnel = clean["event_type"].value_counts()
    assert funnel["view"] > funnel["click"] > funnel["add_to_cart"] > funnel["purchase"]
    assert set(clean["device"]) == {"mobile", "desktop", "tablet", "tv"}
    sessions = clean.groupby("session_id")["user_id"].nunique()
    assert (sessions == 1).all() and clean.groupby("session_id").size().mean() > 2


def test_texts_follow_topics_and_reviews_follow_ratings(datasets) -> None:
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import adjusted_rand_score
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    root, manifest = datasets["parquet"]
    world = build_world(manifest.config)
    items = pq.read_table(root / "items").to_pandas().drop_duplicates("item_id")
    items = items[items["text"].notna()]
    vectors = TfidfVectorizer().fit_transform(items["text"])
    labels = KMeans(n_clusters=manifest.config.n_clusters, n_init=4, random_state=0).fit_predict(vectors)
    truth = world.item_cluster[items["item_id"].str[1:].astype(int).to_numpy()]
    assert adjusted_rand_score(truth, labels) > 0.8

    events = pq.read_table(root / "events").to_pandas()
    reviews = events[(events["event_type"] == "rating") & events["text"].notna()]
    assert len(reviews) > 50
    analyzer = SentimentIntensityAnalyzer()
    score = reviews["text"].map(lambda text: analyzer.polarity_scores(text)["compound"])
    assert score[reviews["value"] >= 4.0].mean() > 0.4
    assert score[reviews["value"] <= 2.0].mean() < -0.4


def test_uri_output_and_overwrite_guard(tmp_path: Path) -> None:
    config = _config(n_events=10_000, dirt=DirtConfig.none())
    generate(config, f"file://{tmp_path}")
    assert (tmp_path / "manifest.json").is_file()
    with pytest.raises(ConfigError, match="overwrite=True"):
        generate(config, str(tmp_path))
    generate(config, str(tmp_path), overwrite=True)


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        SyntheticConfig(n_events=20_000, n_users=30_000)
    with pytest.raises(ValidationError):
        SyntheticConfig(n_events=20_000, unknown_field=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        DirtConfig(exact_duplicate=0.1, near_duplicate=0.1, event_id_replay=0.1, missing_user_id=0.1)
    resolved = SyntheticConfig(n_events=100_000_000).resolved()
    assert (resolved.n_users, resolved.n_items, resolved.dirt.bot_users) == (2_000_000, 1_000_000, 1_000)
