"""Fitting and validating one family for one trial: what a tuning trial runs, without Ray.

A trial fits a family on one or more :class:`EvalSet` s (the protocol's train -> validation holdout,
or ``k`` user folds for cross-validation) and reports validation NDCG@10 averaged over them.
Iterative families (those with ``partial_fit``: ALS, BPR, NCF) train in chunks of epochs and
report after each chunk, so a scheduler such as ASHA can stop a weak trial early; the trial can be
saved after any chunk with the models' own ``save`` and continued from there.

Examples
--------
>>> import scipy.sparse as sp
>>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype="float32")
>>> run = TrialRun("popularity", {}, [EvalSet(X, X, sp.csr_matrix([[0, 0, 1]] * 3, dtype="float32"))])
>>> [sorted(step) for step in run.steps()]
[['epochs', 'fit_seconds', 'valid_ndcg@10', 'valid_recall@10']]
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.ensemble.spaces import IterativeSpec, SearchSpaces, trial_params
from recsys.errors import ArtifactError, ConfigError, DataError
from recsys.evaluation.metrics import evaluate_ranking
from recsys.evaluation.protocol import RecboleSplit
from recsys.evaluation.splits import kfold_users, to_csr

__all__ = [
    "METRIC",
    "EvalSet",
    "TrialRun",
    "best_per_family",
    "best_table",
    "cv_sets",
    "holdout_sets",
    "score_lists",
    "trial_summary",
]

METRIC = "valid_ndcg@10"
"""The metric every trial reports and tuning maximises."""
_STATE_FILE = "trial.json"


@dataclass(frozen=True)
class EvalSet:
    """Fit on ``fit``; rank for the users with a ``truth`` item, their ``history`` rows masked.

    All three are ``n_users x n_items`` CSR matrices.
    """

    fit: sp.csr_matrix
    history: sp.csr_matrix
    truth: sp.csr_matrix


def holdout_sets(split: RecboleSplit) -> list[EvalSet]:
    """The protocol's validation stage: fit on train, truth = validation."""
    return [EvalSet(split.train, split.train, split.valid)]


def cv_sets(split: RecboleSplit, folds: int, seed: int) -> list[EvalSet]:
    """``folds`` user folds over train + validation (the test part is never used).

    Each fold's users are new users: fitted without their rows, ranked from 80% of their items
    (:func:`~recsys.evaluation.splits.kfold_users`), truth = the other 20%.
    """
    coo = split.train_valid.tocoo()
    frame = pd.DataFrame({"user_id": coo.row.astype(np.int64), "item_id": coo.col.astype(np.int64)})
    shape = split.train_valid.shape
    out = []
    for fold in kfold_users(frame, folds, seed=seed):
        parts = (fold.train, fold.history, fold.heldout)
        fit, history, truth = (to_csr(frame.iloc[rows], *shape) for rows in parts)
        out.append(EvalSet(fit, history, truth))
    return out


def score_lists(model: Any, history: sp.csr_matrix, truth: sp.csr_matrix, k: int = 10) -> dict[str, float]:
    """NDCG@k and Recall@k of a fitted model for the users with a truth item (history masked)."""
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if users.size == 0:
        raise DataError("no user has a truth item; there is nothing to evaluate")
    ids, _ = model.recommend(history[users], k, filter_seen=True)
    return evaluate_ranking(np.asarray(ids), truth[users], k_values=(k,), metrics=("ndcg", "recall"))


