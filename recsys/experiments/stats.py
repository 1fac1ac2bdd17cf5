"""Statistics of an A/B test: Wilson intervals, the two-proportion z-test, Thompson allocation.

Only the standard library and numpy: the normal tail comes from ``math.erfc``.

Examples
--------
>>> low, high = wilson_interval(10, 100)
>>> round(low, 4), round(high, 4)
(0.0552, 0.1744)
>>> test = two_proportion_z_test(10, 100, 20, 100)
>>> round(test.z, 3), round(test.p_value, 4)
(1.98, 0.0477)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054
"""The two-sided 95% normal quantile."""


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (``(0, 1)`` when there are no trials).

    Unlike the normal approximation it stays inside ``[0, 1]`` and behaves at 0 or n successes.
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ZTest:
    """A two-sided two-proportion z-test of ``treatment`` against ``control``."""

    difference: float
    """Treatment rate minus control rate."""
    z: float
    p_value: float


def normal_two_sided_p(z: float) -> float:
    """``P(|Z| >= |z|)`` for a standard normal ``Z``."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def two_proportion_z_test(
    control_successes: int, control_trials: int, treatment_successes: int, treatment_trials: int
) -> ZTest:
    """The pooled two-proportion z-test; ``z = 0, p = 1`` when it is undefined (no data, no variance)."""
    if control_trials <= 0 or treatment_trials <= 0:
        return ZTest(0.0, 0.0, 1.0)
    p1 = control_successes / control_trials
    p2 = treatment_successes / treatment_trials
    pooled = (control_successes + treatment_successes) / (control_trials + treatment_trials)
    variance = pooled * (1 - pooled) * (1 / control_trials + 1 / treatment_trials)
    if variance <= 0:
        return ZTest(p2 - p1, 0.0, 1.0)
    z = (p2 - p1) / math.sqrt(variance)
    return ZTest(p2 - p1, z, normal_two_sided_p(z))


def probability_best(
    successes: Mapping[str, int], trials: Mapping[str, int], *, draws: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Each arm's posterior chance of the highest rate, under Beta(1 + s, 1 + n - s) posteriors."""
    names = list(trials)
    rng = np.random.default_rng(seed)
    samples = np.column_stack(
        [
            rng.beta(1 + successes.get(name, 0), 1 + max(trials[name] - successes.get(name, 0), 0), draws)
            for name in names
        ]
    )
    wins = np.bincount(samples.argmax(axis=1), minlength=len(names))
    return {name: float(wins[i]) / draws for i, name in enumerate(names)}


def floored_shares(shares: Mapping[str, float], min_share: float) -> dict[str, float]:
    """``shares`` with every arm raised to at least ``min_share``, the rest scaled to sum to 1."""
    names = list(shares)
    if min_share * len(names) >= 1.0:
        return {name: 1.0 / len(names) for name in names}
    floored = {name: max(shares[name], 0.0) for name in names}
    low = [n for n in names if floored[n] < min_share]
    while True:
        high = [n for n in names if n not in low]
        budget = 1.0 - min_share * len(low)
        total = sum(floored[n] for n in high)
        scaled = {n: floored[n] * budget / total if total > 0 else budget / len(high) for n in high}
        newly_low = [n for n in high if scaled[n] < min_share]
        if not newly_low:
            return {n: (min_share if n in low else scaled[n]) for n in names}
        low.extend(newly_low)
