"""Time features of a ``timestamp[ms, UTC]`` column: hour, weekday, recency, cyclical encodings.

All functions take a pandas Series of tz-aware datetimes (``datetime64[ms, UTC]``, other units and
time zones are converted to UTC; Arrow-backed timestamps too) and are vectorised. Missing
timestamps (``NaT``) give ``-1`` for hour/weekday and ``NaN`` for recency and the encodings.

The reference time ``now`` is always an argument: the library never reads the clock, so a batch
job and a replay compute the same features.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, SchemaError

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _epoch_ms(timestamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds since the Unix epoch (int64) and the ``NaT`` mask."""
    dtype = timestamps.dtype
    tz = getattr(getattr(dtype, "pyarrow_dtype", None), "tz", None)
    if isinstance(dtype, pd.ArrowDtype) and tz is not None:
        timestamps = timestamps.astype(pd.DatetimeTZDtype("ms", tz))
        dtype = timestamps.dtype
    if not isinstance(dtype, pd.DatetimeTZDtype):
        raise SchemaError(
            f"expected a tz-aware timestamp column (timestamp[ms, UTC]), got dtype {dtype}; "
            "localize it first, e.g. series.dt.tz_localize('UTC')",
            column=str(timestamps.name) if timestamps.name is not None else None,
        )
    values = timestamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ms]")
    return values.view(np.int64), np.isnat(values)


def _now_ms(now: pd.Timestamp | datetime | str) -> int:
    stamp = pd.Timestamp(now)
    if stamp.tzinfo is None:
        raise ConfigError(f"`now` must be timezone-aware (UTC), got naive {stamp!s}")
    return int((stamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1))


def hour_of_day(timestamps: pd.Series) -> np.ndarray:
    """UTC hour, int64 in ``0..23`` (``-1`` for ``NaT``)."""
    ms, missing = _epoch_ms(timestamps)
    return np.where(missing, -1, (ms // MS_PER_HOUR) % 24)


def day_of_week(timestamps: pd.Series) -> np.ndarray:
    """UTC weekday, int64 with Monday = 0 ... Sunday = 6 (``-1`` for ``NaT``)."""
    ms, missing = _epoch_ms(timestamps)
    return np.where(missing, -1, (ms // MS_PER_DAY + _EPOCH_WEEKDAY) % 7)


def recency_days(timestamps: pd.Series, now: pd.Timestamp | datetime | str) -> np.ndarray:
    """Age in days relative to ``now`` (float64; negative for timestamps after ``now``)."""
    ms, missing = _epoch_ms(timestamps)
    age = (_now_ms(now) - ms).astype(np.float64) / MS_PER_DAY
    return np.where(missing, np.nan, age)


def cyclical(values: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """``(sin, cos)`` of ``2 pi values / period``; negative values (missing) give ``NaN``.

    Hour 23 and hour 0 end up close, which a raw hour number cannot express.
    """
    values = np.asarray(values, dtype=np.float64)
    angle = np.where(values < 0, np.nan, 2.0 * np.pi * values / period)
    return np.sin(angle), np.cos(angle)


def temporal_features(
    timestamps: pd.Series, now: pd.Timestamp | datetime | str, *, cyclical_encoding: bool = False
) -> pd.DataFrame:
    """The time features as a frame aligned with ``timestamps``' index.

    Columns: ``hour_of_day`` and ``day_of_week`` (or, with ``cyclical_encoding``, ``hour_sin``,
    ``hour_cos``, ``dow_sin``, ``dow_cos`` instead), then ``recency_days``.

    Examples
    --------
    >>> ts = pd.Series(pd.to_datetime(["2024-01-01 13:00"], utc=True)).astype("datetime64[ms, UTC]")
    >>> temporal_features(ts, now=pd.Timestamp("2024-01-03 13:00", tz="UTC")).iloc[0].tolist()
    [13.0, 0.0, 2.0]
    """
    hours = hour_of_day(timestamps)
    weekdays = day_of_week(timestamps)
    columns: dict[str, np.ndarray] = {}
    if cyclical_encoding:
        columns["hour_sin"], columns["hour_cos"] = cyclical(hours, 24.0)
        columns["dow_sin"], columns["dow_cos"] = cyclical(weekdays, 7.0)
    else:
        columns["hour_of_day"] = hours
        columns["day_of_week"] = weekdays
    columns["recency_days"] = recency_days(timestamps, now)
    return pd.DataFrame(columns, index=timestamps.index)
