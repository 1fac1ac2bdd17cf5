"""Row-level validation, deduplication and bot detection for interaction events.

Every row that enters leaves in exactly one of three ways: kept, quarantined with a reason, or counted
as a duplicate of a kept row. The steps, in order:

1. **Validation** (:func:`validate_events`, per batch, streaming). A row gets the *first* failing reason
   of :data:`QUARANTINE_REASONS` in that order: ``malformed_row`` (and ``bad_encoding``, set by the
   reader), ``malformed_timestamp``, ``malformed_value``, ``missing_user_id``, ``missing_item_id``,
   ``missing_event_type``, ``missing_timestamp``, ``unknown_event_type``, ``missing_value`` (a rating
   without a value), ``value_out_of_range`` (a rating outside ``rating_range`` or a negative value of
   another type), ``impossible_timestamp`` (before ``min_timestamp`` or more than
   ``future_tolerance_days`` after ``now``).
2. **Deduplication** (:func:`deduplicate`, per user bucket: all of a user's rows are in one bucket).
   ``exact_duplicate``: every event column equal to an earlier row's. ``duplicate_event_id``: an
   ``event_id`` seen before (the earliest by timestamp is kept). ``near_duplicate``: the same
   (user, item, event type) as the previous row of that key less than ``dedup_window_s`` seconds before.
3. **Bots** (:func:`user_activity` then :func:`bot_users`): a user is a bot if they fire more than
   ``bot_max_events_per_minute`` events within one calendar minute, or more than
   ``bot_volume_factor`` times the median per-user event count. All their rows are quarantined as
   ``bot_user``. Types in ``bot_rate_exempt_types`` (default: ``rating``) do not count towards the
   per-minute rate: people enter explicit ratings in bulk on rating pages (MovieLens users rate dozens
   of films a minute), which is not bot behaviour.

Missing optional fields are imputed, not quarantined: ``value`` stays null for non-rating events,
``event_id``/``device``/``session_id``/``text`` stay null (text is treated as empty downstream).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.data import schema as s

QUARANTINE_REASONS: tuple[str, ...] = (
    "malformed_row",
    "bad_encoding",
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
    "bot_user",
)
DUPLICATE_KINDS: tuple[str, ...] = ("exact_duplicate", "duplicate_event_id", "near_duplicate")

_EPOCH_MS_THRESHOLD = 1e11  # numbers below this are epoch seconds, above are epoch milliseconds


class CleaningConfig(BaseModel):
    """Thresholds of the cleaning steps; every one is documented in the module docstring.

    Examples
    --------
    >>> CleaningConfig(dedup_window_s=60).bot_max_events_per_minute
    20
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_types: s.EventTypes = Field(default_factory=s.EventTypes)
    rating_range: tuple[float, float] = (0.5, 5.0)
    min_timestamp: datetime = datetime(1995, 1, 1, tzinfo=timezone.utc)
    now: datetime | None = None
    """Reference 'now' for impossible future timestamps; ``None`` means the wall clock at run start."""
    future_tolerance_days: float = 1.0
    dedup_window_s: float = Field(default=30.0, ge=0.0)
    bot_max_events_per_minute: int = Field(default=20, ge=1)
    bot_volume_factor: float = Field(default=50.0, gt=1.0)
    bot_rate_exempt_types: frozenset[str] = frozenset({"rating"})

    @field_validator("min_timestamp", "now")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value

    def max_timestamp(self) -> datetime:
        now = self.now if self.now is not None else datetime.now(timezone.utc)
        return now + timedelta(days=self.future_tolerance_days)


