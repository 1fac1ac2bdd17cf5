"""A/B/n experiments: configuration, sticky assignment, attribution and statistics.

Pure library code (no Ray, no Serve): serving and the replay job build on it.

* :mod:`~recsys.experiments.config`: :class:`Experiment`, :class:`Variant`, overrides;
* :mod:`~recsys.experiments.assignment`: hash-based sticky assignment, stored under Thompson;
* :mod:`~recsys.experiments.attribution`: events referencing a ``request_id`` -> outcomes;
* :mod:`~recsys.experiments.stats`: Wilson intervals, two-proportion z-test, Thompson draws;
* :mod:`~recsys.experiments.report`: the per-variant report and Thompson allocation.
"""

from recsys.experiments.assignment import Assigner, assign, pick, unit_hash
from recsys.experiments.attribution import (
    CLICKS,
    CONVERSIONS,
    EXPOSURES,
    Attribution,
    Touch,
    attribute,
    outcomes,
)
from recsys.experiments.config import Experiment, ThompsonConfig, Variant, apply_overrides
from recsys.experiments.report import experiment_report, thompson_allocation, variant_table
from recsys.experiments.stats import (
    ZTest,
    floored_shares,
    probability_best,
    two_proportion_z_test,
    wilson_interval,
)

__all__ = [
    "CLICKS",
    "CONVERSIONS",
    "EXPOSURES",
    "Assigner",
    "Attribution",
    "Experiment",
    "ThompsonConfig",
    "Touch",
    "Variant",
    "ZTest",
    "apply_overrides",
    "assign",
    "attribute",
    "experiment_report",
    "floored_shares",
    "outcomes",
    "pick",
    "probability_best",
    "thompson_allocation",
    "two_proportion_z_test",
    "unit_hash",
    "variant_table",
    "wilson_interval",
]