class TrialRun:
    """One trial: a family with fixed parameters, fitted and validated on every eval set.

    Parameters
    ----------
    family : str
        Registry name (``recsys.models.FAMILIES``).
    params : dict
        Constructor parameters (the iterative one excluded: see ``iterative``).
    sets : sequence of EvalSet
        One for the holdout, ``k`` for cross-validation; reported metrics are their mean.
    iterative : IterativeSpec, optional
        Train ``iterative.param`` epochs in chunks of ``every`` up to ``max``, reporting after each.
    item_features : csr_matrix, optional
        Passed to ``fit`` (content-based families need it).
    """

    def __init__(
        self,
        family: str,
        params: Mapping[str, Any],
        sets: Sequence[EvalSet],
        *,
        iterative: IterativeSpec | None = None,
        item_features: sp.csr_matrix | None = None,
    ) -> None:
        if not sets:
            raise ConfigError("a trial needs at least one evaluation set")
        self.family = family
        self.params = dict(params)
        self.sets = list(sets)
        self.iterative = iterative
        self.item_features = item_features
        self.epochs = 0
        self.models: list[Any] = []

    def _new_model(self) -> Any:
        from recsys.models import SupportsPartialFit, build

        params = dict(self.params)
        if self.iterative is not None:
            params[self.iterative.param] = self.iterative.max
        model = build(self.family, **params)
        if self.iterative is not None and not isinstance(model, SupportsPartialFit):
            raise ConfigError(f"family {self.family!r} has no partial_fit; remove its 'iterative' entry")
        return model

    def _report(self, seconds: float) -> dict[str, float]:
        scores = [score_lists(m, s.history, s.truth) for m, s in zip(self.models, self.sets, strict=True)]
        return {
            METRIC: float(np.mean([s["ndcg@10"] for s in scores])),
            "valid_recall@10": float(np.mean([s["recall@10"] for s in scores])),
            "epochs": self.epochs,
            "fit_seconds": seconds,
        }

    def steps(self) -> Iterator[dict[str, float]]:
        """Train and yield the validation metrics: once, or after every chunk of epochs."""
        if self.iterative is None:
            started = time.perf_counter()
            self.models = [self._new_model().fit(s.fit, self.item_features) for s in self.sets]
            yield self._report(time.perf_counter() - started)
            return
        if not self.models:
            self.models = [self._new_model() for _ in self.sets]
        while self.epochs < self.iterative.max:
            chunk = min(self.iterative.every, self.iterative.max - self.epochs)
            started = time.perf_counter()
            for model, eval_set in zip(self.models, self.sets, strict=True):
                model.partial_fit(eval_set.fit, epochs=chunk)
            self.epochs += chunk
            yield self._report(time.perf_counter() - started)

    def save(self, directory: str | Path) -> None:
        """Write every fold's model (its own ``save``) and the epoch count to ``directory``."""
        root = Path(directory)
        for i, model in enumerate(self.models):
            model.save(root / f"set-{i}")
        (root / _STATE_FILE).write_text(json.dumps({"epochs": self.epochs, "sets": len(self.models)}))

    def restore(self, directory: str | Path) -> None:
        """Continue from a directory written by :meth:`save` (same family and eval sets)."""
        from recsys.models import load

        root = Path(directory)
        try:
            state = json.loads((root / _STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"trial checkpoint {root} is unreadable: {exc}") from exc
        if state.get("sets") != len(self.sets):
            raise ArtifactError(
                f"trial checkpoint {root} has {state.get('sets')} sets, this trial {len(self.sets)}"
            )
        self.models = [load(root / f"set-{i}") for i in range(len(self.sets))]
        self.epochs = int(state["epochs"])


def trial_summary(
    trial: Mapping[str, Any], history: pd.DataFrame, spaces: SearchSpaces
) -> dict[str, Any] | None:
    """A finished trial's family, tuned params and best validation scores (``None`` if it reported none).

    ``trial`` is the trial config (``{"family": f, f: params}``), ``history`` its reports (one row each,
    with :data:`METRIC`, ``valid_recall@10``, ``epochs`` and Tune's ``time_total_s``). An iterative
    family's tuned epoch count is that of its best report; ``stopped_early`` says it never reached ``max``.
    """
    if history is None or METRIC not in history or history[METRIC].isna().all():
        return None
    family, params = trial_params(dict(trial))
    best = history.iloc[int(np.argmax(history[METRIC].to_numpy(dtype=np.float64)))]
    iterative = spaces.space(family).iterative
    if iterative is not None:
        params[iterative.param] = int(best["epochs"])
    return {
        "family": family,
        "params": params,
        METRIC: float(best[METRIC]),
        "valid_recall@10": float(best["valid_recall@10"]),
        "stopped_early": bool(iterative is not None and int(history["epochs"].max()) < iterative.max),
        "seconds": float(history["time_total_s"].max()) if "time_total_s" in history else float("nan"),
    }


def best_per_family(trials: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The best trial of each family, with ``trials`` and ``stopped`` counts of that family added."""
    best: dict[str, dict[str, Any]] = {}
    counts: dict[str, list[int]] = {}
    for trial in trials:
        family = trial["family"]
        count = counts.setdefault(family, [0, 0])
        count[0] += 1
        count[1] += int(trial["stopped_early"])
        if family not in best or trial[METRIC] > best[family][METRIC]:
            best[family] = dict(trial)
    for family, row in best.items():
        row["trials"], row["stopped"] = counts[family]
    return best


def best_table(best: Mapping[str, Mapping[str, Any]]) -> str:
    """A text table of :func:`best_per_family`, best validation score first."""
    lines = [f"  {'family':<12}{'trials':>7}{'stopped':>9}{'best ' + METRIC:>20}  params"]
    for family, row in sorted(best.items(), key=lambda pair: -pair[1][METRIC]):
        counts = f"{row['trials']:>7}{row['stopped']:>9}"
        lines.append(f"  {family:<12}{counts}{row[METRIC]:>20.4f}  {json.dumps(row['params'])}")
    return "\n".join(lines)
