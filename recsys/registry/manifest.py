"""The manifest of a model version: what it is, what it was trained on, and how well it did.

``manifest.json`` sits at the top of every version directory and is written last, so a directory
without one is an incomplete write. Its keys::

    schema_version   layout of the version directory (:data:`SCHEMA_VERSION`)
    kind             "wayfinder.model"
    version          e.g. "v0003" (set by the registry)
    created_at       ISO-8601 UTC
    code             {"package": "0.1.0", "git_commit": "..." or null}
    data             {"fingerprint", "source", "schema": {"id_index", "features"}, counts...}
    config           the tuning and ensemble settings
    test, valid      metrics @10 of the champion ensemble
    families         {family: {"test": {...}, "params": {...}, ...}}
    ensemble         {"method": "blending" | "stacking", "weights" or "features": ..., ...}

:func:`check_compatible` refuses (with :class:`~recsys.errors.ArtifactError` naming the field and
both values) a manifest of another layout, another package release line (major.minor; the git
commit is recorded, not enforced) or another data schema (id index layout, feature artifact
format), and, when asked, a model trained on other data (fingerprint).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recsys.data.storage import Location, read_json
from recsys.errors import ArtifactError, SourceNotFoundError
from recsys.features.artifacts import FORMAT_VERSION as FEATURES_FORMAT

__all__ = [
    "DATA_SCHEMA",
    "KIND",
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "build_manifest",
    "check_compatible",
    "code_version",
    "data_fingerprint",
    "ensemble_sections",
    "metrics_table",
    "read_manifest",
]

SCHEMA_VERSION = 1
"""Layout of a model version directory; bumped whenever it changes."""
KIND = "wayfinder.model"
MANIFEST_FILE = "manifest.json"
DATA_SCHEMA: dict[str, int] = {"id_index": 1, "features": FEATURES_FORMAT}
"""Formats of the data artifacts a version carries (``ids/`` Parquet index, ``features/``)."""
_FINGERPRINTED = ("quality.json", "ids/users.parquet", "ids/items.parquet")


def _git_commit() -> str | None:
    if commit := os.environ.get("WAYFINDER_GIT_COMMIT"):
        return commit
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def code_version() -> dict[str, str | None]:
    """The package version and, when the code is a git checkout, its commit."""
    from recsys import __version__

    return {"package": __version__, "git_commit": _git_commit()}


def data_fingerprint(data: Location) -> str:
    """SHA-256 over the preprocessing's ``quality.json`` and id indices (names, sizes and bytes)."""
    digest = hashlib.sha256()
    for name in _FINGERPRINTED:
        location = data.child(*name.split("/"))
        if not location.exists():
            raise SourceNotFoundError(f"{location.uri} is missing: is {data.uri} a preprocessed dataset?")
        with location.fs.open_input_stream(location.path) as stream:
            payload = stream.read()
        digest.update(f"{name}:{len(payload)}:".encode())
        digest.update(payload)
    return digest.hexdigest()


def build_manifest(
    *,
    data: Location,
    dataset: Mapping[str, Any],
    config: Mapping[str, Any],
    test: Mapping[str, float],
    valid: Mapping[str, float],
    families: Mapping[str, Any],
    ensemble: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete manifest (the registry adds ``version``)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code": code_version(),
        "data": {**dataset, "source": data.uri, "fingerprint": data_fingerprint(data), "schema": DATA_SCHEMA},
        "config": dict(config),
        "test": dict(test),
        "valid": dict(valid),
        "families": dict(families),
        "ensemble": dict(ensemble),
        **(extra or {}),
    }


