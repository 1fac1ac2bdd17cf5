"""MovieLens datasets in the Wayfinder schema, detected from the directory's files.

==========  =====================================  ==================================================
layout      files (required first)                 releases
==========  =====================================  ==================================================
``latest``  ratings.csv, movies.csv, tags.csv      ml-latest, ml-latest-small, ml-20m, ml-25m, ml-32m
``dat``     ratings.dat, movies.dat, users.dat,    ml-1m (users), ml-10m (tags), ``::``-separated
            tags.dat
``100k``    u.data, u.item, u.genre, u.user        ml-100k (tab- and ``|``-separated)
==========  =====================================  ==================================================

Events: one ``rating`` event per rating, ``value`` the rating, ``timestamp`` from epoch seconds,
``event_id`` ``ml-{user}-{item}-{epoch}``. Ratings stream through :func:`recsys.data.readers.iter_batches`
(``::`` is read as ``:`` with empty fields in between, which only works because ratings are numbers),
then :meth:`MovieLensSource.to_events`; bookkeeping columns are kept. A rating or time that is not a
number quarantines the row as ``malformed_value`` / ``malformed_timestamp``.

Items: ``title`` without its trailing ``(1995)``, ``year`` (float64) from it (ml-100k falls back to
the release date), ``categories`` the genres (``(no genres listed)`` and 100K's ``unknown`` -> ``[]``),
``tags`` the distinct lower-cased user tags (sorted), ``text`` the tags joined by ``", "``. Text files
are read as UTF-8, or Latin-1 when they are not valid UTF-8 (ml-100k, ml-1m).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd

from recsys.data import schema as s
from recsys.data.readers import (
    BOOKKEEPING_COLUMNS,
    MALFORMED_ROW,
    FileRef,
    iter_batches,
    list_files,
    read_table,
)
from recsys.errors import FormatError

Layout = Literal["latest", "dat", "100k"]

_LAYOUTS: dict[Layout, tuple[str, str]] = {
    "latest": ("ratings.csv", "movies.csv"),
    "dat": ("ratings.dat", "movies.dat"),
    "100k": ("u.data", "u.item"),
}
_RATING_COLUMNS = (s.USER_ID, s.ITEM_ID, s.VALUE, s.TIMESTAMP)
_SEPARATORS = ("sep1", "sep2", "sep3")
_DAT_COLUMNS = (s.USER_ID, "sep1", s.ITEM_ID, "sep2", s.VALUE, "sep3", s.TIMESTAMP)
_LATEST_MAP = {"userId": s.USER_ID, "movieId": s.ITEM_ID, "rating": s.VALUE, "timestamp": s.TIMESTAMP}
_GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_NO_GENRE = frozenset({"(no genres listed)", "unknown"})
_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[–-]\s*\d{0,4})?\)\s*$")
_MAX_EPOCH_S = 1e11


@dataclass(frozen=True)
class MovieLensData:
    """A whole MovieLens dataset in memory (see :func:`load_movielens`)."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None


