"""What an A/B/n experiment is: variants with traffic shares, overrides, attribution rules.

An :class:`Experiment` is validated once where it is configured (the Serve config's
``experiments`` list, or the replay job's file) and passed down; everything else reads it.

Examples
--------
>>> experiment = Experiment(
...     id="explore-2026",
...     variants=[
...         Variant(name="control", share=0.5),
...         Variant(name="explore", share=0.5, ranker={"interest_quota": 0.2}),
...     ],
... )
>>> experiment.control.name, experiment.shares()
('control', {'control': 0.5, 'explore': 0.5})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SHARE_TOLERANCE = 1e-6
_Config = TypeVar("_Config", bound=BaseModel)

CLICK_EVENTS = ("click", "like", "add_to_cart", "purchase", "share", "rating")
CONVERSION_EVENTS = ("like", "add_to_cart", "purchase")


class Variant(BaseModel):
    """One arm: a traffic share and what differs from the base serving configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    share: float = Field(gt=0.0, le=1.0, description="share of users; the variants' shares sum to 1")
    bundle: str | None = Field(
        default=None,
        description="another serving bundle (a model version) with the same item ids and dimension",
    )
    ranker: dict[str, Any] = Field(
        default_factory=dict, description="RankerConfig fields that override the base settings"
    )
    updater: dict[str, Any] = Field(
        default_factory=dict, description="UpdaterConfig fields that override the base settings"
    )

    @property
    def is_default(self) -> bool:
        """True when this arm serves exactly the base configuration."""
        return self.bundle is None and not self.ranker and not self.updater


class ThompsonConfig(BaseModel):
    """Thompson-sampling allocation: new users' shares follow each arm's chance of converting best.

    Every ``update_every_s`` seconds a replica recomputes the shares from the stored counters
    (Beta(1 + conversions, 1 + exposures - conversions) per arm, ``draws`` Monte-Carlo draws),
    floors each at ``min_share`` so no arm starves, and stores them; users already assigned keep
    their arm (the assignment is stored), only new users are split by the new shares.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    update_every_s: float = Field(default=60.0, ge=0.0)
    min_share: float = Field(default=0.05, ge=0.0, le=0.5)
    min_exposures: int = Field(default=100, ge=0, description="keep the configured shares until then")
    draws: int = Field(default=10_000, ge=100, le=1_000_000)
    seed: int = 0


class Experiment(BaseModel):
    """An A/B/n experiment; the first variant is the control the others are tested against."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    enabled: bool = Field(default=True, description="serve it; a disabled one keeps its report")
    variants: tuple[Variant, ...] = Field(min_length=2, max_length=16)
    attribution_window_s: float = Field(default=3600.0, gt=0.0)
    """Events that reference a response's ``request_id`` count only this long after it."""
    click_events: tuple[str, ...] = CLICK_EVENTS
    """Event types that count as a click-through on an exposure (at most one per exposure)."""
    conversion_events: tuple[str, ...] = CONVERSION_EVENTS
    """Event types that count as a conversion (at most one per exposure)."""
    thompson: ThompsonConfig = Field(default_factory=ThompsonConfig)

    @field_validator("variants")
    @classmethod
    def _valid_variants(cls, value: tuple[Variant, ...]) -> tuple[Variant, ...]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        total = math.fsum(v.share for v in value)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"variant shares must sum to 1, got {total:.6f} ({names})")
        return value

    @model_validator(mode="after")
    def _valid_events(self) -> Experiment:
        if not self.click_events and not self.conversion_events:
            raise ValueError("click_events and conversion_events cannot both be empty")
        return self

    @property
    def control(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"experiment {self.id!r} has no variant {name!r}")

    def shares(self) -> dict[str, float]:
        """The configured shares by variant name."""
        return {v.name: v.share for v in self.variants}


def apply_overrides(base: _Config, overrides: Mapping[str, Any]) -> _Config:
    """``base`` with ``overrides`` merged in (nested dicts merge, other values replace), validated.

    >>> from recsys.ranking import RankerConfig
    >>> apply_overrides(RankerConfig(), {"blend": {"embedding_weight": 0.9}}).blend.embedding_weight
    0.9
    """
    if not overrides:
        return base
    merged = _merge(base.model_dump(), dict(overrides))
    return type(base).model_validate(merged)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
