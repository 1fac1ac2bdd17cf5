"""Per-family hyperparameter search spaces: the validated form of ``configs/search_spaces.yaml``.

The tuning job reads the YAML file (it owns the I/O) and hands the parsed mapping to
:meth:`SearchSpaces.model_validate`. Each family has a trial budget, an optional *iterative* axis
(an epoch count trained in chunks so that an early-stopping scheduler can cut weak trials) and one
:class:`ParamSpec` per constructor parameter. Grid and random points are drawn here with numpy, so
they are reproducible without Ray; the Bayesian search turns the same specs into Optuna suggestions.

Examples
--------
>>> spaces = SearchSpaces.model_validate({"families": {"ease": {
...     "budget": 3, "params": {"l2": {"loguniform": [10, 1000], "grid": [100, 250, 500]}}}}})
>>> spaces.grid_points("ease", seed=0)
[{'l2': 100}, {'l2': 250}, {'l2': 500}]
>>> [round(p["l2"]) for p in spaces.random_points("ease", seed=0)]
[237, 26, 17]
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.errors import ConfigError

__all__ = ["KINDS", "FamilySpace", "IterativeSpec", "ParamSpec", "SearchSpaces", "SmokeTest", "trial_params"]

KINDS: tuple[str, ...] = ("choice", "uniform", "loguniform", "randint", "lograndint")
"""Sampling distributions a parameter can take (``randint`` draws from ``[low, high)``)."""


class ParamSpec(BaseModel):
    """One hyperparameter: a constant or a distribution, plus the values grid search tries.

    Written in YAML as a plain value (a constant) or a one-key mapping such as
    ``{loguniform: [1, 1000]}`` or ``{choice: [32, 64]}``, optionally with ``grid: [...]``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "constant"
    values: list[Any] = Field(default_factory=list)
    grid: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "kind" in raw:
            return raw if isinstance(raw, dict) else {"kind": "constant", "values": [raw]}
        kinds = [key for key in raw if key in KINDS]
        unknown = sorted(set(raw) - {*KINDS, "grid"})
        if unknown or len(kinds) != 1:
            raise ValueError(
                f"a parameter is a constant or one of {list(KINDS)} (plus an optional 'grid'); got {raw}"
            )
        return {"kind": kinds[0], "values": raw[kinds[0]], "grid": raw.get("grid")}

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.kind == "choice" and not self.values:
            raise ValueError("choice needs at least one value")
        if self.kind in KINDS[1:]:
            if len(self.values) != 2 or not all(isinstance(v, (int, float)) for v in self.values):
                raise ValueError(f"{self.kind} needs [low, high], got {self.values}")
            low, high = self.values
            if not low < high or (self.kind.startswith("log") and low <= 0):
                raise ValueError(
                    f"{self.kind} needs 0 < low < high (low < high if not log), got {self.values}"
                )
        return self

    def grid_values(self) -> list[Any]:
        """Values grid search tries: ``grid`` if given, else every choice, else the constant."""
        if self.grid is not None:
            return list(self.grid)
        if self.kind in ("constant", "choice"):
            return list(self.values)
        raise ConfigError(f"a {self.kind} range needs a 'grid: [...]' list for grid search")

    def sample(self, rng: np.random.Generator) -> Any:
        """One random draw (a constant returns itself)."""
        if self.kind == "constant":
            return self.values[0]
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        low, high = (float(v) for v in self.values)
        if self.kind == "uniform":
            return float(rng.uniform(low, high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if self.kind == "randint":
            return int(rng.integers(int(low), int(high)))
        return int(math.exp(rng.uniform(math.log(low), math.log(high))))  # lograndint


class IterativeSpec(BaseModel):
    """An epoch-like parameter trained in chunks: ``every`` more epochs per report, up to ``max``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    param: str
    max: int = Field(ge=1)
    every: int = Field(default=1, ge=1)


class FamilySpace(BaseModel):
    """Search space and trial budget of one model family."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: int = Field(default=4, ge=1)
    iterative: IterativeSpec | None = None
    params: dict[str, ParamSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> FamilySpace:
        if self.iterative is not None and self.iterative.param in self.params:
            raise ValueError(
                f"{self.iterative.param!r} is the iterative parameter: set its maximum in 'iterative.max', "
                "not under params"
            )
        return self


class SmokeTest(BaseModel):
    """What ``--smoke-test`` keeps: a few families, a tiny budget and short training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    families: list[str] = Field(default_factory=lambda: ["popularity", "itemknn", "puresvd", "als"])
    budget: int = Field(default=2, ge=1)
    max_epochs: int = Field(default=4, ge=1)


class SearchSpaces(BaseModel):
    """Every family's :class:`FamilySpace`, plus the smoke-test subset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    families: dict[str, FamilySpace]
    smoke_test: SmokeTest = Field(default_factory=SmokeTest)

    def space(self, family: str) -> FamilySpace:
        """The space of ``family``; :class:`ConfigError` naming the known ones if absent."""
        try:
            return self.families[family]
        except KeyError:
            raise ConfigError(
                f"family {family!r} has no search space; spaces exist for {sorted(self.families)}"
            ) from None

    def select(self, families: list[str]) -> SearchSpaces:
        """A copy keeping only ``families`` (in that order)."""
        return self.model_copy(update={"families": {name: self.space(name) for name in families}})

    def smoke(self) -> SearchSpaces:
        """The smoke-test variant: its families, its budget, iterative maxima capped."""
        return self.select(self.smoke_test.families).capped(
            self.smoke_test.budget, max_epochs=self.smoke_test.max_epochs
        )

    def capped(self, budget: int, *, max_epochs: int | None = None) -> SearchSpaces:
        """A copy where no family runs more than ``budget`` trials (and, if given, no iterative
        family trains more than ``max_epochs`` epochs): a short tuning run of the same spaces."""
        if budget < 1:
            raise ConfigError(f"budget must be at least 1 trial per family, got {budget}")
        families = {}
        for name, space in self.families.items():
            iterative = space.iterative
            if iterative is not None and max_epochs is not None:
                cap = min(iterative.max, max_epochs)
                iterative = iterative.model_copy(update={"max": cap, "every": min(iterative.every, cap)})
            families[name] = space.model_copy(
                update={"budget": min(space.budget, budget), "iterative": iterative}
            )
        return self.model_copy(update={"families": families})

    def grid_points(self, family: str, seed: int) -> list[dict[str, Any]]:
        """The family's grid (cartesian product), a seeded subset of ``budget`` points if larger."""
        space = self.space(family)
        names = list(space.params)
        try:
            axes = [space.params[name].grid_values() for name in names]
        except ConfigError as exc:
            raise ConfigError(f"family {family!r}: {exc}") from None
        points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
        if len(points) > space.budget:
            keep = np.sort(np.random.default_rng([seed, 17]).choice(len(points), space.budget, replace=False))
            points = [points[int(i)] for i in keep]
        return points

    def random_points(self, family: str, seed: int) -> list[dict[str, Any]]:
        """``budget`` independent random draws (seeded per family)."""
        space = self.space(family)
        rng = np.random.default_rng([seed, *family.encode()])
        return [{name: spec.sample(rng) for name, spec in space.params.items()} for _ in range(space.budget)]

    def schedule(self) -> list[str]:
        """Family of each trial: families interleaved round by round, each up to its budget."""
        rounds = max((space.budget for space in self.families.values()), default=0)
        return [f for r in range(rounds) for f, space in self.families.items() if space.budget > r]

    def trial_points(self, search: str, seed: int) -> list[dict[str, Any]]:
        """Grid or random trials as ``{"family": f, f: params}``, families interleaved."""
        if search not in ("grid", "random"):
            raise ConfigError(f"trial points exist for grid and random search, not {search!r}")
        draw = self.grid_points if search == "grid" else self.random_points
        per_family = {family: draw(family, seed) for family in self.families}
        rounds = max((len(points) for points in per_family.values()), default=0)
        return [{"family": f, f: p[r]} for r in range(rounds) for f, p in per_family.items() if len(p) > r]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define-by-run space for Optuna: :meth:`schedule` fixes the family, the sampler its parameters.

        Parameter names are ``trial/<family>/<name>`` (TPE keeps each family's observations apart);
        the returned constants carry ``trial/family`` and the constant parameters. Choices that are not
        plain scalars (layer widths) are suggested as JSON text under ``<name>#``.
        """
        schedule = self.schedule()
        family = schedule[trial.number % len(schedule)]
        constants: dict[str, Any] = {"trial/family": family}
        for name, spec in self.space(family).params.items():
            key = f"trial/{family}/{name}"
            if spec.kind == "constant":
                constants[key] = spec.values[0]
            elif spec.kind == "choice" and all(isinstance(v, (str, int, float, bool)) for v in spec.values):
                trial.suggest_categorical(key, spec.values)
            elif spec.kind == "choice":
                chosen = trial.suggest_categorical(key + "#", [json.dumps(v) for v in spec.values])
                constants[key] = json.loads(chosen)
            elif spec.kind in ("uniform", "loguniform"):
                trial.suggest_float(key, *spec.values, log=spec.kind == "loguniform")
            else:
                low, high = int(spec.values[0]), int(spec.values[1]) - (spec.kind == "randint")
                trial.suggest_int(key, low, high, log=spec.kind == "lograndint")
        return constants


def trial_params(trial: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(family, constructor params)`` of a trial config ``{"family": f, f: {...}}``."""
    family = str(trial["family"])
    return family, {k: v for k, v in trial.get(family, {}).items() if not k.endswith("#")}
