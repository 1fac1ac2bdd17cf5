"""The per-variant report of an experiment, and its Thompson-sampling allocation.

The report holds, per variant: exposures, click-throughs and conversions, their rates with 95%
Wilson intervals, and the two-proportion z-test of each rate against the control (the first
variant). Exposures of one user are not independent, so read the intervals as optimistic when
users see many pages; compare experiments over the same duration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsys.experiments.attribution import CLICKS, CONVERSIONS, EXPOSURES
from recsys.experiments.config import Experiment
from recsys.experiments.stats import floored_shares, probability_best, two_proportion_z_test, wilson_interval

Counts = Mapping[str, Mapping[str, int]]
"""``{variant: {"exposures": n, "clicks": n, "conversions": n}}`` as the store keeps them."""


def rate_summary(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, trials)
    return {"count": successes, "rate": successes / trials if trials else 0.0, "ci95": [low, high]}


def versus(control: tuple[int, int], treatment: tuple[int, int]) -> dict[str, float]:
    test = two_proportion_z_test(control[0], control[1], treatment[0], treatment[1])
    return {"difference": test.difference, "z": test.z, "p_value": test.p_value}


def variant_table(names: list[str], counts: Counts) -> list[dict[str, Any]]:
    """Rows of the report for ``names`` (the first is the control) from raw counts."""

    def get(name: str, key: str) -> int:
        return int(counts.get(name, {}).get(key, 0))

    control = names[0]
    rows = []
    for name in names:
        shown = get(name, EXPOSURES)
        row: dict[str, Any] = {
            "variant": name,
            "control": name == control,
            "exposures": shown,
            "click_through": rate_summary(get(name, CLICKS), shown),
            "conversion": rate_summary(get(name, CONVERSIONS), shown),
        }
        if name != control:
            base = get(control, EXPOSURES)
            row["vs_control"] = {
                "click_through": versus((get(control, CLICKS), base), (get(name, CLICKS), shown)),
                "conversion": versus((get(control, CONVERSIONS), base), (get(name, CONVERSIONS), shown)),
            }
        rows.append(row)
    return rows


def thompson_allocation(experiment: Experiment, counts: Counts) -> dict[str, float] | None:
    """New users' shares under Thompson sampling; ``None`` while it is off or data is too thin."""
    settings = experiment.thompson
    names = [v.name for v in experiment.variants]
    exposures = {n: int(counts.get(n, {}).get(EXPOSURES, 0)) for n in names}
    if not settings.enabled or sum(exposures.values()) < settings.min_exposures:
        return None
    conversions = {n: int(counts.get(n, {}).get(CONVERSIONS, 0)) for n in names}
    best = probability_best(conversions, exposures, draws=settings.draws, seed=settings.seed)
    return floored_shares(best, settings.min_share)


def experiment_report(
    experiment: Experiment, counts: Counts, allocation: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The JSON report of ``GET /v1/experiments/{id}/report`` (and of the replay job)."""
    names = [v.name for v in experiment.variants]
    current = dict(allocation) if allocation else experiment.shares()
    return {
        "experiment": experiment.id,
        "enabled": experiment.enabled,
        "control": names[0],
        "attribution_window_s": experiment.attribution_window_s,
        "allocation": {name: float(current.get(name, 0.0)) for name in names},
        "allocation_source": "thompson" if allocation else "configured",
        "variants": variant_table(names, counts),
    }
