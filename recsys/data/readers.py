"""Streaming readers of raw event files: CSV, JSON lines and Parquet, from any pyarrow filesystem.

A *location* is a local path or a URI that :meth:`pyarrow.fs.FileSystem.from_uri` understands
(``file://``, ``s3://``, ``gs://``, ``hdfs://`` ...). :func:`list_files` expands it into
:class:`FileRef` objects; :func:`iter_batches` streams one file as pandas DataFrames of at most
``batch_rows`` rows, so memory stays bounded whatever the file size.

Batch contract
--------------
Data columns come first, renamed by ``column_map`` (source name -> schema name). CSV values are raw
strings (never typed or null-converted; typing is the validation step's job), JSON-lines values are
kept as parsed (object dtype: strings stay strings, numbers stay numbers), Parquet keeps its native
types. Then four bookkeeping columns:

================  ======  ===========================================================================
``_source_file``  str     the file as listed: an absolute path for a local path, else a URI with the
                          scheme it was given (``file:///d/e.csv``, ``s3://bucket/e.csv``)
``_source_row``   int64   1-based data row number in the file; header excluded; see below
``_reason``       str     null for good rows; ``malformed_row`` (wrong field count, not a JSON object)
                          or ``bad_encoding`` (bytes that do not decode in ``encoding``)
``_raw``          str     null for good rows; the offending row's text for quarantined rows
================  ======  ===========================================================================

On a row with a ``_reason`` every data column is null; nothing is ever dropped silently except blank
lines (every field empty), which still count in the numbering. Rows come in file order.

Row numbers: CSV rows are numbered as CSV *records* counted from the first line after the header
(blank lines count, so without quoted newlines row ``n`` is line ``n + 1``; a quoted field that spans
lines makes one record). They come from pyarrow's serial streaming reader, whose invalid-row handler
reports each malformed record's number; good rows take the remaining numbers in order. JSON-lines
rows are line numbers. Parquet rows are positions (1-based) in the file.

Decoding: bytes that do not decode in ``encoding`` become U+FFFD and the row is quarantined as
``bad_encoding`` (``_raw`` shows the row with the replacement characters); so a genuine U+FFFD in the
input is quarantined too. Empty files (0 bytes, or a header only) yield no batch.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys.data import schema as s
from recsys.data._text_formats import (
    BAD_ENCODING,
    BOOKKEEPING_COLUMNS,
    MALFORMED_ROW,
    iter_csv,
    iter_jsonl,
    map_columns,
    with_bookkeeping,
)
from recsys.errors import ConfigError, FormatError, SourceNotFoundError

__all__ = [
    "BAD_ENCODING",
    "BOOKKEEPING_COLUMNS",
    "MALFORMED_ROW",
    "FileRef",
    "iter_batches",
    "list_files",
    "read_table",
]

Format = Literal["csv", "jsonl", "parquet"]

_FORMATS: dict[str, tuple[Format, str]] = {
    ".csv": ("csv", ","),
    ".tsv": ("csv", "\t"),
    ".parquet": ("parquet", ","),
    ".pq": ("parquet", ","),
    ".jsonl": ("jsonl", ","),
    ".ndjson": ("jsonl", ","),
    ".json": ("jsonl", ","),
}
_FORMAT_ALIASES: dict[str, Format] = {
    "csv": "csv",
    "tsv": "csv",
    "parquet": "parquet",
    "jsonl": "jsonl",
    "json": "jsonl",
    "ndjson": "jsonl",
}
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


def _resolve(uri: str) -> tuple[pafs.FileSystem, str, str]:
    """``(filesystem, path, prefix)`` where ``prefix + path`` names a file the way ``uri`` does."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri)), ""
    scheme, rest = uri.split("://", 1)
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceNotFoundError(f"cannot open the location: {exc}", file=uri) from exc
    netloc = rest.split("/", 1)[0] if path.startswith("/") else ""  # s3/gs paths start with the bucket
    return filesystem, path, f"{scheme}://{netloc}"


@dataclass(frozen=True)
class FileRef:
    """One data file and how to read it.

    Parameters
    ----------
    uri:
        The name written to ``_source_file`` and used in error messages.
    path, filesystem:
        Where the bytes are.
    fmt:
        ``"csv"``, ``"jsonl"`` or ``"parquet"``.
    size:
        Size in bytes as listed (compressed size for compressed files).
    compression:
        Stream codec (``"gzip"``, ``"bz2"``, ``"zstd"``, ``"lz4"``) or ``None``.
    delimiter:
        CSV field delimiter (one character).
    column_names:
        For CSV files without a header line: the names of the columns. ``None`` reads the header.

    Examples
    --------
    >>> [ref.fmt for ref in list_files("events/")]  # doctest: +SKIP
    ['csv', 'parquet']
    """

    uri: str
    path: str
    fmt: Format
    filesystem: pafs.FileSystem = field(compare=False, repr=False)
    size: int = 0
    compression: str | None = None
    delimiter: str = ","
    column_names: tuple[str, ...] | None = None

    def open_stream(self) -> pa.NativeFile:
        """The file's bytes, decompressed."""
        return self.filesystem.open_input_stream(self.path, compression=self.compression)


