"""Versioned serving bundles with an atomically moved ``champion`` pointer.

Layout under the root (e.g. ``out/bundles``), the same as :class:`recsys.registry.Registry`'s, whose
version naming, listing and pointer logic this class inherits::

    versions/v0001/   a serving bundle (bundle.json, space/, ids/, ...) plus manifest.json
    versions/v0002/
    champion/manifest.json   the pointer: a copy of the champion's manifest, replaced atomically

A version is trained into a hidden staging directory and renamed into place with its
``manifest.json`` already written, so a listed version is always complete. ``manifest.json``::

    kind        "wayfinder.bundle"
    version     "v0002"
    created_at  ISO-8601 UTC
    parent      the champion it was trained against (null for the first)
    data        {"source", "fingerprint", "log_seq" (last event-log sequence folded in), ...}
    bundle      the bundle's own bundle.json (space and scorer settings, counts)
    metrics     {"challenger": {...}, "champion": {...}} on the retraining protocol, when evaluated

Examples
--------
>>> registry = BundleRegistry("out/bundles")  # doctest: +SKIP
>>> version = registry.publish_bundle(lambda d: train_bundle("data", d), {})  # doctest: +SKIP
>>> registry.set_champion(version); registry.bundle_dir()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from recsys.errors import ArtifactError, ConfigError
from recsys.registry import CHAMPION, MANIFEST_FILE, Registry

__all__ = ["BUNDLE_KIND", "BundleRegistry", "resolve_serving_bundle"]

BUNDLE_KIND = "wayfinder.bundle"


class BundleRegistry(Registry):
    """Serving-bundle versions on the local filesystem (bundles are read by local paths).

    Parameters
    ----------
    root : str or Path
        Registry directory, e.g. ``out/bundles``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).resolve()
        super().__init__(str(self.path))
        if not isinstance(self.root.fs, pafs.LocalFileSystem):
            raise ConfigError(f"bundle registry {root} must be a local directory")

    def bundle_dir(self, ref: str = CHAMPION) -> Path:
        """The directory of a version (or of the champion)."""
        version = self.resolve(ref)
        directory = self.path / "versions" / version
        if not (directory / MANIFEST_FILE).exists():
            raise ArtifactError(f"bundle version {version!r} is not in {self.path}; have {self.versions()}")
        return directory

    def publish_bundle(self, build: Callable[[Path], dict[str, Any]], manifest: dict[str, Any]) -> str:
        """Build a bundle into a staging directory, then publish it as the next version.

        ``build(directory)`` writes the bundle and returns its ``bundle.json`` contents; the
        manifest (``manifest`` plus kind, version, created_at, bundle) is written before the rename.
        """
        versions = self.path / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        staging = versions / f".staging-{uuid.uuid4().hex}"
        try:
            bundle = build(staging)
            for _ in range(100):  # another publisher may take the same number: take the next one
                version = self._next_version()
                document = {
                    **manifest,
                    "kind": BUNDLE_KIND,
                    "version": version,
                    "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "bundle": bundle,
                }
                (staging / MANIFEST_FILE).write_text(
                    json.dumps(document, indent=2, sort_keys=True, default=str)
                )
                try:
                    os.rename(staging, versions / version)
                except OSError:
                    if (versions / version).exists():
                        continue
                    raise
                return version
            raise ArtifactError(f"could not find a free version name in {versions}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def adopt(self, bundle: str | os.PathLike[str], manifest: dict[str, Any]) -> str:
        """Publish a copy of an existing bundle directory (e.g. the pipeline's ``out/bundle``)."""
        source = Path(bundle)
        if not (source / "bundle.json").exists():
            raise ArtifactError(f"{source} is not a serving bundle: bundle.json is missing")

        def copy(target: Path) -> dict[str, Any]:
            shutil.copytree(source, target)
            loaded: dict[str, Any] = json.loads((target / "bundle.json").read_text())
            return loaded

        return self.publish_bundle(copy, manifest)


def resolve_serving_bundle(
    path: str | os.PathLike[str], model_version: str | None
) -> tuple[Path, str | None]:
    """The bundle directory to serve and its version name.

    ``path`` is either a plain bundle (``bundle.json`` inside; unversioned, ``model_version`` must be
    ``None``) or a :class:`BundleRegistry` root, where ``model_version`` names a version or
    ``"champion"`` (the default).
    """
    root = Path(path)
    if (root / "bundle.json").exists():
        if model_version is not None:
            raise ConfigError(
                f"model_version={model_version!r} needs a bundle registry (e.g. out/bundles), but "
                f"{root} is a single bundle"
            )
        return root, None
    if not (root / "versions").is_dir():
        raise ArtifactError(
            f"{root} is neither a serving bundle (bundle.json) nor a bundle registry (versions/): run "
            "wayfinder pipeline or wayfinder retrain"
        )
    registry = BundleRegistry(root)
    version = registry.resolve(model_version or CHAMPION)
    return registry.bundle_dir(version), version
