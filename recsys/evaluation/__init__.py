"""Offline evaluation: metrics, splits, the ``recbole`` protocol and cross-validation.

Model-agnostic: anything with the Recommender protocol's ``fit`` / ``recommend`` can be evaluated.

Examples
--------
>>> from recsys.evaluation import evaluate_ranking, prepare_recbole, evaluate_model
"""

from recsys.evaluation.crossval import CrossValResult, cross_validate
from recsys.evaluation.metrics import (
    BEYOND_ACCURACY_METRICS,
    RANKING_METRICS,
    auc_per_user,
    catalogue_coverage,
    evaluate_ranking,
    evaluate_ranking_per_user,
    intra_list_diversity,
    mae,
    novelty,
    popularity_share,
    rmse,
)
from recsys.evaluation.protocol import (
    RecboleSplit,
    SelectionResult,
    evaluate_model,
    prepare_recbole,
    recbole_positives,
    select_and_test,
)
from recsys.evaluation.splits import (
    UserFold,
    kfold_users,
    leave_last_k,
    ratio_split,
    split_counts,
    temporal_split,
    to_csr,
)

__all__ = [
    "BEYOND_ACCURACY_METRICS",
    "RANKING_METRICS",
    "CrossValResult",
    "RecboleSplit",
    "SelectionResult",
    "UserFold",
    "auc_per_user",
    "catalogue_coverage",
    "cross_validate",
    "evaluate_model",
    "evaluate_ranking",
    "evaluate_ranking_per_user",
    "intra_list_diversity",
    "kfold_users",
    "leave_last_k",
    "mae",
    "novelty",
    "popularity_share",
    "prepare_recbole",
    "ratio_split",
    "recbole_positives",
    "rmse",
    "select_and_test",
    "split_counts",
    "temporal_split",
    "to_csr",
]