def _file_ref(filesystem: pafs.FileSystem, path: str, prefix: str, size: int, fmt: str | None) -> FileRef:
    """A :class:`FileRef`, its format inferred from the extension unless ``fmt`` is given."""
    name = PurePosixPath(path).name.lower()
    suffixes = PurePosixPath(name).suffixes
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    data_suffix = suffixes[-2] if compression and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    inferred = _FORMATS.get(data_suffix)
    if fmt is not None:
        if fmt.lower() not in _FORMAT_ALIASES:
            raise ConfigError(f"unknown format {fmt!r}; use one of {sorted(_FORMAT_ALIASES)}")
        delimiter = "\t" if fmt.lower() == "tsv" else (inferred[1] if inferred else ",")
        inferred = (_FORMAT_ALIASES[fmt.lower()], delimiter)
    if inferred is None:
        raise FormatError(
            f"cannot tell the format of {name!r} from its extension; name it .csv, .tsv, .parquet or "
            ".jsonl (optionally plus .gz, .bz2, .zst) or pass the format explicitly",
            file=prefix + path,
        )
    kind, delimiter = inferred
    return FileRef(
        prefix + path, path, kind, filesystem, size, None if kind == "parquet" else compression, delimiter
    )


def list_files(uri: str, fmt: str | None = None, *, recursive: bool = True) -> list[FileRef]:
    """The data files at ``uri``: the file itself, or a directory's files (by default recursively),
    sorted by path.

    Files and folders whose name starts with ``.`` or ``_`` (``_SUCCESS``, ``.crc``, ``_temporary``)
    are skipped. Raises :class:`SourceNotFoundError` if nothing is there, :class:`FormatError` if a
    file's format cannot be told from its name and ``fmt`` is not given.
    """
    filesystem, path, prefix = _resolve(uri)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise SourceNotFoundError("no such file or directory; check the path", file=uri)
    if info.type != pafs.FileType.Directory:
        return [_file_ref(filesystem, path, prefix, info.size or 0, fmt)]
    root = path.rstrip("/")
    refs = []
    for entry in filesystem.get_file_info(pafs.FileSelector(path, recursive=recursive)):
        relative = entry.path[len(root) :].lstrip("/")
        if entry.type != pafs.FileType.File or any(part[:1] in "._" for part in relative.split("/")):
            continue
        refs.append(_file_ref(filesystem, entry.path, prefix, entry.size or 0, fmt))
    if not refs:
        raise SourceNotFoundError("the directory holds no data files", file=uri)
    return sorted(refs, key=lambda ref: ref.path)


def iter_batches(
    file: FileRef,
    *,
    column_map: Mapping[str, str] | None = None,
    batch_rows: int = 262_144,
    encoding: str = "utf-8",
    required: Collection[str] = s.REQUIRED_EVENT_COLUMNS,
) -> Iterator[pd.DataFrame]:
    """Stream ``file`` as DataFrames of at most ``batch_rows`` rows (see the module docstring).

    Raises :class:`SchemaError` (naming the file, the missing columns and the columns found) when a
    column of ``required`` is absent after renaming, :class:`FormatError` when the file cannot be
    read as its format at all.
    """
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, got {batch_rows}")
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise ConfigError(f"unknown encoding {encoding!r}; use e.g. 'utf-8' or 'latin-1'") from exc
    mapping = dict(column_map or {})
    if file.fmt == "parquet":
        return _iter_parquet(file, mapping, batch_rows, required)
    if file.fmt == "jsonl":
        return iter_jsonl(file, mapping, batch_rows, encoding, required)
    return iter_csv(file, mapping, batch_rows, encoding, required)


def read_table(
    uri: str,
    fmt: str | None = None,
    column_map: Mapping[str, str] | None = None,
    *,
    required: Collection[str] = (),
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a small table (items, users) whole, without bookkeeping columns.

    Strict: a malformed or undecodable row raises :class:`FormatError` naming its file and row.
    """
    frames: list[pd.DataFrame] = []
    for ref in list_files(uri, fmt):
        for batch in iter_batches(ref, column_map=column_map, encoding=encoding, required=required):
            bad = batch[s.REASON].notna().to_numpy()
            if bad.any():
                first = batch[bad].iloc[0]
                raise FormatError(
                    f"{int(bad.sum())} row(s) are {first[s.REASON]}, e.g. {first[s.RAW]!r}; fix the file",
                    file=ref.uri,
                    row=int(first[s.SOURCE_ROW]),
                )
            frames.append(batch.drop(columns=list(BOOKKEEPING_COLUMNS)))
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype="str") for name in required})
    return pd.concat(frames, ignore_index=True)


def _iter_parquet(
    file: FileRef, column_map: Mapping[str, str], batch_rows: int, required: Collection[str]
) -> Iterator[pd.DataFrame]:
    with file.filesystem.open_input_file(file.path) as source:
        if source.size() == 0:
            return
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FormatError(f"cannot read the file as Parquet: {exc}", file=file.uri) from exc
        names = map_columns(file, parquet.schema_arrow.names, column_map, required)
        next_row = 1
        for batch in parquet.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([batch]).rename_columns(names)
            rows = np.arange(next_row, next_row + table.num_rows, dtype=np.int64)
            next_row += table.num_rows
            yield with_bookkeeping(table, file.uri, rows).to_pandas()
