"""Reading and writing artifacts on any pyarrow filesystem (local, s3://, gs://, hdfs://).

A *location* is a local path or a URI. :func:`resolve` turns it into ``(filesystem, path)`` once; the
helpers below take that pair so that every write of a job goes through the same filesystem object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys.errors import SourceNotFoundError


@dataclass(frozen=True)
class Location:
    """A directory or file on a pyarrow filesystem.

    Examples
    --------
    >>> loc = Location.parse("/tmp/out")
    >>> loc.child("items").path
    '/tmp/out/items'
    """

    fs: pafs.FileSystem
    path: str

    @classmethod
    def parse(cls, location: str) -> Location:
        """Resolve a local path or a filesystem URI."""
        if "://" in location:
            fs, path = pafs.FileSystem.from_uri(location)
            return cls(fs, path.rstrip("/") or "/")
        return cls(pafs.LocalFileSystem(), str(Path(location).expanduser().absolute()))

    @property
    def uri(self) -> str:
        """A string another process can :meth:`parse` back to this location."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            return self.path
        return f"{self.fs.type_name}://{self.path}"

    def child(self, *parts: str) -> Location:
        return Location(self.fs, "/".join([self.path.rstrip("/"), *parts]))

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def mkdir(self) -> Location:
        self.fs.create_dir(self.path, recursive=True)
        return self

    def remove(self) -> None:
        """Delete this directory or file if it exists."""
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)

    def files(self, suffix: str = "") -> list[Location]:
        """Data files below this directory (recursive, sorted, hidden and ``_`` files skipped)."""
        if not self.is_dir():
            return []
        selector = pafs.FileSelector(self.path, recursive=True)
        found = []
        for info in self.fs.get_file_info(selector):
            name = info.base_name
            if info.type != pafs.FileType.File or name.startswith((".", "_")) or not name.endswith(suffix):
                continue
            found.append(Location(self.fs, info.path))
        return sorted(found, key=lambda loc: loc.path)


def write_frame(frame: pd.DataFrame, location: Location, schema: pa.Schema | None = None) -> None:
    """Write a DataFrame as one Parquet file (parent directories created)."""
    parent = location.path.rsplit("/", 1)[0]
    location.fs.create_dir(parent, recursive=True)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, location.path, filesystem=location.fs, compression="zstd")


def read_frames(location: Location, columns: list[str] | None = None) -> pd.DataFrame:
    """Read every Parquet file below a directory (or one file) into one DataFrame."""
    files = (
        [location]
        if location.fs.get_file_info(location.path).type == pafs.FileType.File
        else (location.files(".parquet"))
    )
    if not files:
        raise SourceNotFoundError(f"no Parquet files found at {location.uri}")
    tables = [pq.read_table(f.path, filesystem=f.fs, columns=columns) for f in files]
    return pa.concat_tables(tables, promote_options="permissive").combine_chunks().to_pandas()


def write_json(payload: Any, location: Location) -> None:
    parent = location.path.rsplit("/", 1)[0]
    location.fs.create_dir(parent, recursive=True)
    with location.fs.open_output_stream(location.path) as stream:
        stream.write(json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8"))


def read_json(location: Location) -> Any:
    if not location.exists():
        raise SourceNotFoundError(f"{location.uri} does not exist")
    with location.fs.open_input_stream(location.path) as stream:
        return json.loads(stream.read().decode("utf-8"))


def copy_directory(local: Path, target: Location) -> None:
    """Copy the files of a local directory (not recursive) to ``target`` on any filesystem."""
    target.mkdir()
    for path in sorted(local.iterdir()):
        if path.is_file():
            with target.fs.open_output_stream(target.child(path.name).path) as stream:
                stream.write(path.read_bytes())
