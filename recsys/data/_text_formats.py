"""CSV and JSON-lines parsing behind :func:`recsys.data.readers.iter_batches`.

Private: the batch contract (bookkeeping columns, row numbers, quarantine reasons) is documented in
:mod:`recsys.data.readers`. Shared helpers for every format (column mapping, bookkeeping columns,
re-chunking) live here too so that the Parquet path in ``readers`` reuses them.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recsys.data import schema as s
from recsys.errors import FormatError, SchemaError

if TYPE_CHECKING:
    from recsys.data.readers import FileRef

MALFORMED_ROW = "malformed_row"
BAD_ENCODING = "bad_encoding"
BOOKKEEPING_COLUMNS: tuple[str, ...] = (s.SOURCE_FILE, s.SOURCE_ROW, s.REASON, s.RAW)

_BLOCK_BYTES = 1 << 22
_CHUNK_BYTES = 1 << 22


def map_columns(
    file: FileRef, found: Sequence[str], column_map: Mapping[str, str], required: Collection[str]
) -> list[str]:
    names = [column_map.get(name, name) for name in found]
    reserved = sorted(set(names) & set(BOOKKEEPING_COLUMNS))
    if reserved:
        raise SchemaError(
            f"columns {reserved} are reserved for Wayfinder's bookkeeping; rename them",
            file=file.uri,
            column=reserved[0],
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise SchemaError(
            f"columns {duplicated} appear more than once after renaming; found {list(found)}",
            file=file.uri,
            column=duplicated[0],
        )
    missing = [name for name in required if name not in names]
    if missing:
        raise SchemaError(
            f"required column(s) {missing} not found; the file has {list(found)}. Rename columns with a "
            "column map (source name -> schema name)",
            file=file.uri,
            column=missing[0],
        )
    return names


@functools.cache
def _lenient_codec(encoding: str) -> str:
    """Register (once) a codec decoding ``encoding`` with U+FFFD for bad bytes; return its name."""
    base = codecs.lookup(encoding)
    if base.name == "utf-8":
        base = codecs.lookup("utf-8-sig")  # drops a byte-order mark
    name = "wayfinder_lenient_" + "".join(c if c.isalnum() else "_" for c in base.name)
    base_decoder = base.incrementaldecoder

    class _Decoder(base_decoder):  # type: ignore[misc, valid-type]
        def __init__(self, errors: str = "replace") -> None:
            super().__init__(errors)

    info = codecs.CodecInfo(base.encode, base.decode, incrementaldecoder=_Decoder, name=name)
    codecs.register(lambda wanted: info if wanted == name else None)
    return name


def _utf8_stream(file: FileRef, encoding: str) -> pa.NativeFile:
    return pa.transcoding_input_stream(file.open_stream(), _lenient_codec(encoding), "utf-8")


def _iter_lines(stream: pa.NativeFile) -> Iterator[bytes]:
    """The stream's lines, without their end-of-line bytes."""
    rest = b""
    while chunk := stream.read(_CHUNK_BYTES):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line.removesuffix(b"\r")
    if rest:
        yield rest.removesuffix(b"\r")


def iter_csv(
    file: FileRef, column_map: Mapping[str, str], batch_rows: int, encoding: str, required: Collection[str]
) -> Iterator[pd.DataFrame]:
    with _utf8_stream(file, encoding) as stream:
        first = next(_iter_lines(stream), None)
    if first is None:
        return
    skip = 0 if file.column_names is not None else 1
    header = file.column_names or next(csv.reader([first.decode("utf-8")], delimiter=file.delimiter), [])
    names = map_columns(file, header, column_map, required)
    invalid: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if row.number is None:  # only parallel reading loses the number; this reader is serial
            raise RuntimeError("pyarrow did not report the row number of an invalid CSV row")
        invalid.append((row.number - skip, row.text))
        return "skip"

    try:
        with _utf8_stream(file, encoding) as stream:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(
                    use_threads=False, block_size=_BLOCK_BYTES, column_names=names, skip_rows=skip
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=file.delimiter,
                    newlines_in_values=True,
                    ignore_empty_lines=False,
                    invalid_row_handler=on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
            )
            tables = _numbered_csv_tables(reader, invalid, names, file)
            for table in rechunk(tables, batch_rows):
                yield table.to_pandas()
    except pa.ArrowInvalid as exc:
        raise FormatError(f"cannot read the file as CSV: {exc}", file=file.uri) from exc


def _numbered_csv_tables(
    reader: pacsv.CSVStreamingReader, invalid: list[tuple[int, str]], names: list[str], file: FileRef
) -> Iterator[pa.Table]:
    """Number good rows around the malformed ones the handler collected while parsing each block."""
    next_row = 1
    for batch in reader:
        end = next_row + batch.num_rows
        taken = 0
        while taken < len(invalid) and invalid[taken][0] < end:
            end += 1
            taken += 1
        bad = invalid[:taken]
        del invalid[:taken]
        if bad and bad[0][0] < next_row:
            raise RuntimeError(f"invalid CSV row {bad[0][0]} reported after later rows were numbered")
        rows = np.arange(next_row, end, dtype=np.int64)
        if bad:
            rows = rows[~np.isin(rows, [number for number, _ in bad])]
        next_row = end
        yield _csv_block(batch, rows, bad, names, file)
    if invalid:
        yield _csv_block(None, np.empty(0, dtype=np.int64), invalid, names, file)


