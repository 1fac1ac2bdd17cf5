"""Serving-bundle settings from the tuned champion's manifest."""

from __future__ import annotations

import pytest

from recsys.engine.bundle import DEFAULT_SCORER, DEFAULT_SPACE
from recsys.engine.champion import bundle_settings
from recsys.errors import ArtifactError

MANIFEST = {
    "version": "v0003",
    "families": {
        "als": {"params": {"factors": 32, "regularization": 0.002, "iterations": 12, "random_state": 0}},
        "ease": {"params": {"l2": 228.9}},
        "bpr": {"params": {"factors": 64}},
    },
}


def test_tuned_families_take_the_champion_parameters() -> None:
    settings = bundle_settings(MANIFEST, space=DEFAULT_SPACE, scorer=DEFAULT_SCORER)
    assert settings.space == {
        "family": "als",
        "factors": 32,
        "regularization": 0.002,
        "iterations": 12,
        "random_state": 0,
    }
    assert settings.scorer == {"family": "ease", "l2": 228.9}
    assert settings.source == {"space": "champion v0003", "scorer": "champion v0003"}


def test_untuned_families_keep_the_defaults() -> None:
    manifest = {"version": "v0001", "families": {"itemknn": {"params": {"k": 50}}}}
    settings = bundle_settings(manifest, space=DEFAULT_SPACE, scorer=None)
    assert settings.space == DEFAULT_SPACE and settings.scorer is None
    assert settings.source == {"space": "default"}


def test_a_manifest_without_families_is_refused() -> None:
    with pytest.raises(ArtifactError, match="families"):
        bundle_settings({"version": "v1"}, space=DEFAULT_SPACE, scorer=DEFAULT_SCORER)
