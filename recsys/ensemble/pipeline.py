"""From tuned families to an evaluated ensemble, without leakage.

:func:`build_ensemble` takes each family's tuned parameters and

1. fits every family (one executor task each) three times: on the protocol's binary train +
   validation for its **protocol test score**, and, with the interaction signals
   (:mod:`recsys.ensemble.signals`), on train (validation stage) and on train + validation
   (test stage);
2. keeps the ``max_members`` families with the best validation NDCG@10 as members;
3. builds the validation candidates from the validation-stage members (fitted on train only) and
   learns each combiner on them, labels = validation items; a combiner's validation score is
   cross-validated over users (``meta_folds``), so blending and stacking compare out of sample;
4. scores each combiner on test with the test-stage members (refitted on train + validation), the
   same protocol as the single families, and picks the method with the best validation score.

Test items never reach a combiner: it is fitted before any test-stage model exists.

Examples
--------
>>> # result = build_ensemble(split, {"ease": {"l2": 200.0}, "itemknn": {"k": 50}}, signals=signals)
>>> # result.report["test"]["ndcg@10"], result.model.recommend(rows, k=10)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recsys.data.runner import Executor, SerialExecutor
from recsys.ensemble.blending import Blender
from recsys.ensemble.candidates import (
    CandidateBatch,
    candidate_labels,
    ranking_metrics,
    top_k_candidates,
)
from recsys.ensemble.model import Combiner, EnsembleRecommender
from recsys.ensemble.signals import InteractionSignals, SignalConfig, confidence_matrix
from recsys.ensemble.stacking import Stacker
from recsys.errors import ConfigError
from recsys.evaluation.metrics import evaluate_ranking
from recsys.evaluation.protocol import RecboleSplit

__all__ = ["REPORT_METRICS", "EnsembleConfig", "EnsembleResult", "StackingConfig", "build_ensemble"]

REPORT_METRICS: tuple[str, ...] = ("ndcg", "recall", "precision", "hit_rate", "map", "mrr")
"""Metrics @10 reported for every family and method."""


class StackingConfig(BaseModel):
    """Parameters of the :class:`~recsys.ensemble.stacking.Stacker` meta-learner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Literal["pointwise", "pairwise"] = "pointwise"
    C: float = Field(default=1.0, gt=0.0)
    pairs_per_positive: int = Field(default=20, ge=1)


class EnsembleConfig(BaseModel):
    """How the ensemble is built (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_n: int = Field(default=50, ge=1)
    max_members: int = Field(default=6, ge=1)
    methods: tuple[Literal["blending", "stacking"], ...] = ("blending", "stacking")
    meta_folds: int = Field(default=5, ge=2)
    stacking: StackingConfig = Field(default_factory=StackingConfig)
    signals: SignalConfig | None = Field(default_factory=SignalConfig)
    seed: int = 0


@dataclass(frozen=True)
class _Stage:
    split: RecboleSplit
    train: sp.csr_matrix
    train_valid: sp.csr_matrix
    item_features: sp.csr_matrix | None
    with_signals: bool


@dataclass(frozen=True)
class _FamilyFit:
    family: str
    params: dict[str, Any]
    strict_test: dict[str, float]
    valid: dict[str, float]
    test: dict[str, float]
    valid_model: Any
    test_model: Any
    seconds: float


@dataclass(frozen=True)
class EnsembleResult:
    """The champion ensemble (members refitted on train + validation) and the evaluation report."""

    model: EnsembleRecommender
    report: dict[str, Any]


def _metrics(model: Any, history: sp.csr_matrix, truth: sp.csr_matrix) -> dict[str, float]:
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    ids, _ = model.recommend(history[users], 10, filter_seen=True)
    return evaluate_ranking(np.asarray(ids), truth[users], k_values=(10,), metrics=REPORT_METRICS)


def _fit_family(task: tuple[str, dict[str, Any]], stage: _Stage) -> _FamilyFit:
    from recsys.models import build

    family, params = task
    started = time.perf_counter()
    split = stage.split
    strict = build(family, **params).fit(split.train_valid, stage.item_features)
    strict_test = _metrics(strict, split.train_valid, split.test)
    valid_model = build(family, **params).fit(stage.train, stage.item_features)
    valid = _metrics(valid_model, stage.train, split.valid)
    if stage.with_signals:
        test_model = build(family, **params).fit(stage.train_valid, stage.item_features)
        test = _metrics(test_model, stage.train_valid, split.test)
    else:
        test_model, test = strict, strict_test
    seconds = time.perf_counter() - started
    return _FamilyFit(family, dict(params), strict_test, valid, test, valid_model, test_model, seconds)


def _popularity(matrix: sp.csr_matrix) -> np.ndarray:
    return np.asarray((matrix > 0).sum(axis=0), dtype=np.float64).ravel()


def _cross_validated(
    make: Callable[[], Combiner], batch: CandidateBatch, truth: sp.csr_matrix, folds: int, seed: int
) -> dict[str, float]:
    """Validation metrics of a combiner fitted on the other users' candidates, fold by fold."""
    fold_of = np.random.default_rng(seed).permutation(batch.n_rows) % folds
    decision = np.zeros(batch.rows.size)
    for fold in range(folds):
        held = fold_of == fold
        combiner = make().fit(batch.select_rows(~held), truth)
        in_fold = held[batch.rows]
        decision[in_fold] = combiner.decision(batch.select_rows(held))
    ids, _ = top_k_candidates(batch, decision, 10)
    return ranking_metrics(ids, truth, 10, REPORT_METRICS)