def _csv_block(
    batch: pa.RecordBatch | None,
    rows: np.ndarray,
    bad: list[tuple[int, str]],
    names: list[str],
    file: FileRef,
) -> pa.Table:
    uri, delimiter = file.uri, file.delimiter
    parts = [_quarantined(names, uri, [n for n, _ in bad], MALFORMED_ROW, [text for _, text in bad])]
    interleaved = bool(bad)
    if batch is not None and batch.num_rows:
        columns = batch.columns
        blank = np.logical_and.reduce([pc.equal(c, "").to_numpy(zero_copy_only=False) for c in columns])
        mangled = np.logical_or.reduce(
            [pc.match_substring(c, "\ufffd").to_numpy(zero_copy_only=False) for c in columns]
        )
        if mangled.any():
            picked = [c.filter(pa.array(mangled)).to_pylist() for c in columns]
            texts = [delimiter.join(v or "" for v in values) for values in zip(*picked, strict=True)]
            parts.append(_quarantined(names, uri, rows[mangled].tolist(), BAD_ENCODING, texts))
            interleaved = True
        keep = ~blank & ~mangled
        good = (
            pa.Table.from_batches([batch]).filter(pa.array(keep))
            if not keep.all()
            else pa.Table.from_batches([batch])
        )
        parts.append(with_bookkeeping(good, uri, rows[keep]))
    table = pa.concat_tables(parts)
    return table.take(pc.sort_indices(table[s.SOURCE_ROW])) if interleaved else table


def _quarantined(
    names: list[str], uri: str, rows: Sequence[int], reason: str, texts: Sequence[str]
) -> pa.Table:
    n = len(rows)
    table = pa.table({name: pa.nulls(n, pa.string()) for name in names})
    return with_bookkeeping(table, uri, np.asarray(rows, dtype=np.int64), reason, texts)


def with_bookkeeping(
    table: pa.Table, uri: str, rows: np.ndarray, reason: str | None = None, texts: Sequence[str] | None = None
) -> pa.Table:
    """``table`` with the four bookkeeping columns appended."""
    n = table.num_rows
    table = table.append_column(s.SOURCE_FILE, _constant(uri, n))
    table = table.append_column(s.SOURCE_ROW, pa.array(rows, pa.int64()))
    nulls = pa.nulls(n, pa.string())
    table = table.append_column(s.REASON, nulls if reason is None else _constant(reason, n))
    return table.append_column(s.RAW, nulls if texts is None else pa.array(texts, pa.string()))


def _constant(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([value])).cast(pa.string())


def rechunk(tables: Iterator[pa.Table], batch_rows: int) -> Iterator[pa.Table]:
    buffer: list[pa.Table] = []
    held = 0
    for table in tables:
        buffer.append(table)
        held += table.num_rows
        while held >= batch_rows:
            whole = pa.concat_tables(buffer)
            yield whole.slice(0, batch_rows)
            buffer, held = [whole.slice(batch_rows)], held - batch_rows
    if held:
        yield pa.concat_tables(buffer)


def iter_jsonl(
    file: FileRef, column_map: Mapping[str, str], batch_rows: int, encoding: str, required: Collection[str]
) -> Iterator[pd.DataFrame]:
    records: list[dict[str, object]] = []
    rows: list[int] = []
    reasons: list[str | None] = []
    raws: list[str | None] = []
    keys: dict[str, None] = {}  # every key seen so far, in order of first appearance
    names: list[str] | None = None
    with file.open_stream() as stream:
        for number, line in enumerate(_iter_lines(stream), start=1):
            record, reason, raw = _parse_json_line(line, encoding, number == 1)
            if record is None and reason is None:
                continue  # blank line
            keys.update(dict.fromkeys(record or ()))
            records.append(record or {})
            rows.append(number)
            reasons.append(reason)
            raws.append(raw)
            if len(records) >= batch_rows:
                names = _json_names(file, keys, column_map, required, reasons, names)
                yield _json_frame(file, records, keys, column_map, rows, reasons, raws)
                records, rows, reasons, raws = [], [], [], []
    if records:
        _json_names(file, keys, column_map, required, reasons, names)
        yield _json_frame(file, records, keys, column_map, rows, reasons, raws)


def _parse_json_line(
    line: bytes, encoding: str, first: bool
) -> tuple[dict[str, object] | None, str | None, str | None]:
    """(record, reason, raw): a record for a good line, a reason and raw text for a bad one."""
    try:
        text = line.decode("utf-8-sig" if first and codecs.lookup(encoding).name == "utf-8" else encoding)
    except UnicodeDecodeError:
        return None, BAD_ENCODING, line.decode(encoding, errors="replace")
    if not text.strip():
        return None, None, None
    try:
        value = json.loads(text)
    except ValueError:
        return None, MALFORMED_ROW, text
    if not isinstance(value, dict):
        return None, MALFORMED_ROW, text
    return value, None, None


def _json_names(
    file: FileRef,
    keys: Mapping[str, None],
    column_map: Mapping[str, str],
    required: Collection[str],
    reasons: list[str | None],
    names: list[str] | None,
) -> list[str] | None:
    """Check the keys once the first batch with good records is read (JSON has no header, so a
    required column is 'absent' when no good record of that batch has it); later keys are checked
    for clashes only."""
    if all(reason is not None for reason in reasons):
        return names
    return map_columns(file, list(keys), column_map, () if names is not None else required)


def _json_frame(
    file: FileRef,
    records: list[dict[str, object]],
    keys: Mapping[str, None],
    column_map: Mapping[str, str],
    rows: list[int],
    reasons: list[str | None],
    raws: list[str | None],
) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=list(keys), dtype=object)  # object: ints stay ints
    frame = frame.rename(columns=dict(column_map))
    frame[s.SOURCE_FILE] = pd.Series([file.uri] * len(frame), dtype="str")
    frame[s.SOURCE_ROW] = np.asarray(rows, dtype=np.int64)
    frame[s.REASON] = pd.Series(reasons, dtype="str")
    frame[s.RAW] = pd.Series(raws, dtype="str")
    return frame
