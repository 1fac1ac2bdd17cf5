"""Ensembles of tuned model families: blending, stacking, and what tuning trials run.

========================= ===========================================================================
module                    what it holds
========================= ===========================================================================
:mod:`.spaces`            per-family search spaces (the validated ``configs/search_spaces.yaml``)
:mod:`.members`           one tuning trial: fit a family on eval sets, report validation NDCG@10
:mod:`.signals`           confidence, seen (low-rated) items and recency from the preprocessed data
:mod:`.candidates`        the union of the members' top-N and the features describing each candidate
:mod:`.blending`          :class:`Blender`: weighted sum of standardised scores, weights on validation
:mod:`.stacking`          :class:`Stacker`: logistic-regression meta-learner (pointwise or pairwise)
:mod:`.model`             :class:`EnsembleRecommender`: members + combiner behind ``recommend``
:mod:`.pipeline`          :func:`build_ensemble`: fit, combine on validation, evaluate on test
========================= ===========================================================================

Nothing here imports Ray: the tuning job (``jobs/tune.py``) runs :class:`TrialRun` inside Ray Tune
trials and calls :func:`build_ensemble` with a Ray executor.
"""

from recsys.ensemble.blending import Blender
from recsys.ensemble.candidates import CandidateBatch, build_candidates, top_k_candidates
from recsys.ensemble.members import METRIC, EvalSet, TrialRun, cv_sets, holdout_sets
from recsys.ensemble.model import EnsembleRecommender
from recsys.ensemble.pipeline import EnsembleConfig, EnsembleResult, StackingConfig, build_ensemble
from recsys.ensemble.signals import InteractionSignals, SignalConfig, confidence_matrix, load_signals
from recsys.ensemble.spaces import FamilySpace, IterativeSpec, ParamSpec, SearchSpaces
from recsys.ensemble.stacking import Stacker

__all__ = [
    "METRIC",
    "Blender",
    "CandidateBatch",
    "EnsembleConfig",
    "EnsembleRecommender",
    "EnsembleResult",
    "EvalSet",
    "FamilySpace",
    "InteractionSignals",
    "IterativeSpec",
    "ParamSpec",
    "SearchSpaces",
    "SignalConfig",
    "Stacker",
    "StackingConfig",
    "TrialRun",
    "build_candidates",
    "build_ensemble",
    "confidence_matrix",
    "cv_sets",
    "holdout_sets",
    "load_signals",
    "top_k_candidates",
]