def _combiner_factory(method: str, config: EnsembleConfig) -> Callable[[], Combiner]:
    if method == "blending":
        return Blender
    stacking = config.stacking
    return functools.partial(
        Stacker,
        objective=stacking.objective,
        C=stacking.C,
        pairs_per_positive=stacking.pairs_per_positive,
        random_state=config.seed,
    )


def _method_report(combiner: Combiner) -> dict[str, Any]:
    if isinstance(combiner, Blender):
        return {"weights": combiner.weights_}
    assert isinstance(combiner, Stacker)
    return {
        "objective": combiner.objective,
        "features": list(combiner.names_),
        "coefficients": combiner.coefficients(),
    }


def build_ensemble(
    split: RecboleSplit,
    tuned: Mapping[str, Mapping[str, Any]],
    *,
    config: EnsembleConfig | None = None,
    signals: InteractionSignals | None = None,
    item_features: sp.csr_matrix | None = None,
    executor: Executor | None = None,
    on_message: Callable[[str], None] | None = None,
) -> EnsembleResult:
    """Fit, combine and evaluate the tuned families (see the module docstring).

    Parameters
    ----------
    split : RecboleSplit
        The protocol's split.
    tuned : dict of str to dict
        Family -> its tuned constructor parameters.
    config : EnsembleConfig, optional
        Candidates, members, methods, meta-learner and signal settings.
    signals : InteractionSignals, optional
        Pair signals aligned with ``split`` (:func:`~recsys.ensemble.signals.load_signals`);
        without them (or with ``config.signals=None``) members see the binary positives only.
    item_features : csr_matrix, optional
        Passed to every fit (content-based families need it).
    executor : Executor, optional
        Runs the family fits (default: one after another here).
    on_message : callable, optional
        Receives one progress line per step.

    Returns
    -------
    EnsembleResult
    """
    config = config or EnsembleConfig()
    say = on_message or (lambda _: None)
    if not tuned:
        raise ConfigError("build_ensemble needs at least one tuned family")
    signal_config = config.signals if signals is not None else None
    stage = _Stage(
        split,
        confidence_matrix(split.train, signals, signal_config),
        confidence_matrix(split.train_valid, signals, signal_config),
        item_features,
        signal_config is not None,
    )
    task = functools.partial(_fit_family, stage=stage)
    fits = (executor or SerialExecutor()).map(task, [(f, dict(p)) for f, p in tuned.items()], stage="members")
    for fit in fits:
        say(
            f"{fit.family}: protocol test ndcg@10={fit.strict_test['ndcg@10']:.4f}, with signals "
            f"valid={fit.valid['ndcg@10']:.4f} test={fit.test['ndcg@10']:.4f} ({fit.seconds:.1f}s)"
        )
    ranked = sorted(fits, key=lambda fit: -fit.valid["ndcg@10"])[: config.max_members]

    def ensemble(models: dict[str, Any], fitted_on: sp.csr_matrix) -> EnsembleRecommender:
        return EnsembleRecommender(
            members=models, item_popularity=_popularity(fitted_on), top_n=config.top_n, signals=signal_config
        )

    valid_stage = ensemble({f.family: f.valid_model for f in ranked}, stage.train)
    test_stage = ensemble({f.family: f.test_model for f in ranked}, stage.train_valid)
    users = np.flatnonzero(np.diff(split.valid.indptr) > 0)
    truth = split.valid[users]
    batch = valid_stage.candidates(stage.train[users])
    labels = candidate_labels(batch, truth)
    methods: dict[str, dict[str, Any]] = {}
    combiners: dict[str, Combiner] = {}
    for method in config.methods:
        make = _combiner_factory(method, config)
        valid = _cross_validated(make, batch, truth, config.meta_folds, config.seed)
        combiners[method] = make().fit(batch, truth)
        test = _metrics(test_stage.with_combiner(combiners[method]), stage.train_valid, split.test)
        methods[method] = {**_method_report(combiners[method]), "valid": valid, "test": test}
        say(f"{method}: valid ndcg@10={valid['ndcg@10']:.4f} (cross-validated) test={test['ndcg@10']:.4f}")
    chosen = max(methods, key=lambda m: methods[m]["valid"]["ndcg@10"])
    report = {
        "families": {
            f.family: {
                "params": f.params,
                "test": f.strict_test,
                "valid_signals": f.valid,
                "test_signals": f.test,
                "fit_seconds": f.seconds,
            }
            for f in fits
        },
        "members": [f.family for f in ranked],
        "signals": signal_config.model_dump() if signal_config is not None else None,
        "top_n": config.top_n,
        "candidates": {
            "per_user": float(batch.rows.size / max(batch.n_rows, 1)),
            "valid_recall": float(labels.sum() / max(truth.nnz, 1)),
        },
        "methods": methods,
        "method": chosen,
        "valid": methods[chosen]["valid"],
        "test": methods[chosen]["test"],
    }
    return EnsembleResult(test_stage.with_combiner(combiners[chosen]), report)
