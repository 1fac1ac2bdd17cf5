"""Streaming readers: listing, CSV/JSON-lines/Parquet batches, bookkeeping columns and row numbers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data import schema as s
from recsys.data.readers import FileRef, iter_batches, list_files, read_table
from recsys.data.sources import EventsSource, parse_source
from recsys.errors import ConfigError, FormatError, SchemaError, SourceNotFoundError

HEADER = "user_id,item_id,event_type,timestamp,value"


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def _events_csv(n: int) -> str:
    rows = [f"u{i % 7},i{i},view,{1_600_000_000 + i},{i % 5}" for i in range(1, n + 1)]
    return "\n".join([HEADER, *rows]) + "\n"


def _one(path: Path, **kwargs) -> FileRef:
    (ref,) = list_files(str(path), **kwargs)
    return ref


def _read(path: Path, **kwargs) -> pd.DataFrame:
    frames = list(iter_batches(_one(path), **kwargs))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- listing -------------------------------------------------------------------------------------


def test_list_files_directory_recursive_sorted_skips_hidden(tmp_path: Path) -> None:
    _write(tmp_path / "b.csv", _events_csv(1))
    _write(tmp_path / "a" / "z.jsonl", "{}\n")
    _write(tmp_path / "c.parquet", b"x")
    _write(tmp_path / "d.csv.gz", gzip.compress(_events_csv(1).encode()))
    _write(tmp_path / "_SUCCESS", "")
    _write(tmp_path / ".hidden.csv", "")
    _write(tmp_path / "_temporary" / "x.csv", "")
    refs = list_files(str(tmp_path))
    assert [Path(r.path).relative_to(tmp_path).as_posix() for r in refs] == [
        "a/z.jsonl",
        "b.csv",
        "c.parquet",
        "d.csv.gz",
    ]
    assert [r.fmt for r in refs] == ["jsonl", "csv", "parquet", "csv"]
    assert refs[3].compression == "gzip"
    assert refs[1].uri == str(tmp_path / "b.csv")


def test_list_files_via_file_uri(tmp_path: Path) -> None:
    _write(tmp_path / "x" / "one.csv", _events_csv(2))
    _write(tmp_path / "x" / "two.tsv", _events_csv(2).replace(",", "\t"))
    refs = list_files(f"file://{tmp_path}/x")
    assert [r.uri for r in refs] == [f"file://{tmp_path}/x/one.csv", f"file://{tmp_path}/x/two.tsv"]
    assert refs[1].delimiter == "\t"
    batch = next(iter_batches(refs[1]))
    assert batch[s.SOURCE_FILE].iloc[0] == f"file://{tmp_path}/x/two.tsv"
    assert batch[s.USER_ID].tolist() == ["u1", "u2"]


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="no-such-dir"):
        list_files(str(tmp_path / "no-such-dir"))
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty" / "_SUCCESS", "")
    with pytest.raises(SourceNotFoundError, match="no data files"):
        list_files(str(tmp_path / "empty"))


def test_unknown_extension_needs_a_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.txt", _events_csv(3))
    with pytest.raises(FormatError, match=r"events\.txt"):
        list_files(str(path))
    assert len(_read_ref(_one(path, fmt="csv"))) == 3


def _read_ref(ref: FileRef, **kwargs) -> pd.DataFrame:
    return pd.concat(list(iter_batches(ref, **kwargs)), ignore_index=True)


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_values_are_raw_strings_with_bookkeeping(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", HEADER + "\nu1, i1 ,view,2024-01-01T00:00:00Z,NA\nu2,i2,click,1,\n")
    frame = _read(path)
    assert list(frame.columns) == [*HEADER.split(","), s.SOURCE_FILE, s.SOURCE_ROW, s.REASON, s.RAW]
    assert frame[s.ITEM_ID].tolist() == [" i1 ", "i2"]
    assert frame[s.VALUE].tolist() == ["NA", ""]
    assert frame[s.SOURCE_ROW].dtype == "int64"
    assert frame[s.SOURCE_ROW].tolist() == [1, 2]
    assert frame[s.SOURCE_FILE].tolist() == [str(path)] * 2
    assert frame[s.REASON].isna().all() and frame[s.RAW].isna().all()


def test_csv_malformed_line_in_the_middle(tmp_path: Path) -> None:
    lines = _events_csv(1000).splitlines()
    lines[500] = "u9,i9,view"  # data row 500 (line 501)
    lines.insert(800, "u8,i8,view,1,2,3")  # data row 800 (line 801)
    path = _write(tmp_path / "e.csv", "\n".join(lines) + "\n")
    frame = _read(path, batch_rows=64)
    assert len(frame) == 1001
    assert frame[s.SOURCE_ROW].tolist() == list(range(1, 1002))
    bad = frame[frame[s.REASON].notna()]
    assert bad[s.SOURCE_ROW].tolist() == [500, 800]
    assert bad[s.REASON].tolist() == ["malformed_row", "malformed_row"]
    assert bad[s.RAW].tolist() == ["u9,i9,view", "u8,i8,view,1,2,3"]
    assert bad[s.USER_ID].isna().all() and bad[s.TIMESTAMP].isna().all()
    good = frame[frame[s.REASON].isna()].set_index(s.SOURCE_ROW)[s.ITEM_ID]
    assert good[499] == "i499" and good[501] == "i501" and good[799] == "i799" and good[801] == "i800"
    assert good[1001] == "i1000"


def test_csv_row_numbers_across_many_reader_blocks(tmp_path: Path) -> None:
    """Blank lines, quoted newlines and malformed rows far apart (several pyarrow blocks)."""
    n = 120_000
    lines = [HEADER, *[f"u{i},i{i},view,{i},1" for i in range(1, n + 1)]]
    lines[10] = ""  # blank line: skipped but counted
    lines[50_000] = "broken"
    lines[100_000] = '"multi\nline",i,view,1,1'  # one record over two lines
    lines[119_999] = "x,y"
    path = _write(tmp_path / "big.csv", "\n".join(lines) + "\n")
    frame = _read(path, batch_rows=10_000)
    assert len(frame) == n - 1  # the blank line is dropped
    assert frame[s.SOURCE_ROW].is_monotonic_increasing
    bad = frame[frame[s.REASON].notna()]
    assert bad[s.SOURCE_ROW].tolist() == [50_000, 119_999]
    assert bad[s.RAW].tolist() == ["broken", "x,y"]
    row = frame.set_index(s.SOURCE_ROW)
    assert row.loc[100_000, s.USER_ID] == "multi\nline"
    assert row.loc[100_001, s.USER_ID] == "u100001"
    assert 10 not in row.index and row.loc[11, s.USER_ID] == "u11"


def test_malformed_last_line_without_newline(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", _events_csv(3) + "oops")
    frame = _read(path)
    assert frame[s.SOURCE_ROW].tolist() == [1, 2, 3, 4]
    assert frame[s.REASON].tolist()[-1] == "malformed_row" and frame[s.RAW].tolist()[-1] == "oops"


def test_small_batches_give_the_same_rows_as_one_batch(tmp_path: Path) -> None:
    lines = _events_csv(997).splitlines()
    lines[300] = "bad"
    path = _write(tmp_path / "e.csv", "\n".join(lines) + "\n")
    whole = list(iter_batches(_one(path), batch_rows=10_000))
    small = list(iter_batches(_one(path), batch_rows=7))
    assert len(whole) == 1 and len(small) == 143
    assert all(len(b) == 7 for b in small[:-1]) and len(small[-1]) == 997 % 7
    pd.testing.assert_frame_equal(pd.concat(small, ignore_index=True), whole[0])


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", "user_id,item_id,timestamp\nu,i,1\n")
    with pytest.raises(SchemaError) as info:
        next(iter_batches(_one(path)))
    message = str(info.value)
    assert str(path) in message and "event_type" in message and "item_id" in message
    assert info.value.column == "event_type" and info.value.file == str(path)


def test_column_map_renames_source_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", "uid,iid,kind,when,extra\nu1,i1,view,5,x\n")
    mapping = {"uid": "user_id", "iid": "item_id", "kind": "event_type", "when": "timestamp"}
    frame = _read(path, column_map=mapping)
    assert list(frame.columns[:5]) == ["user_id", "item_id", "event_type", "timestamp", "extra"]
    assert frame.iloc[0][["user_id", "extra"]].tolist() == ["u1", "x"]
    with pytest.raises(SchemaError, match="more than once"):
        _read(_write(tmp_path / "d.csv", "uid,user_id,item_id,event_type,timestamp\n"), column_map=mapping)


def test_empty_files_yield_nothing(tmp_path: Path) -> None:
    assert list(iter_batches(_one(_write(tmp_path / "zero.csv", b"")))) == []
    assert list(iter_batches(_one(_write(tmp_path / "header.csv", HEADER + "\n")))) == []
    assert list(iter_batches(_one(_write(tmp_path / "zero.jsonl", b"")))) == []
    assert list(iter_batches(_one(_write(tmp_path / "zero.parquet", b"")))) == []
    with pytest.raises(SchemaError):  # a header is still checked
        list(iter_batches(_one(_write(tmp_path / "bad-header.csv", "a,b\n"))))


def test_wrong_encoding_is_quarantined_as_bad_encoding(tmp_path: Path) -> None:
    data = (HEADER + "\nu1,i1,view,1,1\nu2,caf\xe9,view,2,1\nu3,i3,view,3,1\n").encode("latin-1")
    path = _write(tmp_path / "e.csv", data)
    frame = _read(path)
    assert frame[s.REASON].fillna("").tolist() == ["", "bad_encoding", ""]
    bad = frame.iloc[1]
    assert bad[s.SOURCE_ROW] == 2 and bad[s.RAW] == "u2,caf\ufffd,view,2,1" and pd.isna(bad[s.ITEM_ID])
    # declared correctly, the same bytes read fine
    latin = _read(path, encoding="latin-1")
    assert latin[s.ITEM_ID].tolist() == ["i1", "café", "i3"] and latin[s.REASON].isna().all()
    with pytest.raises(ConfigError, match="encoding"):
        _read(path, encoding="no-such-codec")


def test_utf8_bom_and_crlf(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", ("\ufeff" + HEADER + "\r\nu1,i1,view,1,1\r\n").encode("utf-8"))
    frame = _read(path)
    assert frame[s.USER_ID].tolist() == ["u1"] and frame[s.VALUE].tolist() == ["1"]


def test_gzip_csv_streams(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv.gz", gzip.compress(_events_csv(50).encode()))
    frame = _read(path, batch_rows=16)
    assert len(frame) == 50 and frame[s.SOURCE_ROW].tolist() == list(range(1, 51))


# --- JSON lines ----------------------------------------------------------------------------------


def test_jsonl_broken_line_and_native_values(tmp_path: Path) -> None:
    lines = [
        json.dumps({"user_id": "u1", "item_id": 7, "event_type": "view", "timestamp": 1_700_000_000}),
        "{not json",
        "",
        "[1, 2]",
        json.dumps(
            {
                "user_id": "u2",
                "item_id": "i2",
                "event_type": "click",
                "timestamp": "2024-01-01",
                "device": "tv",
            }
        ),
    ]
    path = _write(tmp_path / "e.jsonl", "\n".join(lines).encode() + b"\n\xff\xfe\n")
    frame = _read(path, batch_rows=2)
    assert frame[s.SOURCE_ROW].tolist() == [1, 2, 4, 5, 6]
    assert frame[s.REASON].fillna("").tolist() == ["", "malformed_row", "malformed_row", "", "bad_encoding"]
    assert frame[s.RAW].tolist()[1:3] == ["{not json", "[1, 2]"]
    assert frame[s.ITEM_ID].tolist()[0] == 7  # native type kept
    assert frame[s.ITEM_ID].tolist()[3] == "i2" and frame["device"].tolist()[3] == "tv"


def test_jsonl_missing_required_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.jsonl", json.dumps({"user_id": "u", "item_id": "i", "timestamp": 1}) + "\n")
    with pytest.raises(SchemaError, match="event_type"):
        list(iter_batches(_one(path)))


# --- Parquet -------------------------------------------------------------------------------------


def test_parquet_batches_keep_native_types(tmp_path: Path) -> None:
    n = 1000
    table = pa.table(
        {
            "uid": [f"u{i}" for i in range(n)],
            "item_id": [f"i{i}" for i in range(n)],
            "event_type": ["view"] * n,
            "timestamp": pa.array(range(n), pa.timestamp("ms", tz="UTC")),
            "value": [float(i) for i in range(n)],
        }
    )
    path = tmp_path / "e.parquet"
    pq.write_table(table, path, row_group_size=300)
    batches = list(iter_batches(_one(path), batch_rows=128, column_map={"uid": "user_id"}))
    frame = pd.concat(batches, ignore_index=True)
    assert max(len(b) for b in batches) <= 128
    assert frame[s.SOURCE_ROW].tolist() == list(range(1, n + 1))
    assert frame[s.VALUE].dtype == "float64" and str(frame[s.TIMESTAMP].dtype) == "datetime64[ms, UTC]"
    assert frame[s.USER_ID].iloc[999] == "u999" and frame[s.REASON].isna().all()


# --- tables and sources --------------------------------------------------------------------------


def test_read_table_is_strict_and_drops_bookkeeping(tmp_path: Path) -> None:
    path = _write(tmp_path / "items.csv", "item_id,title,price\n1,A,2.5\n2,B,\n")
    table = read_table(str(path), required=("item_id",))
    assert list(table.columns) == ["item_id", "title", "price"] and len(table) == 2
    _write(tmp_path / "bad.csv", "item_id,title\n1,A\n2,B,extra\n")
    with pytest.raises(FormatError, match="row 2"):
        read_table(str(tmp_path / "bad.csv"))


def test_events_source(tmp_path: Path) -> None:
    _write(tmp_path / "ev" / "part-1.csv", "uid,item_id,event_type,timestamp\nu1,i1,view,1\n")
    _write(tmp_path / "items.csv", "item_id,title,categories,price,created_at\n i1 ,A,x|y,2.5,1700000000\n")
    source = parse_source(
        f"events:{tmp_path}/ev", items=str(tmp_path / "items.csv"), column_map={"uid": "user_id"}
    )
    assert isinstance(source, EventsSource)
    (ref,) = source.event_files()
    batch = next(source.batches(ref, batch_rows=10))
    assert batch[s.USER_ID].tolist() == ["u1"]
    items = source.load_items()
    assert items is not None and source.load_users() is None
    assert items[s.ITEM_ID].tolist() == ["i1"] and items[s.CATEGORIES].tolist() == [["x", "y"]]
    assert items["price"].dtype == "float64"
    assert str(items[s.CREATED_AT].dtype) == "datetime64[ms, UTC]"


@pytest.mark.parametrize("spec", ["nope:x", "data/events.csv", "events:"])
def test_parse_source_rejects_unknown_forms(spec: str) -> None:
    with pytest.raises(ConfigError, match="movielens:DIR"):
        parse_source(spec)


def test_corrupt_parquet_is_a_format_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.parquet", b"not parquet at all")
    with pytest.raises(FormatError, match=r"e\.parquet"):
        list(iter_batches(_one(path)))