class MovieLensSource:
    """A MovieLens directory as a streaming event source plus its catalogue and users.

    Build it with :meth:`open`, which detects the layout. ``event_files`` and ``batches`` stream the
    ratings (bounded memory, any size); ``load_items`` and ``load_users`` read the small files whole.

    Examples
    --------
    >>> source = MovieLensSource.open("data/ml-latest-small")  # doctest: +SKIP
    >>> [ref.uri.rsplit("/", 1)[-1] for ref in source.event_files()]  # doctest: +SKIP
    ['ratings.csv']
    >>> next(source.batches(source.event_files()[0], batch_rows=1))[["user_id", "value"]]  # doctest: +SKIP
      user_id  value
    0       1    4.0
    """

    def __init__(self, directory: str, layout: Layout, files: Mapping[str, FileRef]) -> None:
        self.directory = directory
        self.layout = layout
        self.files = dict(files)

    @classmethod
    def open(cls, directory: str) -> MovieLensSource:
        """Detect the layout of ``directory``; :class:`FormatError` if it is not a MovieLens one."""
        refs = list_files(directory, fmt="csv", recursive=False)
        files = {PurePosixPath(ref.path).name: ref for ref in refs}
        for layout, required in _LAYOUTS.items():
            if all(name in files for name in required):
                return cls(directory, layout, files)
        expected = "; ".join(f"{' + '.join(names)} ({layout})" for layout, names in _LAYOUTS.items())
        raise FormatError(
            f"not a MovieLens directory: expected {expected}; found {sorted(files)[:20]}", file=directory
        )

    def describe(self) -> str:
        return f"MovieLens ({self.layout} layout) at {self.directory}"

    def event_files(self) -> list[FileRef]:
        """The ratings file, set up for :meth:`batches`."""
        ref = self.files[_LAYOUTS[self.layout][0]]
        if self.layout == "dat":
            return [dataclasses.replace(ref, delimiter=":", column_names=_DAT_COLUMNS)]
        if self.layout == "100k":
            return [dataclasses.replace(ref, delimiter="\t", column_names=_RATING_COLUMNS)]
        return [ref]

    def batches(self, file: FileRef, *, batch_rows: int = 262_144) -> Iterator[pd.DataFrame]:
        """Events of one ratings file in batches, with the bookkeeping columns of the reader."""
        column_map = _LATEST_MAP if file.column_names is None else None
        for batch in iter_batches(
            file, column_map=column_map, batch_rows=batch_rows, required=_RATING_COLUMNS
        ):
            yield self.to_events(batch, separator=file.delimiter)

    @staticmethod
    def to_events(batch: pd.DataFrame, *, separator: str = ",") -> pd.DataFrame:
        """Raw rating rows (``user_id``, ``item_id``, ``value``, ``timestamp`` as text) -> events.

        Rows the reader quarantined keep their ``_reason``; a rating or time that is not a number
        gets ``malformed_value`` / ``malformed_timestamp`` and ``_raw`` (the fields joined by
        ``separator``, the file's delimiter). For ``.dat`` files (read with ``:`` and the empty
        ``sep1..sep3`` columns between fields) a non-empty separator field makes a ``malformed_row``.
        """
        text = {name: batch[name].astype("str").str.strip() for name in _RATING_COLUMNS}
        reason = batch[s.REASON].astype("object").to_numpy(copy=True)
        raw = batch[s.RAW].astype("object").to_numpy(copy=True)
        unset = pd.isna(reason)
        stray = np.zeros(len(batch), dtype=bool)
        for name in _SEPARATORS:
            if name in batch.columns:
                stray |= (batch[name].fillna("") != "").to_numpy(dtype=bool)
        value = pd.to_numeric(text[s.VALUE], errors="coerce").astype("float64")
        seconds = pd.to_numeric(text[s.TIMESTAMP], errors="coerce").astype("float64")
        seconds = seconds.where(seconds.abs() < _MAX_EPOCH_S)
        for problem, mask in (
            (MALFORMED_ROW, stray),
            ("malformed_value", value.isna().to_numpy() & _given(text[s.VALUE])),
            ("malformed_timestamp", seconds.isna().to_numpy() & _given(text[s.TIMESTAMP])),
        ):
            hit = mask & unset
            reason[hit] = problem
            raw[hit] = _joined(batch, hit, separator)
            unset &= ~hit
        stamps = pd.to_datetime((seconds * 1000).round(), unit="ms", utc=True).astype("datetime64[ms, UTC]")
        complete = _given(text[s.USER_ID]) & _given(text[s.ITEM_ID]) & _given(text[s.TIMESTAMP])
        event_id = "ml-" + text[s.USER_ID] + "-" + text[s.ITEM_ID] + "-" + text[s.TIMESTAMP]
        return pd.DataFrame(
            {
                s.USER_ID: text[s.USER_ID],
                s.ITEM_ID: text[s.ITEM_ID],
                s.EVENT_TYPE: pd.Series("rating", index=batch.index, dtype="str").where(unset),
                s.VALUE: value,
                s.TIMESTAMP: stamps,
                s.EVENT_ID: event_id.where(complete),
                s.SOURCE_FILE: batch[s.SOURCE_FILE],
                s.SOURCE_ROW: batch[s.SOURCE_ROW].astype("int64"),
                s.REASON: pd.Series(reason, index=batch.index, dtype="str"),
                s.RAW: pd.Series(raw, index=batch.index, dtype="str"),
            }
        )

    def load_items(self) -> pd.DataFrame:
        """The catalogue: item_id, title, text, categories, tags, year."""
        if self.layout == "latest":
            movies = read_table(
                self.files["movies.csv"].uri,
                "csv",
                {"movieId": s.ITEM_ID},
                required=(s.ITEM_ID, "title", "genres"),
            )
            ids = movies[s.ITEM_ID].astype("str").str.strip().tolist()
            genres = [_genres(g.split("|")) for g in movies["genres"].fillna("").astype("str")]
            items = _items(ids, movies["title"].fillna("").astype("str").tolist(), genres)
            tags = self.files.get("tags.csv")
            if tags is None:
                return items
            table = read_table(tags.uri, "csv", {"movieId": s.ITEM_ID}, required=(s.ITEM_ID, "tag"))
            return _with_tags(
                items, table[s.ITEM_ID].astype("str").tolist(), table["tag"].astype("str").tolist()
            )
        if self.layout == "dat":
            rows = _split_lines(self.files["movies.dat"], "::", 3)
            items = _items(
                [r[0] for r in rows],
                ["::".join(r[1:-1]) for r in rows],
                [_genres(r[-1].split("|")) for r in rows],
            )
            if "tags.dat" not in self.files:
                return items
            tag_rows = _split_lines(self.files["tags.dat"], "::", 4)
            return _with_tags(items, [r[1] for r in tag_rows], ["::".join(r[2:-1]) for r in tag_rows])
        names: tuple[str, ...] = _GENRES_100K
        if "u.genre" in self.files:
            names = tuple(r[0] for r in _split_lines(self.files["u.genre"], "|", 2))
        rows = _split_lines(self.files["u.item"], "|", 5 + len(names))
        genres = [
            _genres([n for n, flag in zip(names, r[-len(names) :], strict=True) if flag == "1"]) for r in rows
        ]
        items = _items([r[0] for r in rows], [r[1] for r in rows], genres)
        release_year = pd.to_numeric(pd.Series([r[2][-4:] for r in rows]), errors="coerce")
        items["year"] = items["year"].fillna(release_year.astype("float64"))
        return items

    def load_users(self) -> pd.DataFrame | None:
        """User attributes (ml-100k, ml-1m) or ``None``."""
        if self.layout == "100k" and "u.user" in self.files:
            rows = _split_lines(self.files["u.user"], "|", 5)
            columns = (s.USER_ID, "age", "gender", "occupation", "zip_code")
        elif self.layout == "dat" and "users.dat" in self.files:
            rows = _split_lines(self.files["users.dat"], "::", 5)
            columns = (s.USER_ID, "gender", "age", "occupation", "zip_code")
        else:
            return None
        users = pd.DataFrame([r[:5] for r in rows], columns=list(columns), dtype="str")
        users["age"] = pd.to_numeric(users["age"], errors="coerce").astype("float64")
        return users


