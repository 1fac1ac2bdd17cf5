"""MovieLens loaders: the real ml-latest-small, and synthetic 100K- and 1M-style directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import schema as s
from recsys.data.movielens import MovieLensSource, load_movielens
from recsys.data.sources import parse_source
from recsys.errors import ConfigError, FormatError
from tests.conftest import ML_LATEST_SMALL

ML_SMALL = ML_LATEST_SMALL
needs_ml_small = pytest.mark.usefixtures("ml_small")  # the bundled copy; always present


@pytest.fixture(scope="module")
def ml_small_data():
    assert ML_SMALL is not None
    return load_movielens(str(ML_SMALL))


@needs_ml_small
def test_ml_latest_small_counts_and_first_rating(ml_small_data) -> None:
    events = ml_small_data.events
    assert len(events) == 100_836
    assert events[s.USER_ID].nunique() == 610
    assert list(events.columns) == [s.USER_ID, s.ITEM_ID, s.EVENT_TYPE, s.VALUE, s.TIMESTAMP, s.EVENT_ID]
    first = events.iloc[0]
    assert first[[s.USER_ID, s.ITEM_ID, s.EVENT_TYPE, s.VALUE]].tolist() == ["1", "1", "rating", 4.0]
    assert first[s.TIMESTAMP] == pd.Timestamp(964_982_703, unit="s", tz="UTC")
    assert first[s.EVENT_ID] == "ml-1-1-964982703"
    assert str(events[s.TIMESTAMP].dtype) == "datetime64[ms, UTC]"
    assert events[s.EVENT_ID].is_unique
    last = events.iloc[-1]
    assert (last[s.USER_ID], last[s.ITEM_ID], last[s.VALUE]) == ("610", "170875", 3.0)
    assert ml_small_data.users is None


@needs_ml_small
def test_ml_latest_small_items(ml_small_data) -> None:
    items = ml_small_data.items.set_index(s.ITEM_ID)
    assert len(items) == 9_742
    toy = items.loc["1"]
    assert toy[s.TITLE] == "Toy Story" and toy["year"] == 1995.0
    assert toy[s.CATEGORIES] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert toy[s.TAGS] == ["fun", "pixar"] and toy[s.TEXT] == "fun, pixar"
    assert items.loc["73", s.TITLE] == "Misérables, Les"  # quoted title with a comma
    assert items.loc["171749", s.TITLE] == "Death Note: Desu nôto"  # "(2006–2007)"
    assert items.loc["171749", "year"] == 2006.0
    assert items.loc["40697", s.TITLE] == "Babylon 5" and np.isnan(items.loc["40697", "year"])
    assert sum(len(c) == 0 for c in items[s.CATEGORIES]) == 34  # "(no genres listed)"
    assert items["year"].dtype == "float64"
    assert sum(len(t) > 0 for t in items[s.TAGS]) == 1_572


@needs_ml_small
def test_ml_latest_small_streams_in_batches(ml_small_data) -> None:
    source = parse_source(f"movielens:{ML_SMALL}")
    assert isinstance(source, MovieLensSource) and source.layout == "latest"
    (ref,) = source.event_files()
    batches = list(source.batches(ref, batch_rows=30_000))
    assert [len(b) for b in batches] == [30_000, 30_000, 30_000, 10_836]
    events = pd.concat(batches, ignore_index=True)
    assert events[s.SOURCE_ROW].tolist() == list(range(1, 100_837))
    assert events[s.SOURCE_FILE].iloc[0].endswith("ratings.csv") and events[s.REASON].isna().all()
    pd.testing.assert_frame_equal(events[list(ml_small_data.events.columns)], ml_small_data.events)


def _write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.write_bytes(text.encode(encoding))


@pytest.fixture
def ml_100k(tmp_path: Path) -> Path:
    _write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    flags = {
        "242": [0, 0, 0, 0, 0, 1] + [0] * 13,
        "302": [0] * 8 + [1] + [0] * 7 + [1, 0, 0],
        "377": [1] + [0] * 18,
    }
    titles = {
        "242": ("Kolya (1996)", "24-Jan-1997"),
        "302": ("L.A. Confidential (1997)", "01-Jan-1997"),
        "377": ("Misérables, Les", "01-Jan-1995"),
    }
    item_lines = [f"{i}|{t}|{d}||http://x|" + "|".join(map(str, flags[i])) for i, (t, d) in titles.items()]
    _write(tmp_path / "u.item", "\n".join(item_lines) + "\n", "latin-1")
    genres = [
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
    ]
    _write(tmp_path / "u.genre", "".join(f"{g}|{i}\n" for i, g in enumerate(genres)) + "\n")
    _write(tmp_path / "u.user", "196|49|M|writer|55105\n186|39|F|executive|00000\n22|25|M|writer|40206\n")
    _write(tmp_path / "README", "not data")
    return tmp_path


def test_100k_layout(ml_100k: Path) -> None:
    data = load_movielens(str(ml_100k))
    assert data.events[s.USER_ID].tolist() == ["196", "186", "22"]
    assert data.events[s.VALUE].tolist() == [3.0, 3.0, 1.0]
    assert data.events[s.TIMESTAMP].iloc[0] == pd.Timestamp(881_250_949, unit="s", tz="UTC")
    items = data.items.set_index(s.ITEM_ID)
    assert items.loc["242", s.TITLE] == "Kolya" and items.loc["242", s.CATEGORIES] == ["Comedy"]
    assert items.loc["302", s.CATEGORIES] == ["Drama", "Thriller"] and items.loc["302", "year"] == 1997.0
    assert items.loc["377", s.TITLE] == "Misérables, Les" and items.loc["377", s.CATEGORIES] == []
    assert items.loc["377", "year"] == 1995.0  # from the release date
    assert data.users is not None
    assert data.users.iloc[1].tolist() == ["186", 39.0, "F", "executive", "00000"]


@pytest.fixture
def ml_1m(tmp_path: Path) -> Path:
    _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::3408::4::978300275\n")
    _write(
        tmp_path / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3408::Erin Brockovich: Ça va (2000)::Drama\n",
        "latin-1",
    )
    _write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return tmp_path


def test_1m_layout(ml_1m: Path) -> None:
    data = load_movielens(str(ml_1m))
    assert data.events[[s.USER_ID, s.ITEM_ID, s.VALUE]].values.tolist() == [
        ["1", "1193", 5.0],
        ["1", "661", 3.0],
        ["2", "3408", 4.0],
    ]
    assert data.events[s.EVENT_ID].iloc[2] == "ml-2-3408-978300275"
    items = data.items.set_index(s.ITEM_ID)
    assert items.loc["3408", s.TITLE] == "Erin Brockovich: Ça va" and items.loc["3408", "year"] == 2000.0
    assert items.loc["661", s.CATEGORIES] == ["Animation", "Children's", "Musical"]
    assert data.users is not None and data.users.columns.tolist() == [
        "user_id",
        "gender",
        "age",
        "occupation",
        "zip_code",
    ]
    assert data.users.iloc[1].tolist() == ["2", "M", 56.0, "16", "70072"]


def test_bad_rating_rows_are_quarantined_when_streaming(ml_1m: Path) -> None:
    _write(
        ml_1m / "ratings.dat",
        "1::1193::5::978300760\n1::661\n1::2::abc::978300760\n3::4::5::soon\n"
        "1:x:7::5::978300760\n1:7::5::978300760\n",
    )
    source = MovieLensSource.open(str(ml_1m))
    (ref,) = source.event_files()
    events = pd.concat(list(source.batches(ref, batch_rows=2)), ignore_index=True)
    assert events[s.SOURCE_ROW].tolist() == [1, 2, 3, 4, 5, 6]
    assert events[s.REASON].fillna("").tolist() == [
        "",
        "malformed_row",
        "malformed_value",
        "malformed_timestamp",
        "malformed_row",
        "malformed_row",
    ]
    assert events[s.RAW].tolist()[1:] == [
        "1::661",
        "1::2::abc::978300760",
        "3::4::5::soon",
        "1:x:7::5::978300760",
        "1:7::5::978300760",
    ]
    assert events.loc[2, s.USER_ID] == "1" and np.isnan(events.loc[2, s.VALUE])
    assert events[s.EVENT_TYPE].iloc[0] == "rating"
    with pytest.raises(FormatError, match="row 2"):
        load_movielens(str(ml_1m))


def test_not_movielens_directory(tmp_path: Path) -> None:
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n")
    _write(tmp_path / "notes.txt", "x")
    with pytest.raises(FormatError) as info:
        MovieLensSource.open(str(tmp_path))
    message = str(info.value)
    assert "movies.csv" in message and "u.data" in message and "ratings.dat" in message
    assert "notes.txt" in message and str(tmp_path) in message


def test_movielens_spec_rejects_items_and_maps(ml_1m: Path) -> None:
    with pytest.raises(ConfigError):
        parse_source(f"movielens:{ml_1m}", items="x.csv")