def _clean_strings(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Strings stripped, with a mask of values that are missing (null or blank)."""
    text = column.astype("string").str.strip()
    missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
    return text.mask(missing), missing


def _parse_numbers(column: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Float values, a missing mask and a malformed mask (text that is not a number)."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.astype("float64")
        missing = values.isna().to_numpy(dtype=bool)
        return values, missing, np.zeros(len(column), dtype=bool)
    text, missing = _clean_strings(column)
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    malformed = values.isna().to_numpy(dtype=bool) & ~missing
    return values, missing, malformed


def parse_timestamps(column: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Timestamps as ``datetime64[ms, UTC]``, a missing mask and a malformed mask.

    Accepts datetimes (naive ones are taken as UTC), epoch numbers (seconds below 1e11, else
    milliseconds), numeric strings likewise, and ISO-8601 strings.
    """
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column.dtype):
        stamps = pd.to_datetime(column, utc=True).astype("datetime64[ms, UTC]")
        missing = stamps.isna().to_numpy(dtype=bool)
        return stamps, missing, np.zeros(len(column), dtype=bool)
    if pd.api.types.is_numeric_dtype(column.dtype):
        numbers = column.astype("float64")
        missing = numbers.isna().to_numpy(dtype=bool)
        stamps = _from_epoch(numbers)
        return stamps, missing, np.zeros(len(column), dtype=bool)
    text, missing = _clean_strings(column)
    numbers = pd.to_numeric(text, errors="coerce")
    numeric = numbers.notna().to_numpy(dtype=bool)
    stamps = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ms, UTC]")
    if numeric.any():
        stamps[numeric] = _from_epoch(numbers[numeric].astype("float64"))
    textual = ~numeric & ~missing
    if textual.any():
        parsed = pd.to_datetime(text[textual], utc=True, errors="coerce", format="ISO8601")
        stamps[textual] = parsed.astype("datetime64[ms, UTC]")
    malformed = stamps.isna().to_numpy(dtype=bool) & ~missing
    return stamps, missing, malformed


def _from_epoch(numbers: pd.Series) -> pd.Series:
    millis = np.where(numbers.abs() < _EPOCH_MS_THRESHOLD, numbers * 1000.0, numbers)
    millis_series = pd.Series(millis, index=numbers.index)
    in_range = millis_series.abs() < 1e16  # beyond year ~318,000: treat as malformed (NaT)
    out = pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[ms, UTC]")
    ok = in_range & millis_series.notna()
    out[ok] = pd.to_datetime(millis_series[ok].round().astype("int64"), unit="ms", utc=True)
    return out


