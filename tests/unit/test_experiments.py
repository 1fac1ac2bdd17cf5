"""A/B experiments, pure: assignment, statistics against hand-computed values, attribution, report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from recsys.embeddings import UpdaterConfig
from recsys.experiments import (
    Assigner,
    Experiment,
    Touch,
    Variant,
    apply_overrides,
    assign,
    attribute,
    experiment_report,
    floored_shares,
    outcomes,
    pick,
    probability_best,
    thompson_allocation,
    two_proportion_z_test,
    unit_hash,
    wilson_interval,
)
from recsys.ranking import RankerConfig
from recsys.store import Exposure, SQLiteStore


def three_way(**extra: object) -> Experiment:
    variants = [Variant(name="A", share=0.5), Variant(name="B", share=0.3), Variant(name="C", share=0.2)]
    return Experiment.model_validate({"id": "exp-1", "variants": variants, **extra})


def test_config_validates_shares_names_and_overrides() -> None:
    with pytest.raises(ValidationError, match="sum to 1"):
        Experiment(id="e", variants=[Variant(name="A", share=0.5), Variant(name="B", share=0.4)])
    with pytest.raises(ValidationError, match="unique"):
        Experiment(id="e", variants=[Variant(name="A", share=0.5), Variant(name="A", share=0.5)])
    with pytest.raises(ValidationError, match="variants"):
        Experiment(id="e", variants=[Variant(name="A", share=1.0)])
    ranker = apply_overrides(RankerConfig(), {"interest_quota": 0.1, "blend": {"embedding_weight": 0.9}})
    assert ranker.interest_quota == 0.1 and ranker.blend.embedding_weight == 0.9
    assert ranker.blend.fold_in_weight == RankerConfig().blend.fold_in_weight  # nested keys merge
    assert apply_overrides(UpdaterConfig(), {}) == UpdaterConfig()
    with pytest.raises(ValidationError, match="no_such_field"):
        apply_overrides(RankerConfig(), {"no_such_field": 1})


def test_assignment_is_deterministic_and_sticky() -> None:
    experiment = three_way()
    first = [assign(experiment, f"user-{n}") for n in range(1000)]
    assert first == [assign(experiment, f"user-{n}") for n in range(1000)]
    assert 0.0 <= unit_hash("exp-1", "x") < 1.0
    # another experiment id reshuffles users independently
    other = Experiment(id="exp-2", variants=experiment.variants)
    assert sum(a != assign(other, f"user-{n}") for n, a in enumerate(first)) > 300
    assert pick({"A": 0.5, "B": 0.3, "C": 0.2}, 0.0) == "A"
    assert pick({"A": 0.5, "B": 0.3, "C": 0.2}, 0.79) == "B"
    assert pick({"A": 0.5, "B": 0.3, "C": 0.2}, 0.999999) == "C"


def test_shares_hold_on_100k_ids() -> None:
    experiment = three_way()
    counts = Counter(assign(experiment, f"u{n}") for n in range(100_000))
    for variant in experiment.variants:
        # binomial sd at n = 1e5 is at most 0.0016; 0.006 is > 3.5 sd
        assert abs(counts[variant.name] / 100_000 - variant.share) < 0.006, counts


def test_thompson_assignment_keeps_assigned_users_and_moves_new_ones(tmp_path: Path) -> None:
    experiment = three_way(thompson={"enabled": True})
    store = SQLiteStore(tmp_path / "store.db")
    assigner = Assigner(experiment, store)
    before = {f"u{n}": assigner.assign(f"u{n}") for n in range(300)}
    shifted = {"A": 0.05, "B": 0.05, "C": 0.9}
    assert {u: assigner.assign(u, shifted) for u in before} == before  # already assigned: kept
    fresh = Counter(assigner.assign(f"new{n}", shifted) for n in range(2000))
    assert fresh["C"] / 2000 > 0.85
    assert store.get_assignment("exp-1", "new0") == assigner.assign("new0")
    assert not Assigner(three_way(), store).persistent  # fixed shares need no store
    store.close()


def test_wilson_interval_matches_hand_computed_values() -> None:
    # p = 0.1, n = 100, z = 1.959964: centre (0.1 + z^2/200) / (1 + z^2/100) = 0.114798,
    # half-width z * sqrt(0.0009 + z^2/40000) / (1 + z^2/100) = 0.059569
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.055229, abs=1e-6) and high == pytest.approx(0.174366, abs=1e-6)
    # 0 of 20: (0, z^2/(20 + z^2)) = (0, 0.161125)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.161125, abs=1e-6)
    # 20 of 20 mirrors it
    assert wilson_interval(20, 20)[0] == pytest.approx(1 - 0.161125, abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 3)


def test_two_proportion_z_test_matches_hand_computed_values() -> None:
    # 10/100 vs 20/100: pooled 0.15, se sqrt(0.15 * 0.85 * 0.02) = 0.0504975, z = 1.980295,
    # p = erfc(1.980295 / sqrt 2) = 0.047670
    test = two_proportion_z_test(10, 100, 20, 100)
    assert test.difference == pytest.approx(0.1)
    assert test.z == pytest.approx(1.980295, abs=1e-6) and test.p_value == pytest.approx(0.047670, abs=1e-6)
    # 120/1000 vs 100/1000: pooled 0.11, se sqrt(0.11 * 0.89 * 0.002) = 0.0139928, z = -1.429301
    test = two_proportion_z_test(120, 1000, 100, 1000)
    assert test.z == pytest.approx(-1.429301, abs=1e-6) and test.p_value == pytest.approx(0.152918, abs=1e-6)
    assert two_proportion_z_test(0, 0, 3, 10).p_value == 1.0
    assert two_proportion_z_test(0, 10, 0, 10).z == 0.0


def test_thompson_draws_and_floors() -> None:
    best = probability_best({"A": 10, "B": 40}, {"A": 200, "B": 200}, draws=20_000)
    assert best["B"] > 0.99 and sum(best.values()) == pytest.approx(1.0)
    even = probability_best({"A": 20, "B": 20}, {"A": 200, "B": 200}, draws=20_000)
    assert abs(even["A"] - 0.5) < 0.03
    floored = floored_shares({"A": 0.999, "B": 0.001, "C": 0.0}, 0.05)
    assert floored == pytest.approx({"A": 0.9, "B": 0.05, "C": 0.05})
    experiment = three_way(thompson={"enabled": True, "min_exposures": 100})
    counts = {
        "A": {"exposures": 100, "conversions": 5},
        "B": {"exposures": 100, "conversions": 30},
        "C": {"exposures": 100, "conversions": 4},
    }
    allocation = thompson_allocation(experiment, counts)
    assert allocation is not None and allocation["B"] == pytest.approx(0.9, abs=1e-3)
    assert allocation["A"] == allocation["C"] == 0.05  # floored, still explored
    unexplored = thompson_allocation(experiment, {k: counts[k] for k in ("A", "B")})
    assert unexplored is not None and unexplored["C"] > 0.5  # an arm without data is uncertain
    assert thompson_allocation(experiment, {"A": {"exposures": 10}}) is None  # too little data
    assert thompson_allocation(three_way(), counts) is None  # off


def exposure(request_id: str = "r1", ts_ms: int = 1_000_000) -> Exposure:
    return Exposure(request_id, "u1", "B", ("i1", "i2"), ts_ms, "exp-1")


def touch(kind: str = "click", item: str = "i1", at_s: float = 1_010.0, user: str = "u1") -> Touch:
    return Touch("r1", user, item, kind, at_s)


def test_attribution_rules_and_window() -> None:
    experiment = three_way(attribution_window_s=600)
    shown = exposure()
    assert outcomes(experiment, shown, touch("click")) == ("clicks",)
    assert outcomes(experiment, shown, touch("purchase")) == ("clicks", "conversions")
    assert outcomes(experiment, shown, touch("view")) == ()
    assert outcomes(experiment, shown, touch(item="i9")) == ()  # not on the page
    assert outcomes(experiment, shown, touch(user="u2")) == ()  # someone else
    assert outcomes(experiment, shown, touch(at_s=1_000 + 600)) == ("clicks",)  # window edge
    assert outcomes(experiment, shown, touch(at_s=1_000 + 601)) == ()  # after the window
    assert outcomes(experiment, shown, touch(at_s=1_000 - 61)) == ()  # long before the exposure


def test_attribution_counts_once_per_exposure(tmp_path: Path) -> None:
    experiment = three_way()
    store = SQLiteStore(tmp_path / "store.db")
    store.record_exposure(exposure())
    experiments = {"exp-1": experiment}
    first = attribute(store, experiments, touch("click"))
    assert first is not None and first.variant == "B" and first.outcomes == ("clicks",)
    again = attribute(store, experiments, touch("click", item="i2"))
    assert again is not None and again.outcomes == ()  # one click-through per exposure
    bought = attribute(store, experiments, touch("purchase"))
    assert bought is not None and bought.outcomes == ("conversions",)
    assert attribute(store, experiments, Touch("unknown", "u1", "i1", "click", 1_010.0)) is None
    assert attribute(store, {}, touch("click")) is None
    counts = store.experiment_counts("exp-1")
    assert counts == {"B": {"exposures": 1, "clicks": 1, "conversions": 1}}
    report = experiment_report(experiment, counts)
    rows = {row["variant"]: row for row in report["variants"]}
    assert rows["B"]["click_through"]["rate"] == 1.0 and rows["A"]["exposures"] == 0
    assert report["allocation"] == {"A": 0.5, "B": 0.3, "C": 0.2}
    store.close()


def test_report_numbers() -> None:
    experiment = Experiment(id="e", variants=[Variant(name="A", share=0.5), Variant(name="B", share=0.5)])
    counts = {"A": {"exposures": 100, "clicks": 10, "conversions": 2}, "B": {"exposures": 100, "clicks": 20}}
    report = experiment_report(experiment, counts, {"A": 0.2, "B": 0.8})
    control, treatment = report["variants"]
    assert control["control"] and "vs_control" not in control
    assert control["click_through"]["ci95"] == pytest.approx([0.055229, 0.174366], abs=1e-6)
    assert treatment["vs_control"]["click_through"]["p_value"] == pytest.approx(0.047670, abs=1e-6)
    assert treatment["conversion"]["count"] == 0
    assert report["allocation"] == {"A": 0.2, "B": 0.8} and report["allocation_source"] == "thompson"
