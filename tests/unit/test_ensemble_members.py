"""Tuning trials without Ray: one-shot and iterative runs, checkpoints, cross-validation sets, summaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.ensemble import METRIC, IterativeSpec, SearchSpaces, TrialRun, cv_sets, holdout_sets
from recsys.ensemble.members import best_per_family, best_table, trial_summary
from recsys.errors import ConfigError
from recsys.evaluation.protocol import RecboleSplit, prepare_recbole


@pytest.fixture(scope="module")
def split() -> RecboleSplit:
    rng = np.random.default_rng(0)
    rows = [
        (user, int(item), 5.0)
        for user in range(80)
        for item in rng.choice(np.flatnonzero(np.arange(40) % 2 == user % 2), size=12, replace=False)
    ]
    return prepare_recbole(pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]), min_count=1)


def test_a_one_shot_family_reports_once(split: RecboleSplit) -> None:
    steps = list(TrialRun("itemknn", {"k": 10}, holdout_sets(split)).steps())
    assert len(steps) == 1
    assert steps[0]["epochs"] == 0 and 0.0 < steps[0][METRIC] <= 1.0


def test_an_iterative_family_reports_after_every_chunk(split: RecboleSplit) -> None:
    iterative = IterativeSpec(param="iterations", max=7, every=3)
    run = TrialRun("als", {"factors": 8, "random_state": 0}, holdout_sets(split), iterative=iterative)
    assert [step["epochs"] for step in run.steps()] == [3, 6, 7]
    assert run.models[0].epochs_done_ == 7


def test_a_saved_trial_continues_where_it_stopped(split: RecboleSplit, tmp_path: Path) -> None:
    iterative = IterativeSpec(param="iterations", max=6, every=2)
    params = {"factors": 8, "random_state": 0}
    straight = [s[METRIC] for s in TrialRun("als", params, holdout_sets(split), iterative=iterative).steps()]
    first = TrialRun("als", params, holdout_sets(split), iterative=iterative)
    steps = first.steps()
    next(steps)
    first.save(tmp_path)
    resumed = TrialRun("als", params, holdout_sets(split), iterative=iterative)
    resumed.restore(tmp_path)
    assert resumed.epochs == 2
    rest = [s[METRIC] for s in resumed.steps()]
    assert rest == pytest.approx(straight[1:], abs=1e-6)  # ALS continues exactly


def test_a_family_without_partial_fit_cannot_be_iterative(split: RecboleSplit) -> None:
    run = TrialRun("ease", {}, holdout_sets(split), iterative=IterativeSpec(param="l2", max=2))
    with pytest.raises(ConfigError, match="partial_fit"):
        next(run.steps())


def test_cross_validation_sets_cover_users_once_and_never_touch_test(split: RecboleSplit) -> None:
    sets = cv_sets(split, 4, seed=0)
    assert len(sets) == 4
    held_users = [set(np.flatnonzero(np.diff(s.truth.indptr))) for s in sets]
    assert sum(len(users) for users in held_users) == len(set().union(*held_users))
    for eval_set in sets:
        everything = eval_set.fit + eval_set.history + eval_set.truth
        assert (everything.multiply(split.test)).nnz == 0
        assert eval_set.fit.multiply(eval_set.truth).nnz == 0
    steps = list(TrialRun("itemknn", {"k": 10}, sets).steps())
    assert 0.0 < steps[0][METRIC] <= 1.0


def test_trial_summaries_pick_the_best_report_and_family() -> None:
    spaces = SearchSpaces.model_validate(
        {"families": {"als": {"iterative": {"param": "iterations", "max": 9, "every": 3}}, "ease": {}}}
    )
    history = pd.DataFrame(
        {
            METRIC: [0.1, 0.3, 0.2],
            "valid_recall@10": [0.1, 0.2, 0.2],
            "epochs": [3, 6, 9],
            "time_total_s": [1, 2, 3],
        }
    )
    als = trial_summary({"family": "als", "als": {"factors": 8}}, history, spaces)
    assert als is not None and als["params"] == {"factors": 8, "iterations": 6} and not als["stopped_early"]
    stopped = trial_summary({"family": "als", "als": {"factors": 16}}, history.iloc[:1], spaces)
    assert stopped is not None and stopped["stopped_early"]
    ease = trial_summary({"family": "ease", "ease": {"l2": 5.0}}, history.iloc[:1], spaces)
    assert trial_summary({"family": "ease"}, pd.DataFrame({"x": [1]}), spaces) is None
    best = best_per_family([als, stopped, ease])  # type: ignore[list-item]
    assert (
        best["als"]["params"]["factors"] == 8 and best["als"]["trials"] == 2 and best["als"]["stopped"] == 1
    )
    assert "als" in best_table(best).splitlines()[1]
