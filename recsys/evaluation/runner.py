"""Evaluate many model families on one split of a preprocessed dataset, one independent task each.

:func:`evaluate_families` reads the preprocessing output (``interactions/part-*.parquet`` and, when
present, ``features/item_matrix.npz``), builds the protocol's split once, then hands each family to
an executor (the :class:`~recsys.data.runner.Executor` protocol: :class:`SerialExecutor` here, Ray
tasks in ``jobs/evaluate.py``). Each task selects hyperparameters on validation NDCG@10 over the
family's grid (:data:`DEFAULT_GRIDS` unless given), refits on train+validation and scores the test
users at every k; the result is the ``metrics.json`` payload.

Which events are positives (protocol ``"recbole"``, ``docs/benchmarks.md`` section 1):

* data with ``event_type == "rating"`` rows: those rows only, positive when ``value >= 3``, the
  rating itself dropped (the protocol exactly; other event types are ignored);
* data without ratings (views, clicks, purchases...): every event with a positive ``weight``
  (the preprocessing's confidence; dislikes and zero-weight events are not positives).

Users and items are keyed by their original ids, read as integers when every id is one, so the
split is the one :func:`~recsys.evaluation.protocol.prepare_recbole` makes from the raw ratings
file (MovieLens ids sort numerically there, not as strings).
"""

from __future__ import annotations

import functools
import inspect
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.model_selection import ParameterGrid

from recsys.data.runner import Executor, SerialExecutor
from recsys.data.storage import Location, read_frames
from recsys.errors import ConfigError, DataError, SchemaError, SourceNotFoundError
from recsys.evaluation._family import SharedData, evaluate_family, popularity_profile
from recsys.evaluation.protocol import prepare_recbole

__all__ = [
    "DEFAULT_GRIDS",
    "OPTIONAL_FAMILIES",
    "PROTOCOLS",
    "evaluate_families",
    "load_shared_data",
    "resolve_families",
]

PROTOCOLS: tuple[str, ...] = ("recbole",)

Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]
"""A hyperparameter grid as :class:`sklearn.model_selection.ParameterGrid` takes it."""

DEFAULT_GRIDS: dict[str, Grid] = {
    "popularity": {},
    "userknn": {"k": [50, 100]},
    "itemknn": {"k": [50, 100], "shrinkage": [0.0, 10.0]},
    "ease": {"l2": [100.0, 250.0, 500.0]},
    "puresvd": {"factors": [32, 64, 128]},
    "als": {"factors": [64], "regularization": [0.01, 0.05], "iterations": [15]},
    "bpr": {"factors": [64], "learning_rate": [0.01, 0.05], "regularization": [0.01], "iterations": [100]},
    "content": {},
    "switching_hybrid": {},
    "weighted_hybrid": {
        "members": [{"ease": {"l2": 250.0}, "itemknn": {"k": 50, "shrinkage": 10.0}}],
        "weights": [None, {"ease": 1.0, "itemknn": 0.5}],
    },
    "biased_mf": {},
    "ncf": {},
}
"""Small default grid per family, around the references of ``docs/benchmarks.md``; families with a
``random_state`` parameter also get the run's seed."""

OPTIONAL_FAMILIES: dict[str, tuple[str, ...]] = {"ncf": ("torch",), "biased_mf": ()}
"""Families that may be missing from this build, with the packages they need."""

_NEEDS_FEATURES = frozenset({"content"})
_SLOW_FIRST = ("ncf", "weighted_hybrid", "ease", "bpr", "biased_mf", "switching_hybrid", "itemknn")
"""The slowest tasks on ml-latest-small, longest first: started first, a parallel run ends sooner."""


def _registry() -> Mapping[str, type]:
    from recsys.models import FAMILIES

    return FAMILIES


def _missing_packages(family: str) -> list[str]:
    missing = []
    for package in OPTIONAL_FAMILIES.get(family, ()):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    return missing


