"""Writing tables as Parquet, CSV or JSON lines, with room for deliberately broken fields and lines.

CSV and JSON lines are built column-wise with Arrow compute kernels (no Python loop over rows):
strings are quoted, timestamps are ISO-8601 UTC with milliseconds, list columns are ``|``-joined
strings, and nulls are empty CSV fields / JSON ``null``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.data.storage import Location
from recsys.data.synthetic._strings import iso_millis
from recsys.data.synthetic.config import Format

FieldOverrides = dict[str, tuple[np.ndarray, list[str]]]
"""Column name -> (row positions, raw field text written verbatim at those rows)."""

_BATCH_ROWS = 131_072
_NO_DICTIONARY = frozenset(
    {"event_id", "session_id", "timestamp", "text", "title", "created_at", "signup_at"}
)
"""Columns with (nearly) unique values: dictionary-encoding them costs time and saves nothing."""


def write_table(
    location: Location,
    table: pa.Table,
    fmt: Format,
    *,
    overrides: FieldOverrides | None = None,
    truncate: np.ndarray | None = None,
) -> None:
    """Write ``table`` to the file at ``location`` (its directory must exist).

    ``overrides`` replace the rendered text of single fields and ``truncate`` (row positions) cuts
    lines in half; both apply to CSV and JSON lines only.
    """
    if fmt == "parquet":
        pq.write_table(table, location.path, filesystem=location.fs, **_parquet_options(table.schema))
        return
    with location.fs.open_output_stream(location.path) as stream:
        if fmt == "csv":
            stream.write(",".join(table.column_names).encode("ascii") + b"\n")
        for start in range(0, table.num_rows, _BATCH_ROWS):
            stop = min(start + _BATCH_ROWS, table.num_rows)
            batch_overrides = {
                name: _in_range(rows, texts, start, stop) for name, (rows, texts) in (overrides or {}).items()
            }
            cut = None if truncate is None else truncate[(truncate >= start) & (truncate < stop)] - start
            lines = _lines(table.slice(start, stop - start), fmt, batch_overrides, cut)
            stream.write(_payload(lines))


def write_batches(location: Location, batches: Iterable[pa.Table], schema: pa.Schema, fmt: Format) -> None:
    """Write tables one after the other into one file, holding one batch at a time."""
    if fmt == "parquet":
        options = _parquet_options(schema)
        with pq.ParquetWriter(location.path, schema, filesystem=location.fs, **options) as writer:
            for batch in batches:
                writer.write_table(batch)
        return
    with location.fs.open_output_stream(location.path) as stream:
        if fmt == "csv":
            stream.write(",".join(schema.names).encode("ascii") + b"\n")
        for batch in batches:
            for start in range(0, batch.num_rows, _BATCH_ROWS):
                stream.write(_payload(_lines(batch.slice(start, _BATCH_ROWS), fmt, {}, None)))


def _parquet_options(schema: pa.Schema) -> dict[str, Any]:
    return {
        "compression": "snappy",
        "use_dictionary": [name for name in schema.names if name not in _NO_DICTIONARY],
    }


def _in_range(rows: np.ndarray, texts: list[str], start: int, stop: int) -> tuple[np.ndarray, list[str]]:
    inside = np.flatnonzero((rows >= start) & (rows < stop))
    return rows[inside] - start, [texts[i] for i in inside]


def _lines(table: pa.Table, fmt: Format, overrides: FieldOverrides, truncate: np.ndarray | None) -> pa.Array:
    """One rendered line (ending in a newline) per row."""
    pieces: list[pa.Array | str] = []
    for index, name in enumerate(table.column_names):
        field = _field_text(table.column(name).combine_chunks(), fmt)
        rows, texts = overrides.get(name, (np.empty(0, dtype=np.int64), []))
        if len(rows):
            mask = np.zeros(len(field), dtype=bool)
            mask[rows] = True
            order = np.argsort(rows, kind="stable")
            field = pc.replace_with_mask(field, pa.array(mask), pa.array([texts[i] for i in order]))
        if fmt == "csv":
            pieces.extend([field, "," if index < table.num_columns - 1 else ""])
        else:
            pieces.extend([("{" if index == 0 else ",") + f'"{name}":', field])
    pieces.append("\n" if fmt == "csv" else "}\n")
    lines = pc.binary_join_element_wise(*pieces, "")
    if truncate is not None and len(truncate):
        mask = np.zeros(len(lines), dtype=bool)
        mask[truncate] = True
        broken = [line[: len(line) // 2] + "\n" for line in lines.filter(pa.array(mask)).to_pylist()]
        lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(broken))
    return lines


def _field_text(column: pa.Array, fmt: Format) -> pa.Array:
    """Every value of ``column`` as the text of one CSV field / JSON value (nulls included)."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        millis = column.cast(pa.int64()).fill_null(0).to_numpy()
        iso = pc.if_else(column.is_valid(), iso_millis(millis), pa.scalar(None, pa.string()))
        text: pa.Array = _quote(iso)
    elif pa.types.is_list(kind):
        text = _quote(_escape(pc.binary_join(column, "|"), fmt))
    elif pa.types.is_string(kind):
        text = _quote(_escape(column, fmt))
    elif pa.types.is_floating(kind) or pa.types.is_integer(kind):
        text = column.cast(pa.string())
    else:
        raise TypeError(f"no text rendering for column type {kind}")
    return text.fill_null("" if fmt == "csv" else "null")


def _escape(column: pa.Array, fmt: Format) -> pa.Array:
    if fmt == "csv":
        return pc.replace_substring(column, '"', '""')
    return pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')


def _quote(column: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', column, '"', "")


def _payload(lines: pa.Array) -> pa.Buffer:
    """The concatenated bytes of a string array without nulls."""
    compact = pa.concat_arrays([lines]) if lines.offset else lines
    offsets = np.frombuffer(compact.buffers()[1], dtype=np.int32, count=len(compact) + 1)
    data = compact.buffers()[2]
    return data[int(offsets[0]) : int(offsets[-1])]
