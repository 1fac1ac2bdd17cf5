"""Where raw data comes from: the ``--source`` spec of the command line as a typed object.

Accepted forms::

    movielens:DIR        a MovieLens directory (100K, 1M/10M, latest/20M/25M layout, detected)
    events:URI           CSV/TSV, Parquet or JSON-lines event files (a file or a directory; local,
                         file://, s3://, gs://, hdfs://), with optional items=URI and users=URI tables
                         and an optional column map (source column -> schema column) for all three

Every source answers the same four calls (:class:`Source`): ``event_files()``, ``batches(file)``
(DataFrames in schema column names plus the bookkeeping columns of :mod:`recsys.data.readers`),
``load_items()`` and ``load_users()`` (DataFrames in the schema, or ``None``).

Items of an ``events:`` source are typed lightly: ``item_id`` is a stripped string, text cells of
``categories``/``tags`` are split on ``|``, ``created_at`` becomes ``timestamp[ms, UTC]`` and any other
text column whose every non-blank value is a number becomes float64 (a numeric attribute). Users keep
their attributes as read (a zip code must stay text); only ``user_id`` is stripped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pandas as pd

from recsys.data import schema as s
from recsys.data.cleaning import parse_timestamps
from recsys.data.movielens import MovieLensSource
from recsys.data.readers import FileRef, iter_batches, list_files, read_table
from recsys.errors import ConfigError

_FORMS = (
    "movielens:DIR (e.g. movielens:data/ml-latest-small) or events:URI (e.g. events:data/events.csv, "
    "events:s3://bucket/events/ with --items/--users URIs)"
)
_LIST_SEPARATOR = "|"


@runtime_checkable
class Source(Protocol):
    """What the preprocessing job reads: event files in batches, plus the catalogue and users."""

    def describe(self) -> str: ...

    def event_files(self) -> list[FileRef]: ...

    def batches(self, file: FileRef, *, batch_rows: int = 262_144) -> Iterator[pd.DataFrame]: ...

    def load_items(self) -> pd.DataFrame | None: ...

    def load_users(self) -> pd.DataFrame | None: ...


@dataclass(frozen=True)
class EventsSource:
    """Event files in the Wayfinder schema (after ``column_map``), with optional item/user tables.

    Examples
    --------
    >>> source = EventsSource("data/events/", items="data/items.csv", column_map={"uid": "user_id"})
    >>> source.describe()
    'events at data/events/ (items data/items.csv)'
    """

    events: str
    items: str | None = None
    users: str | None = None
    column_map: Mapping[str, str] = field(default_factory=dict)
    fmt: str | None = None
    encoding: str = "utf-8"

    def describe(self) -> str:
        tables = (("items", self.items), ("users", self.users))
        extra = ", ".join(f"{name} {uri}" for name, uri in tables if uri)
        return f"events at {self.events}" + (f" ({extra})" if extra else "")

    def event_files(self) -> list[FileRef]:
        return list_files(self.events, self.fmt)

    def batches(self, file: FileRef, *, batch_rows: int = 262_144) -> Iterator[pd.DataFrame]:
        return iter_batches(file, column_map=self.column_map, batch_rows=batch_rows, encoding=self.encoding)

    def load_items(self) -> pd.DataFrame | None:
        if self.items is None:
            return None
        table = read_table(
            self.items, column_map=self.column_map, required=(s.ITEM_ID,), encoding=self.encoding
        )
        return _typed_items(table)

    def load_users(self) -> pd.DataFrame | None:
        if self.users is None:
            return None
        table = read_table(
            self.users, column_map=self.column_map, required=(s.USER_ID,), encoding=self.encoding
        )
        table[s.USER_ID] = table[s.USER_ID].astype("str").str.strip()
        return table  # attributes stay as read: a zip code must not become a number


def parse_source(
    spec: str,
    *,
    items: str | None = None,
    users: str | None = None,
    column_map: Mapping[str, str] | None = None,
) -> Source:
    """Turn a ``--source`` spec into a :class:`Source`; :class:`ConfigError` for an unknown form.

    A ``movielens:`` directory is checked at once (its layout detected); ``events:`` files are listed
    when the job asks for them.
    """
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ConfigError(f"cannot parse source {spec!r}; use {_FORMS}")
    if kind == "movielens":
        if items or users or column_map:
            raise ConfigError(
                "a movielens: source brings its own items, users and columns; drop "
                "--items/--users/--map or use an events: source"
            )
        return MovieLensSource.open(target)
    if kind == "events":
        return EventsSource(target, items=items, users=users, column_map=dict(column_map or {}))
    raise ConfigError(f"unknown source kind {kind!r} in {spec!r}; use {_FORMS}")


def _typed_items(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out[s.ITEM_ID] = out[s.ITEM_ID].astype("str").str.strip()
    for name in out.columns:
        column = out[name]
        if name in (s.ITEM_ID, s.TITLE, s.TEXT) or name.startswith("_"):
            continue
        if name in (s.CATEGORIES, s.TAGS):
            out[name] = pd.Series([_as_list(v) for v in column.tolist()], index=out.index, dtype=object)
        elif name == s.CREATED_AT:
            out[name] = parse_timestamps(column)[0]
        elif _is_text(column):
            out[name] = _numeric_or_text(column)
    return out


def _as_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(_LIST_SEPARATOR) if part.strip()]
    return value


def _is_text(column: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype)


def _numeric_or_text(column: pd.Series) -> pd.Series:
    """The column as float64 when every non-blank value is a number, else unchanged."""
    text = column.astype("str").str.strip()
    blank = text.isna() | (text == "")
    numbers = pd.to_numeric(text.mask(blank), errors="coerce")
    if blank.all() or numbers[~blank].isna().any():
        return column
    return numbers.astype("float64")