def resolve_families(families: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """Split requested family names into runnable ones and skipped ones with the reason.

    ``None`` asks for every family of :data:`DEFAULT_GRIDS` available here. An optional family
    (:data:`OPTIONAL_FAMILIES`) that is not registered or lacks a package is skipped; any other
    unknown name raises :class:`~recsys.errors.ConfigError` naming it.

    Examples
    --------
    >>> resolve_families(["ease", "popularity"])
    (['ease', 'popularity'], {})
    """
    registry = _registry()
    names = list(DEFAULT_GRIDS) if families is None else list(dict.fromkeys(families))
    unknown = [n for n in names if n not in registry and n not in OPTIONAL_FAMILIES]
    if unknown:
        raise ConfigError(
            f"unknown model family {', '.join(map(repr, unknown))}; "
            f"known families: {', '.join(sorted({*registry, *OPTIONAL_FAMILIES}))}"
        )
    runnable: list[str] = []
    skipped: dict[str, str] = {}
    for name in names:
        if name not in registry:
            skipped[name] = f"family {name!r} is not in this build's recsys.models registry"
        elif missing := _missing_packages(name):
            skipped[name] = f"family {name!r} needs {', '.join(missing)} (pip install wayfinder[deep])"
        else:
            runnable.append(name)
    return runnable, skipped


def _grid_with_seed(family: str, grid: Grid, seed: int) -> list[dict[str, Any]]:
    points = [dict(p) for p in ParameterGrid(grid)]
    takes_seed = "random_state" in inspect.signature(_registry()[family]).parameters
    if takes_seed:
        for point in points:
            point.setdefault("random_state", seed)
    return points


def _check_grids(families: Sequence[str], grids: Mapping[str, Grid], seed: int) -> dict[str, list[dict]]:
    from recsys.models import build

    checked = {}
    for family in families:
        try:
            points = _grid_with_seed(family, grids.get(family, DEFAULT_GRIDS.get(family, {})), seed)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"grid of family {family!r} is not a valid parameter grid: {exc}") from exc
        if not points:
            raise ConfigError(f"grid of family {family!r} is empty")
        for point in points:
            build(family, **point)  # constructors only store: this just checks the parameter names
        checked[family] = points
    return checked


def _id_keys(ids: pd.Series) -> pd.Series:
    """Original ids as integers when every one is an integer (numeric order), else as strings."""
    numbers = pd.to_numeric(ids, errors="coerce")
    if numbers.notna().all() and (numbers % 1 == 0).all():
        return numbers.astype(np.int64)
    return ids.astype(str)


def _read_interactions(root: Location) -> tuple[pd.DataFrame, str]:
    columns = ["user_id", "item_id", "item_idx", "event_type", "value", "weight"]
    try:
        frame = read_frames(root.child("interactions"), columns=columns)
    except SourceNotFoundError:
        raise
    except (KeyError, ValueError) as exc:  # pyarrow reports a missing column as a ValueError subclass
        raise SchemaError(
            f"{root.child('interactions').uri} must hold preprocessed interactions with columns "
            f"{columns}: {exc}"
        ) from exc
    frame["user_id"] = _id_keys(frame["user_id"])
    frame["item_id"] = _id_keys(frame["item_id"])
    ratings = frame["event_type"] == "rating"
    if ratings.any():
        positives = frame.loc[ratings, ["user_id", "item_id", "item_idx", "value"]]
        return positives.rename(columns={"value": "score"}).assign(threshold=3.0), "rating >= 3"
    positives = frame[["user_id", "item_id", "item_idx"]].assign(
        score=(frame["weight"].to_numpy() > 0).astype(np.float64), threshold=1.0
    )
    return positives, "weight > 0"


def _read_item_features(root: Location, item_idx: np.ndarray) -> sp.csr_matrix | None:
    location = root.child("features", "item_matrix.npz")
    if not location.exists():
        return None
    with location.fs.open_input_stream(location.path) as stream:
        matrix = sp.load_npz(io.BytesIO(stream.read())).tocsr()
    if item_idx.size and item_idx.max() >= matrix.shape[0]:
        raise DataError(
            f"{location.uri} has {matrix.shape[0]} rows but interactions use item_idx {item_idx.max()}; "
            "rerun preprocessing so both come from the same run"
        )
    return sp.csr_matrix(matrix[item_idx], dtype=np.float32)


