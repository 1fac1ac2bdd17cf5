"""A model registry on any pyarrow filesystem, with a ``champion`` pointer.

Layout under the registry root::

    versions/v0001/ ...   one directory per published version (recsys.registry.artifact)
    champion/manifest.json  the pointer: a copy of the champion's manifest (its ``version`` names it)

Moving the champion rewrites one small file. On a local filesystem it is written to a temporary
name in the same directory and renamed over the old one, so a reader sees the old champion or the
new one, never a partial file; on object stores (S3, GCS) a single object upload is already
all-or-nothing.

Examples
--------
>>> # registry = Registry("s3://bucket/models")
>>> # version = registry.publish(model, manifest, data=Location.parse("out/data"), item_ids=ids, item_idx=idx)
>>> # served = registry.load("champion"); served.model.recommend(rows, k=10)
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow.fs as pafs

from recsys.data.storage import Location
from recsys.ensemble.model import EnsembleRecommender
from recsys.errors import ArtifactError
from recsys.registry.artifact import ModelVersion, read_version, write_version
from recsys.registry.manifest import MANIFEST_FILE, read_manifest

__all__ = ["CHAMPION", "Registry"]

CHAMPION = "champion"
_VERSION = re.compile(r"^v(\d{4,})$")


def _write_atomically(location: Location, payload: bytes) -> None:
    parent = location.path.rsplit("/", 1)[0]
    location.fs.create_dir(parent, recursive=True)
    if not isinstance(location.fs, pafs.LocalFileSystem):
        with location.fs.open_output_stream(location.path) as stream:
            stream.write(payload)
        return
    temporary = f"{parent}/.{location.path.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
    try:
        with location.fs.open_output_stream(temporary) as stream:
            stream.write(payload)
        location.fs.move(temporary, location.path)
    finally:
        if location.fs.get_file_info(temporary).type != pafs.FileType.NotFound:
            location.fs.delete_file(temporary)


class Registry:
    """Versions of the champion model under one root (local path or filesystem URI).

    Parameters
    ----------
    root : str or Location
        Registry directory, e.g. ``out/models``, ``file:///srv/models`` or ``s3://bucket/models``.
    """

    def __init__(self, root: str | Location) -> None:
        self.root = root if isinstance(root, Location) else Location.parse(str(root))

    def _version_dir(self, version: str) -> Location:
        if not _VERSION.match(version):
            raise ArtifactError(f"{version!r} is not a version name (v0001, v0002, ...) nor {CHAMPION!r}")
        return self.root.child("versions", version)

    def versions(self) -> list[str]:
        """Published versions (those with a manifest), oldest first."""
        base = self.root.child("versions")
        if not base.is_dir():
            return []
        infos = base.fs.get_file_info(pafs.FileSelector(base.path))
        names = [
            i.base_name for i in infos if i.type == pafs.FileType.Directory and _VERSION.match(i.base_name)
        ]
        complete = [n for n in names if base.child(n, MANIFEST_FILE).exists()]
        return sorted(complete, key=lambda n: int(n[1:]))

    def _next_version(self) -> str:
        base = self.root.child("versions")
        taken = [0]
        if base.is_dir():
            for info in base.fs.get_file_info(pafs.FileSelector(base.path)):
                if match := _VERSION.match(info.base_name):
                    taken.append(int(match.group(1)))
        return f"v{max(taken) + 1:04d}"

    def publish(
        self,
        model: EnsembleRecommender,
        manifest: dict[str, Any],
        *,
        data: Location,
        item_ids: Sequence[str],
        item_idx: Sequence[int],
        promote: bool = True,
    ) -> str:
        """Write a new version (numbered after the last one); make it the champion if ``promote``."""
        version = self._next_version()
        write_version(
            self._version_dir(version),
            model,
            {**manifest, "version": version},
            data=data,
            item_ids=item_ids,
            item_idx=item_idx,
        )
        if promote:
            self.set_champion(version)
        return version

    def set_champion(self, version: str) -> None:
        """Point ``champion`` at a published version, atomically."""
        manifest = read_manifest(self._version_dir(version))
        payload = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode("utf-8")
        _write_atomically(self.root.child(CHAMPION, MANIFEST_FILE), payload)

    def champion(self) -> str | None:
        """The champion's version name, or ``None`` before any promotion."""
        pointer = self.root.child(CHAMPION, MANIFEST_FILE)
        if not pointer.exists():
            return None
        return str(read_manifest(self.root.child(CHAMPION)).get("version"))

    def resolve(self, ref: str = CHAMPION) -> str:
        """A version name for ``ref`` (a version, or ``"champion"``)."""
        if ref != CHAMPION:
            self._version_dir(ref)
            return ref
        version = self.champion()
        if version is None:
            raise ArtifactError(f"registry {self.root.uri} has no champion yet; publish a version first")
        return version

    def manifest(self, ref: str = CHAMPION) -> dict[str, Any]:
        """The manifest of a version or of the champion."""
        return read_manifest(self._version_dir(self.resolve(ref)))

    def load(self, ref: str = CHAMPION, *, fingerprint: str | None = None) -> ModelVersion:
        """Load a version (or the champion), refusing one this code or the given data cannot serve."""
        version = self.resolve(ref)
        location = self._version_dir(version)
        if not location.child(MANIFEST_FILE).exists():
            raise ArtifactError(
                f"version {version!r} is not in registry {self.root.uri}; have {self.versions()}"
            )
        return read_version(location, fingerprint=fingerprint)