def _release_line(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def check_compatible(manifest: Mapping[str, Any], where: str, *, fingerprint: str | None = None) -> None:
    """Raise :class:`ArtifactError` unless this code can serve the version described by ``manifest``."""
    if manifest.get("kind") != KIND:
        raise ArtifactError(f"{where} is not a Wayfinder model manifest (kind {manifest.get('kind')!r})")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{where} has schema_version {manifest.get('schema_version')!r}; this code reads "
            f"{SCHEMA_VERSION}: retrain with `wayfinder tune` (or use the release that wrote it)"
        )
    package = str((manifest.get("code") or {}).get("package"))
    current = str(code_version()["package"])
    if _release_line(package) != _release_line(current):
        raise ArtifactError(
            f"{where} was written by wayfinder {package}; this code is {current} (release line "
            f"{_release_line(current)} expected): retrain with this release or serve it with {package}"
        )
    data = manifest.get("data") or {}
    for name, expected in DATA_SCHEMA.items():
        found = (data.get("schema") or {}).get(name)
        if found != expected:
            raise ArtifactError(
                f"{where} carries data schema {name}={found!r}; this code reads {name}={expected}: "
                "re-run preprocessing and tuning with this release"
            )
    if fingerprint is not None and data.get("fingerprint") != fingerprint:
        raise ArtifactError(
            f"{where} was trained on data with fingerprint {data.get('fingerprint')!r}, not the expected "
            f"{fingerprint!r}: load the version trained on this data or retrain"
        )


def read_manifest(location: Location) -> dict[str, Any]:
    """Read ``manifest.json`` of a version directory; :class:`ArtifactError` if absent."""
    try:
        manifest = read_json(location.child(MANIFEST_FILE))
    except SourceNotFoundError:
        raise ArtifactError(
            f"{location.uri} has no {MANIFEST_FILE}: not a model version, or its write did not finish"
        ) from None
    except ValueError as exc:
        raise ArtifactError(f"{location.child(MANIFEST_FILE).uri} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{location.child(MANIFEST_FILE).uri} is not a JSON object")
    return manifest


def ensemble_sections(
    report: Mapping[str, Any], tuned: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest's ``families`` and ``ensemble`` sections from a tuning run.

    Parameters
    ----------
    report : dict
        :attr:`recsys.ensemble.EnsembleResult.report`.
    tuned : dict
        Family -> its best trial (``params``, ``valid_ndcg@10``, ``valid_recall@10``, ``trials``).
    """
    families = {}
    for family, fitted in report["families"].items():
        best = tuned.get(family, {})
        families[family] = {
            "params": fitted["params"],
            "test": fitted["test"],
            "valid": {"ndcg@10": best.get("valid_ndcg@10"), "recall@10": best.get("valid_recall@10")},
            "trials": best.get("trials"),
            "valid_signals": fitted["valid_signals"],
            "test_signals": fitted["test_signals"],
        }
    method = report["method"]
    chosen = report["methods"][method]
    details = (
        {"weights": chosen["weights"]}
        if method == "blending"
        else {k: chosen[k] for k in ("features", "coefficients", "objective")}
    )
    ensemble = {
        "method": method,
        **details,
        "members": report["members"],
        "signals": report["signals"],
        "top_n": report["top_n"],
        "candidates": report["candidates"],
        "valid": report["valid"],
        "methods": {name: {"valid": m["valid"], "test": m["test"]} for name, m in report["methods"].items()},
    }
    return families, ensemble


def metrics_table(manifest: Mapping[str, Any]) -> str:
    """Test NDCG@10 and Recall@10 of every family and ensemble method of a manifest, as text."""
    rows = [(family, row["test"]) for family, row in manifest["families"].items()]
    rows += [(f"ensemble {name}", row["test"]) for name, row in manifest["ensemble"]["methods"].items()]
    lines = [f"  {'model':<20}{'test ndcg@10':>13}{'recall@10':>11}"]
    for name, test in sorted(rows, key=lambda pair: -pair[1]["ndcg@10"]):
        mark = "  <- champion" if name == f"ensemble {manifest['ensemble']['method']}" else ""
        lines.append(f"  {name:<20}{test['ndcg@10']:>13.4f}{test['recall@10']:>11.4f}{mark}")
    return "\n".join(lines)