def load_shared_data(
    data: str | Location, *, protocol: str = "recbole", seed: int = 0
) -> tuple[SharedData, dict[str, Any]]:
    """Read a preprocessed dataset and build the protocol's split.

    Parameters
    ----------
    data : str or Location
        The preprocessing output directory (local path or URI).
    protocol : str
        One of :data:`PROTOCOLS`.
    seed : int
        Seed of the split.

    Returns
    -------
    (SharedData, dict)
        The split with the aligned item features, and the dataset summary of ``metrics.json``
        (counts, which events were positives, popularity of the test positives).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    root = data if isinstance(data, Location) else Location.parse(str(data))
    if not root.is_dir():
        raise SourceNotFoundError(
            f"data directory {root.uri} does not exist; run `wayfinder preprocess --out {root.uri}` first"
        )
    positives, rule = _read_interactions(root)
    if positives.empty:
        raise DataError(f"{root.uri} has no interactions to evaluate on")
    threshold = float(positives["threshold"].iloc[0])
    split = prepare_recbole(positives, seed=seed, threshold=threshold, rating_col="score")
    index_of = positives.drop_duplicates("item_id").set_index("item_id")["item_idx"]
    item_idx = index_of.loc[split.item_ids].to_numpy(dtype=np.int64)
    shared = SharedData(split=split, item_features=_read_item_features(root, item_idx))
    test_users = np.diff(split.test.indptr) > 0
    counts = np.asarray((split.train_valid > 0).sum(axis=0)).ravel()
    dataset = {
        "source": root.uri,
        "positives": rule,
        "seed": seed,
        "users": split.n_users,
        "items": split.n_items,
        "interactions": int(split.train_valid.nnz + split.test.nnz),
        "train": int(split.train.nnz),
        "valid": int(split.valid.nnz),
        "test": int(split.test.nnz),
        "test_users": int(test_users.sum()),
        "item_features": shared.item_features is not None,
        "popularity": popularity_profile(split.test.indices, counts),
    }
    return shared, dataset


def _run_family(
    family: str,
    *,
    shared: SharedData,
    grids: Mapping[str, list[dict[str, Any]]],
    k_values: Sequence[int],
    cv_folds: int | None,
    seed: int,
) -> dict[str, Any]:
    from recsys.models import build

    return evaluate_family(
        family,
        [{name: [value] for name, value in point.items()} for point in grids[family]],
        shared,
        factory=functools.partial(build, family),
        k_values=k_values,
        cv_folds=cv_folds,
        seed=seed,
    )


def _check_k_values(k_values: Sequence[int]) -> list[int]:
    if isinstance(k_values, str) or not k_values:
        raise ConfigError(f"k_values must be a non-empty sequence of positive integers, got {k_values!r}")
    if any(not isinstance(k, (int, np.integer)) or k < 1 for k in k_values):
        raise ConfigError(f"every k must be a positive integer, got {list(k_values)}")
    return sorted({int(k) for k in k_values} | {10})


def evaluate_families(
    data: str | Location | tuple[SharedData, dict[str, Any]],
    families: Sequence[str] | None,
    protocol: str = "recbole",
    grids: Mapping[str, Grid] | None = None,
    k_values: Sequence[int] = (5, 10, 20),
    cv_folds: int | None = None,
    seed: int = 0,
    executor: Executor | None = None,
    *,
    on_message: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Select, refit and test every family on one split; return the ``metrics.json`` payload.

    Parameters
    ----------
    data : str, Location or (SharedData, dict)
        The preprocessing output directory, or what :func:`load_shared_data` returned for it.
    families : sequence of str or None
        Registry names; ``None`` for every family available (see :func:`resolve_families`).
        Optional families that cannot run here are skipped with a message.
    protocol : str
        One of :data:`PROTOCOLS`.
    grids : dict, optional
        Per-family grids replacing those of :data:`DEFAULT_GRIDS`.
    k_values : sequence of int
        Cut-offs of the test metrics; 10 is always added (selection and the summary use it).
    cv_folds : int or None
        Also cross-validate each family's chosen parameters over ``cv_folds`` user folds.
    seed : int
        Seed of the split, of the folds and of the models that take ``random_state``.
    executor : Executor, optional
        Runs the families (one task each); default :class:`~recsys.data.runner.SerialExecutor`.
    on_message : callable, optional
        Receives one line per skipped or finished family.

    Returns
    -------
    dict
        ``{"protocol": ..., "dataset": {...}, "families": {name: {"ndcg@10": ..., "params": ...,
        "fit_seconds": ..., ...}}}``.

    Examples
    --------
    >>> # metrics = evaluate_families("out/ml-small", ["popularity", "ease"], cv_folds=5)
    >>> # metrics["families"]["ease"]["ndcg@10"]
    """
    say = on_message or (lambda _: None)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    if cv_folds is not None and cv_folds < 2:
        raise ConfigError(f"cv_folds must be at least 2 (or None for no cross-validation), got {cv_folds}")
    ks = _check_k_values(k_values)
    runnable, skipped = resolve_families(families)
    unknown_grids = sorted(set(grids or {}) - set(_registry()) - set(OPTIONAL_FAMILIES))
    if unknown_grids:
        raise ConfigError(f"grids name unknown families {unknown_grids}")
    checked = _check_grids(runnable, grids or {}, seed)
    shared, dataset = (
        data if isinstance(data, tuple) else load_shared_data(data, protocol=protocol, seed=seed)
    )
    if shared.item_features is None:
        for family in [f for f in runnable if f in _NEEDS_FEATURES]:
            runnable.remove(family)
            skipped[family] = f"family {family!r} needs features/item_matrix.npz, which the data lacks"
    for family, reason in skipped.items():
        say(f"skipping {family}: {reason}")
    if not runnable:
        raise ConfigError(f"no family can run here: {'; '.join(skipped.values())}")
    task = functools.partial(
        _run_family, shared=shared, grids=checked, k_values=ks, cv_folds=cv_folds, seed=seed
    )
    order = sorted(runnable, key=lambda f: _SLOW_FIRST.index(f) if f in _SLOW_FIRST else len(_SLOW_FIRST))
    done = dict(zip(order, (executor or SerialExecutor()).map(task, order, stage="families"), strict=True))
    results = [done[family] for family in runnable]
    for family, result in zip(runnable, results, strict=True):
        say(
            f"{family}: ndcg@10={result['ndcg@10']:.4f} recall@10={result['recall@10']:.4f} "
            f"params={result['params']} fit={result['fit_seconds']:.2f}s total={result['seconds']:.1f}s"
        )
    return {"protocol": protocol, "dataset": dataset, "families": dict(zip(runnable, results, strict=True))}