def validate_events(batch: pd.DataFrame, config: CleaningConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a raw batch into typed valid rows and quarantined rows.

    ``batch`` has schema column names (strings from CSV/JSON, native types from Parquet), the
    bookkeeping columns ``_source_file``/``_source_row`` and optionally ``_reason`` (set by the reader
    for malformed lines) and ``_raw``. Returns ``(valid, quarantined)``: ``valid`` has the typed event
    columns of :data:`recsys.data.schema.EVENT_SCHEMA`, any extra context columns and the bookkeeping
    columns; ``quarantined`` has every column as text plus ``_reason``.
    """
    n = len(batch)
    reasons = np.full(n, None, dtype=object)
    prior = batch[s.REASON] if s.REASON in batch.columns else pd.Series([None] * n, index=batch.index)
    prior_mask = prior.notna().to_numpy(dtype=bool)
    reasons[prior_mask] = prior.to_numpy(dtype=object)[prior_mask]

    def column(name: str) -> pd.Series:
        if name in batch.columns:
            return batch[name]
        return pd.Series([None] * n, index=batch.index, dtype="string")

    stamps, ts_missing, ts_malformed = parse_timestamps(column(s.TIMESTAMP))
    values, _, value_malformed = _parse_numbers(column(s.VALUE))
    users, user_missing = _clean_strings(column(s.USER_ID))
    items, item_missing = _clean_strings(column(s.ITEM_ID))
    types, type_missing = _clean_strings(column(s.EVENT_TYPE))
    types = types.str.lower()

    known = types.isin(list(config.event_types.names)).to_numpy(dtype=bool)
    is_rating = (types == config.event_types.rating_type).fillna(False).to_numpy(dtype=bool)
    value_na = values.isna().to_numpy(dtype=bool)
    low, high = config.rating_range
    value_np = values.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        out_of_range = np.where(is_rating, (value_np < low) | (value_np > high), value_np < 0) & ~value_na
    ts_np = stamps.to_numpy(dtype="datetime64[ms]")
    lo_ts = np.datetime64(config.min_timestamp.replace(tzinfo=None), "ms")
    hi_ts = np.datetime64(config.max_timestamp().astimezone(timezone.utc).replace(tzinfo=None), "ms")
    with np.errstate(invalid="ignore"):
        impossible = ((ts_np < lo_ts) | (ts_np > hi_ts)) & ~np.isnat(ts_np)

    checks: list[tuple[str, np.ndarray]] = [
        ("malformed_timestamp", ts_malformed),
        ("malformed_value", value_malformed),
        ("missing_user_id", user_missing),
        ("missing_item_id", item_missing),
        ("missing_event_type", type_missing),
        ("missing_timestamp", ts_missing),
        ("unknown_event_type", ~known & ~type_missing),
        ("missing_value", is_rating & value_na),
        ("value_out_of_range", out_of_range),
        ("impossible_timestamp", impossible),
    ]
    for reason, mask in checks:
        unset = pd.isna(reasons)
        reasons[mask & unset] = reason

    bad = ~pd.isna(reasons)
    quarantined = to_quarantine(batch[bad], reasons[bad])

    good = ~bad
    valid = pd.DataFrame(
        {
            s.USER_ID: users[good].astype("string"),
            s.ITEM_ID: items[good].astype("string"),
            s.EVENT_TYPE: types[good].astype("string"),
            s.VALUE: values[good],
            s.TIMESTAMP: stamps[good],
        }
    )
    for name in (s.EVENT_ID, s.DEVICE, s.SESSION_ID, s.TEXT):
        text, _ = _clean_strings(column(name)[good])
        valid[name] = text
    extras = [c for c in batch.columns if c not in s.EVENT_COLUMNS and not c.startswith("_")]
    for name in extras:
        valid[name] = batch.loc[good, name].astype("string")
    valid[s.SOURCE_FILE] = column(s.SOURCE_FILE)[good].astype("string")
    valid[s.SOURCE_ROW] = column(s.SOURCE_ROW)[good].astype("int64")
    return valid.reset_index(drop=True), quarantined


def to_quarantine(rows: pd.DataFrame, reasons: np.ndarray | str) -> pd.DataFrame:
    """Rows as text with their reason, ready for the quarantine Parquet."""
    out = pd.DataFrame(index=rows.index)
    for name in s.EVENT_COLUMNS:
        out[name] = _as_text(rows[name]) if name in rows.columns else pd.Series(None, index=rows.index)
        out[name] = out[name].astype("string")
    out[s.REASON] = pd.Series(reasons, index=rows.index, dtype="string")
    out[s.SOURCE_FILE] = rows[s.SOURCE_FILE].astype("string") if s.SOURCE_FILE in rows.columns else pd.NA
    out[s.SOURCE_FILE] = out[s.SOURCE_FILE].astype("string")
    out[s.SOURCE_ROW] = rows[s.SOURCE_ROW].astype("Int64") if s.SOURCE_ROW in rows.columns else pd.NA
    out[s.SOURCE_ROW] = out[s.SOURCE_ROW].astype("Int64")
    raw = rows[s.RAW] if s.RAW in rows.columns else pd.Series(None, index=rows.index)
    out[s.RAW] = raw.astype("string")
    return out.reset_index(drop=True)


def _as_text(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column.dtype):
        stamps = pd.to_datetime(column, utc=True)
        return stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").astype("string")
    return column.astype("string")


def deduplicate(events: pd.DataFrame, config: CleaningConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop duplicates from typed valid events; return the kept rows and the count of each kind.

    All of a user's rows must be in ``events`` (deduplication is per user). Row order of the result
    is by (user, timestamp, source file, source row), so the output does not depend on how input
    batches were cut; of two duplicates the first in that order is kept. The work is done on integer
    codes with one final take: sorting and filtering string columns repeatedly dominated the run time.
    Exact duplicates are rows equal on every event column; only rows that share (user, item, type,
    timestamp) with another row are compared, by a 64-bit hash of all their event columns.
    """
    counts = dict.fromkeys(DUPLICATE_KINDS, 0)
    if events.empty:
        return events, counts
    user = _codes(events[s.USER_ID], ordered=True)
    item = _codes(events[s.ITEM_ID])
    kind = _codes(events[s.EVENT_TYPE])
    stamp = events[s.TIMESTAMP].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    source = _codes(events[s.SOURCE_FILE], ordered=True)
    row = events[s.SOURCE_ROW].to_numpy(dtype=np.int64)
    keep = np.ones(len(events), dtype=bool)

    by_key = np.lexsort((row, source, stamp, kind, item, user))
    same_moment = _same_as_previous(by_key, user, item, kind, stamp)
    in_group = same_moment | np.append(same_moment[1:], False)
    if in_group.any():
        candidates = by_key[in_group]
        content = [c for c in events.columns if not c.startswith("_")]
        digest = pd.util.hash_pandas_object(events.iloc[candidates][content], index=False).to_numpy()
        group = np.cumsum(~same_moment)[in_group]
        exact = pd.DataFrame({"g": group, "d": digest}).duplicated(keep="first").to_numpy()
        keep[candidates[exact]] = False
        counts["exact_duplicate"] = int(exact.sum())

    ids = _codes(events[s.EVENT_ID])
    repeated = keep & (ids >= 0) & pd.Series(ids).duplicated(keep=False).to_numpy()
    if repeated.any():
        candidates = np.flatnonzero(repeated)
        candidates = candidates[np.lexsort((row[candidates], source[candidates], stamp[candidates]))]
        replay = pd.Series(ids[candidates]).duplicated(keep="first").to_numpy()
        keep[candidates[replay]] = False
        counts["duplicate_event_id"] = int(replay.sum())

    by_key = by_key[keep[by_key]]
    same_key = _same_as_previous(by_key, user, item, kind)
    gap = np.diff(stamp[by_key], prepend=stamp[by_key[0]])
    near = same_key & (gap < config.dedup_window_s * 1000.0)
    keep[by_key[near]] = False
    counts["near_duplicate"] = int(near.sum())

    kept = np.flatnonzero(keep)
    order = kept[np.lexsort((row[kept], source[kept], stamp[kept], user[kept]))]
    return events.take(order).reset_index(drop=True), counts


def _codes(column: pd.Series, *, ordered: bool = False) -> np.ndarray:
    """Integer codes of the values (nulls get -1); in sorted order of the values when ``ordered``."""
    codes, _ = pd.factorize(column, sort=ordered, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64)


def _same_as_previous(positions: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """For rows taken in ``positions`` order: is each equal on all ``keys`` to the row before it?"""
    same = np.ones(len(positions), dtype=bool)
    same[0] = False
    for key in keys:
        values = key[positions]
        same[1:] &= values[1:] == values[:-1]
    return same


def user_activity(events: pd.DataFrame, config: CleaningConfig) -> pd.DataFrame:
    """Per-user event count and the most rate-counted events in one calendar minute.

    Columns ``count`` and ``peak``, indexed by user id (sorted).
    """
    if events.empty:
        return pd.DataFrame({"count": pd.Series(dtype="int64"), "peak": pd.Series(dtype="int64")})
    count = events.groupby(s.USER_ID, sort=True).size()
    rated = events[~events[s.EVENT_TYPE].isin(list(config.bot_rate_exempt_types)).to_numpy(dtype=bool)]
    minute = rated[s.TIMESTAMP].dt.floor("min")
    per_minute = rated.groupby([rated[s.USER_ID], minute], sort=False).size()
    peak = per_minute.groupby(level=0, sort=True).max().reindex(count.index, fill_value=0)
    return pd.DataFrame({"count": count.astype("int64"), "peak": peak.astype("int64")})


def bot_users(activity: pd.DataFrame, config: CleaningConfig) -> tuple[set[str], float]:
    """Users flagged as bots from their activity (all users), and the volume threshold used."""
    if activity.empty:
        return set(), float("inf")
    volume_limit = config.bot_volume_factor * float(np.median(activity["count"].to_numpy()))
    flagged = (activity["peak"] > config.bot_max_events_per_minute) | (activity["count"] > volume_limit)
    return {str(user) for user in activity.index[flagged.to_numpy()]}, volume_limit
