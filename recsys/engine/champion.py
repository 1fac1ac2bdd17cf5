"""Serving-bundle settings taken from the tuned champion of the model registry.

The champion (``wayfinder tune``) is an ensemble whose members are tuned families. The serving
bundle needs one family with item embeddings for the user space (ALS by default) and, optionally,
item-item scorers; :func:`bundle_settings` takes each one's hyperparameters from the champion's
manifest when the champion tuned that family, and keeps the bundle's defaults otherwise. The
chosen settings and the champion's version are recorded in the bundle's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys.errors import ArtifactError


@dataclass(frozen=True)
class BundleSettings:
    """What :func:`recsys.engine.train_bundle` should fit, and where each setting came from."""

    space: dict[str, Any]
    scorer: dict[str, Any] | None
    source: dict[str, str] = field(default_factory=dict)


def _tuned(manifest: Mapping[str, Any], family: str) -> dict[str, Any] | None:
    families = manifest.get("families")
    if not isinstance(families, Mapping):
        raise ArtifactError("champion manifest has no 'families' section (was it written by wayfinder tune?)")
    entry = families.get(family)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("params"), Mapping):
        return None
    return dict(entry["params"])


def bundle_settings(
    manifest: Mapping[str, Any],
    *,
    space: Mapping[str, Any],
    scorer: Mapping[str, Any] | None,
) -> BundleSettings:
    """The bundle's space and scorer settings with the champion's tuned hyperparameters applied.

    ``space`` and ``scorer`` are the defaults (``{"family": ..., **params}``); a family the champion
    tuned takes the tuned parameters in place of the defaults' (the family stays the same).
    """
    version = str(manifest.get("version", "?"))
    chosen: dict[str, dict[str, Any] | None] = {
        "space": dict(space),
        "scorer": dict(scorer) if scorer else None,
    }
    source: dict[str, str] = {}
    for role, default in list(chosen.items()):
        if default is None:
            continue
        family = str(default["family"])
        tuned = _tuned(manifest, family)
        if tuned is None:
            source[role] = "default"
            continue
        chosen[role] = {"family": family, **tuned}
        source[role] = f"champion {version}"
    space_settings = chosen["space"]
    assert space_settings is not None  # the space always has defaults
    return BundleSettings(space=space_settings, scorer=chosen["scorer"], source=source)