def load_movielens(directory: str) -> MovieLensData:
    """Load a (small) MovieLens directory whole; events without bookkeeping columns.

    Strict: a row that would be quarantined raises :class:`FormatError` naming its file and row.
    Stream big datasets through :class:`MovieLensSource` (the preprocessing job) instead.
    """
    source = MovieLensSource.open(directory)
    frames = [batch for ref in source.event_files() for batch in source.batches(ref)]
    events = pd.concat(frames, ignore_index=True)
    bad = events[s.REASON].notna().to_numpy()
    if bad.any():
        first = events[bad].iloc[0]
        raise FormatError(
            f"{int(bad.sum())} rating row(s) are unusable, e.g. {first[s.REASON]}: {first[s.RAW]!r}",
            file=str(first[s.SOURCE_FILE]),
            row=int(first[s.SOURCE_ROW]),
        )
    events = events.drop(columns=list(BOOKKEEPING_COLUMNS))
    return MovieLensData(events=events, items=source.load_items(), users=source.load_users())


def _given(text: pd.Series) -> np.ndarray:
    return (text.notna() & (text != "")).to_numpy(dtype=bool)


def _joined(batch: pd.DataFrame, mask: np.ndarray, separator: str) -> list[str]:
    """The fields of the rows in ``mask`` joined back into their line (exactly, for ``.dat`` files)."""
    names = _DAT_COLUMNS if _SEPARATORS[0] in batch.columns else _RATING_COLUMNS
    columns = [batch[name][mask].fillna("").astype("str").tolist() for name in names]
    return [separator.join(values) for values in zip(*columns, strict=True)]


def _split_lines(ref: FileRef, separator: str, min_fields: int) -> list[list[str]]:
    """The fields of each non-blank line of a small text file (UTF-8, else Latin-1)."""
    with ref.open_stream() as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(separator)]
        if len(fields) < min_fields:
            raise FormatError(
                f"expected at least {min_fields} {separator!r}-separated fields, got {len(fields)}: {line!r}",
                file=ref.uri,
                row=number,
            )
        rows.append(fields)
    return rows


def _genres(names: Sequence[str]) -> list[str]:
    return [name.strip() for name in names if name.strip() and name.strip() not in _NO_GENRE]


def _items(ids: Sequence[str], titles: Sequence[str], genres: Sequence[list[str]]) -> pd.DataFrame:
    parsed = pd.Series(list(titles), dtype="str").str.strip().str.extract(_TITLE_YEAR)
    clean_titles = parsed["title"].fillna(pd.Series(list(titles), dtype="str").str.strip())
    return pd.DataFrame(
        {
            s.ITEM_ID: pd.Series([i.strip() for i in ids], dtype="str"),
            s.TITLE: clean_titles.astype("str"),
            s.TEXT: pd.Series([""] * len(ids), dtype="str"),
            s.CATEGORIES: list(genres),
            s.TAGS: [[] for _ in ids],
            "year": pd.to_numeric(parsed["year"], errors="coerce").astype("float64"),
        }
    )


def _with_tags(items: pd.DataFrame, item_ids: Sequence[str], tags: Sequence[str]) -> pd.DataFrame:
    """``items`` with the distinct, lower-cased tags of each item and ``text`` made of them."""
    by_item: dict[str, set[str]] = {}
    for item, tag in zip(item_ids, tags, strict=True):
        cleaned = tag.strip().lower()
        if cleaned:
            by_item.setdefault(item.strip(), set()).add(cleaned)
    sorted_tags = [sorted(by_item.get(item, ())) for item in items[s.ITEM_ID]]
    items = items.copy()
    items[s.TAGS] = sorted_tags
    items[s.TEXT] = pd.Series([", ".join(t) for t in sorted_tags], index=items.index, dtype="str")
    return items
