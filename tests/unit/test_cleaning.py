"""Validation, deduplication and bot rules on hand-built rows with known answers."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from recsys.data import schema as s
from recsys.data.cleaning import (
    CleaningConfig,
    bot_users,
    deduplicate,
    parse_timestamps,
    user_activity,
    validate_events,
)

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
CONFIG = CleaningConfig(now=NOW)


def raw(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame[s.SOURCE_FILE] = "events.csv"
    frame[s.SOURCE_ROW] = np.arange(1, len(frame) + 1)
    return frame


def good(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "user_id": "u1",
        "item_id": "i1",
        "event_type": "click",
        "value": "",
        "timestamp": "2024-01-01T10:00:00Z",
        "event_id": "e1",
        "device": "mobile",
    }
    row.update(overrides)
    return row


def test_each_fault_gets_its_reason_and_valid_rows_are_typed() -> None:
    batch = raw(
        [
            good(),
            good(timestamp="not-a-date"),
            good(value="abc"),
            good(user_id=""),
            good(item_id=None),
            good(event_type="  "),
            good(timestamp=None),
            good(event_type="teleport"),
            good(event_type="rating", value=""),
            good(event_type="rating", value="7"),
            good(timestamp="1980-01-01T00:00:00Z"),
            good(timestamp="2024-06-03T00:00:00Z"),
            good(event_type=" Rating ", value="4.5", timestamp="1704103200"),
        ]
    )
    valid, quarantined = validate_events(batch, CONFIG)
    assert quarantined[s.REASON].tolist() == [
        "malformed_timestamp",
        "malformed_value",
        "missing_user_id",
        "missing_item_id",
        "missing_event_type",
        "missing_timestamp",
        "unknown_event_type",
        "missing_value",
        "value_out_of_range",
        "impossible_timestamp",
        "impossible_timestamp",
    ]
    assert quarantined[s.SOURCE_ROW].tolist() == list(range(2, 13))
    assert quarantined[s.SOURCE_FILE].unique().tolist() == ["events.csv"]
    assert len(valid) == 2
    assert valid[s.EVENT_TYPE].tolist() == ["click", "rating"]
    assert valid[s.VALUE].isna().tolist() == [True, False]
    assert valid[s.VALUE].iloc[1] == 4.5
    assert valid[s.TIMESTAMP].tolist() == [
        pd.Timestamp("2024-01-01T10:00:00Z"),
        pd.Timestamp("2024-01-01T10:00:00Z"),
    ]
    assert str(valid[s.TIMESTAMP].dtype) == "datetime64[ms, UTC]"
    assert valid["device"].tolist() == ["mobile", "mobile"]


def test_reader_reasons_are_kept_and_raw_line_travels() -> None:
    batch = raw([good(), {"_reason": "malformed_row", "_raw": "u1,i1"}])
    valid, quarantined = validate_events(batch, CONFIG)
    assert len(valid) == 1
    assert quarantined[s.REASON].tolist() == ["malformed_row"]
    assert quarantined[s.RAW].tolist() == ["u1,i1"]


def test_extra_context_columns_are_kept() -> None:
    batch = raw([good(country="NL")])
    valid, _ = validate_events(batch, CONFIG)
    assert valid["country"].tolist() == ["NL"]


def test_timestamps_accept_epoch_seconds_millis_iso_and_datetimes() -> None:
    expected = pd.Timestamp("2024-01-01T10:00:00Z")
    for column in (
        pd.Series([1704103200]),
        pd.Series([1704103200000]),
        pd.Series(["1704103200"]),
        pd.Series(["2024-01-01T11:00:00+01:00"]),
        pd.Series(pd.to_datetime(["2024-01-01 10:00:00"])),
    ):
        stamps, missing, malformed = parse_timestamps(column)
        assert stamps.iloc[0] == expected, column
        assert not missing.any() and not malformed.any()


def frame(rows: list[tuple[str, str, str, str, str | None]]) -> pd.DataFrame:
    """Typed events from (user, item, type, iso time, event id)."""
    out = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp", "event_id"])
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ms, UTC]")
    out["value"] = np.nan
    for name in ("device", "session_id", "text"):
        out[name] = pd.Series([None] * len(out), dtype="string")
    out[s.SOURCE_FILE] = "f"
    out[s.SOURCE_ROW] = np.arange(len(out))
    return out


def test_deduplicate_counts_each_kind() -> None:
    events = frame(
        [
            ("u1", "i1", "click", "2024-01-01T10:00:00Z", "a"),
            ("u1", "i1", "click", "2024-01-01T10:00:00Z", "a"),  # exact copy
            ("u1", "i1", "click", "2024-01-01T13:00:00Z", "a"),  # event id replayed later
            ("u1", "i1", "click", "2024-01-01T10:00:10Z", "b"),  # same key 10 s later
            ("u1", "i1", "click", "2024-01-01T10:05:00Z", "c"),  # same key, outside the window
            ("u1", "i1", "like", "2024-01-01T10:00:05Z", "d"),  # other type: kept
            ("u2", "i1", "click", "2024-01-01T10:00:01Z", "e"),  # other user: kept
        ]
    )
    kept, counts = deduplicate(events, CONFIG)
    assert counts == {"exact_duplicate": 1, "duplicate_event_id": 1, "near_duplicate": 1}
    assert sorted(kept["event_id"].tolist()) == ["a", "c", "d", "e"]


def test_deduplicate_is_independent_of_input_order() -> None:
    events = frame(
        [
            ("u1", "i1", "click", "2024-01-01T10:00:10Z", "b"),
            ("u1", "i1", "click", "2024-01-01T10:00:00Z", "a"),
            ("u1", "i2", "view", "2024-01-01T09:00:00Z", None),
        ]
    )
    first, _ = deduplicate(events, CONFIG)
    second, _ = deduplicate(events.iloc[::-1], CONFIG)
    pd.testing.assert_frame_equal(first, second)
    assert first["event_id"].tolist()[1:] == ["a"]


def test_bots_by_rate_and_by_volume() -> None:
    rows = []
    for user in range(20):  # 20 ordinary users, 10 events each, one per hour
        for n in range(10):
            rows.append((f"u{user}", f"i{n}", "view", f"2024-01-01T{n:02d}:00:00Z", None))
    for n in range(25):  # fast: 25 events inside one minute
        rows.append(("fast", f"i{n}", "view", f"2024-01-02T10:00:{n:02d}Z", None))
    for n in range(600):  # heavy: 600 events, one a minute, > 50 x median of 10
        rows.append(("heavy", f"i{n}", "view", f"2024-01-03T{n // 60:02d}:{(n % 60):02d}:00Z", None))
    activity = user_activity(frame(rows), CONFIG)
    assert activity.loc["fast", "peak"] == 25
    assert activity.loc["u3", "count"] == 10
    bots, limit = bot_users(activity, CONFIG)
    assert bots == {"fast", "heavy"}
    assert limit == pytest.approx(500.0)


def test_bulk_ratings_do_not_count_towards_the_rate_rule() -> None:
    rows = [("u1", f"i{n}", "rating", f"2024-01-02T10:00:{n:02d}Z", None) for n in range(40)]
    activity = user_activity(frame(rows), CONFIG)
    assert activity.loc["u1", "peak"] == 0
    assert activity.loc["u1", "count"] == 40
