"""Seeded train / validation / test splits of an interactions table.

Every function takes an interactions :class:`pandas.DataFrame` whose users and items are already
dense integer indices (``user_id`` in ``[0, n_users)``, ``item_id`` in ``[0, n_items)``), plus a
``timestamp`` column for the temporal splits and optionally a value column (a weight or rating),
and returns **positional index arrays** (sorted, ``int64``) into that frame: ``df.iloc[idx]``
gives the part. :func:`to_csr` turns a part into the sparse matrix models are fitted on.

Results never depend on the order of the input rows: random splits start from the rows sorted by
(user, item, position), temporal ones sort stably by timestamp.

Per-user ratio rounding (RecBole's ``_calcu_split_ids``), see :func:`split_counts`: with ratios
normalised to sum 1 and a user's ``n`` interactions, every part but the first gets
``floor(ratio * n)``, the first (train) the rest; then, from the last part backwards, a part whose
``ratio * n`` lies in ``(0, 1)`` takes one interaction from train while train keeps more than one.
For 0.8/0.1/0.1: ``n = 1`` -> ``1 / 0 / 0``; ``n = 2`` -> ``1 / 0 / 1``; ``n = 3..19`` ->
``n-2 / 1 / 1``; ``n = 20..29`` -> ``n-4 / 2 / 2``; in general ``n - 2 floor(n/10) / floor(n/10) /
floor(n/10)`` from ``n = 10`` on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError, SchemaError

__all__ = [
    "UserFold",
    "kfold_users",
    "leave_last_k",
    "ratio_split",
    "split_counts",
    "temporal_split",
    "to_csr",
]


def _column(df: pd.DataFrame, name: str, *, integer: bool = False) -> np.ndarray:
    if name not in df.columns:
        raise SchemaError(f"column {name!r} is missing; present: {list(df.columns)}", column=name)
    values = df[name].to_numpy()
    if integer:
        if not np.issubdtype(values.dtype, np.integer):
            raise SchemaError(
                f"column {name!r} must hold dense integer indices, got dtype {values.dtype}; "
                "re-index ids first (e.g. pandas.factorize)",
                column=name,
            )
        if values.size and values.min() < 0:
            raise SchemaError(f"column {name!r} has negative indices", column=name)
        return values.astype(np.int64)
    return values


def _check_ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray(ratios, dtype=np.float64)
    if r.ndim != 1 or r.size < 2 or (r < 0).any() or r.sum() <= 0:
        raise ConfigError(f"ratios must be >= 2 non-negative numbers with a positive sum, got {ratios}")
    return r / r.sum()


def split_counts(sizes: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """Number of interactions per part for groups of the given sizes (RecBole's rounding).

    Parameters
    ----------
    sizes : ndarray of int, shape (n_groups,)
        Interactions per user (or one total).
    ratios : sequence of float
        Part ratios, normalised to sum 1; the first part is train.

    Returns
    -------
    ndarray of int64, shape (n_groups, n_parts)
        Rows sum to ``sizes``.

    Examples
    --------
    >>> split_counts([5, 10, 25, 1], (0.8, 0.1, 0.1)).tolist()
    [[3, 1, 1], [8, 1, 1], [21, 2, 2], [1, 0, 0]]
    """
    r = _check_ratios(ratios)
    n = np.asarray(sizes, dtype=np.int64)
    exact = r[None, :] * n[:, None]
    counts = np.floor(exact).astype(np.int64)
    counts[:, 0] = n - counts[:, 1:].sum(axis=1)
    for part in range(r.size - 1, 0, -1):
        bump = (counts[:, 0] > 1) & (exact[:, part] > 0) & (exact[:, part] < 1)
        counts[:, part] += bump
        counts[:, 0] -= bump
    return counts


def _position_in_group(groups: np.ndarray) -> np.ndarray:
    """Position of each element within its run, for an array already sorted by group."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    run_lengths = np.diff(np.r_[starts, groups.size])
    return np.arange(groups.size) - np.repeat(starts, run_lengths)


def _parts(order: np.ndarray, part_of_sorted: np.ndarray, n_parts: int) -> tuple[np.ndarray, ...]:
    return tuple(np.sort(order[part_of_sorted == p]) for p in range(n_parts))


def ratio_split(
    df: pd.DataFrame,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int | np.random.Generator,
    user_col: str = "user_id",
    item_col: str = "item_id",
) -> tuple[np.ndarray, ...]:
    """Per-user random split by ratio (RecBole ``RS`` with ``group_by=user``).

    Each user's interactions are shuffled with the seed and cut into consecutive parts of the sizes
    given by :func:`split_counts`.

    Parameters
    ----------
    df : DataFrame
        Interactions with integer ``user_col`` and ``item_col``.
    ratios : sequence of float
        Part ratios (train first).
    seed : int or Generator
        Randomness; the same seed and rows give the same split whatever their order.

    Returns
    -------
    tuple of ndarray
        One sorted positional index array per part.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user_id": [0] * 10, "item_id": range(10)})
    >>> [len(p) for p in ratio_split(df, (0.8, 0.1, 0.1), seed=0)]
    [8, 1, 1]
    """
    users = _column(df, user_col, integer=True)
    items = _column(df, item_col, integer=True)
    rng = np.random.default_rng(seed)
    canonical = np.lexsort((np.arange(users.size), items, users))
    shuffled = canonical[rng.permutation(users.size)]
    order = shuffled[np.argsort(users[shuffled], kind="stable")]
    sorted_users = users[order]
    position = _position_in_group(sorted_users)
    uniques, inverse = np.unique(sorted_users, return_inverse=True)
    bounds = np.cumsum(split_counts(np.bincount(inverse, minlength=uniques.size), ratios), axis=1)
    part = (position[:, None] >= bounds[inverse]).sum(axis=1)
    return _parts(order, part, bounds.shape[1])


def temporal_split(
    df: pd.DataFrame, ratios: Sequence[float] = (0.8, 0.2), *, time_col: str = "timestamp"
) -> tuple[np.ndarray, ...]:
    """Global split by timestamp quantiles: the oldest share is train, the newest the last part.

    The cut between parts is the timestamp of the first row of the later part, with part sizes from
    :func:`split_counts` on the total; rows sharing that timestamp all go to the later part, so no
    instant is split across parts.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"timestamp": [5, 1, 4, 2, 3]})
    >>> [p.tolist() for p in temporal_split(df, (0.6, 0.4))]
    [[1, 3, 4], [0, 2]]
    """
    times = _column(df, time_col)
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    cuts = np.cumsum(split_counts(np.array([times.size]), ratios)[0])[:-1]
    part = np.zeros(times.size, dtype=np.int64)
    for cut in cuts:
        if cut < times.size:
            part += sorted_times >= sorted_times[cut]
    return _parts(order, part, cuts.size + 1)


def leave_last_k(
    df: pd.DataFrame,
    k: int = 1,
    *,
    min_history: int = 1,
    user_col: str = "user_id",
    time_col: str = "timestamp",
) -> tuple[np.ndarray, np.ndarray]:
    """Per user, hold out the ``k`` latest interactions (timestamp ties: later rows are later).

    A user keeps at least ``min_history`` interactions in the history, so users with
    ``n <= min_history`` are held out nothing and ``n - min_history`` caps the held-out count.

    Returns
    -------
    (history, heldout) : tuple of ndarray
        Sorted positional indices.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user_id": [0, 0, 0, 1], "timestamp": [3, 1, 2, 9]})
    >>> [p.tolist() for p in leave_last_k(df, k=1)]
    [[1, 2, 3], [0]]
    """
    if k < 0 or min_history < 0:
        raise ConfigError(f"k ({k}) and min_history ({min_history}) must be >= 0")
    users = _column(df, user_col, integer=True)
    times = _column(df, time_col)
    order = np.lexsort((np.arange(users.size), times, users))
    sorted_users = users[order]
    uniques, inverse = np.unique(sorted_users, return_inverse=True)
    sizes = np.bincount(inverse, minlength=uniques.size)
    n_held = np.clip(np.minimum(k, sizes - min_history), 0, None)
    from_end = sizes[inverse] - 1 - _position_in_group(sorted_users)
    held = (from_end < n_held[inverse]).astype(np.int64)
    history, heldout = _parts(order, held, 2)
    return history, heldout


@dataclass(frozen=True)
class UserFold:
    """One fold of :func:`kfold_users`: positional indices into the interactions frame.

    Attributes
    ----------
    users : ndarray
        The fold's users.
    train : ndarray
        Interactions of every other user.
    history : ndarray
        The fold users' interactions given to the model as input.
    heldout : ndarray
        The fold users' interactions to predict.
    """

    users: np.ndarray
    train: np.ndarray
    history: np.ndarray
    heldout: np.ndarray


def kfold_users(
    df: pd.DataFrame,
    n_folds: int = 5,
    *,
    seed: int | np.random.Generator,
    holdout_ratio: float = 0.2,
    user_col: str = "user_id",
    item_col: str = "item_id",
) -> list[UserFold]:
    """Partition users into ``n_folds`` random folds; split each user's interactions once.

    Every user's interactions are split into history / held-out by :func:`ratio_split` with ratios
    ``(1 - holdout_ratio, holdout_ratio)``; fold ``f`` holds out the users of its part.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user_id": [0] * 5 + [1] * 5, "item_id": list(range(5)) * 2})
    >>> folds = kfold_users(df, 2, seed=0)
    >>> [(f.users.size, f.train.size, f.history.size, f.heldout.size) for f in folds]
    [(1, 5, 4, 1), (1, 5, 4, 1)]
    """
    if not 0 < holdout_ratio < 1:
        raise ConfigError(f"holdout_ratio must be in (0, 1), got {holdout_ratio}")
    users = _column(df, user_col, integer=True)
    distinct = np.unique(users)
    if not 2 <= n_folds <= distinct.size:
        raise ConfigError(f"n_folds must be in [2, {distinct.size}] (the number of users), got {n_folds}")
    rng = np.random.default_rng(seed)
    history_all, heldout_all = ratio_split(
        df, (1 - holdout_ratio, holdout_ratio), seed=rng, user_col=user_col, item_col=item_col
    )
    folds = []
    for fold_users in np.array_split(rng.permutation(distinct), n_folds):
        in_fold = np.isin(users, fold_users)
        folds.append(
            UserFold(
                users=np.sort(fold_users),
                train=np.flatnonzero(~in_fold),
                history=history_all[in_fold[history_all]],
                heldout=heldout_all[in_fold[heldout_all]],
            )
        )
    return folds


def to_csr(
    df: pd.DataFrame,
    n_users: int,
    n_items: int,
    value_col: str | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
) -> sp.csr_matrix:
    """``n_users x n_items`` float32 CSR of the interactions; duplicate pairs are summed.

    ``value_col=None`` puts 1 for each interaction.

    Examples
    --------
    >>> import pandas as pd
    >>> to_csr(pd.DataFrame({"user_id": [0, 1], "item_id": [2, 0]}), 2, 3).toarray()
    array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
    """
    users = _column(df, user_col, integer=True)
    items = _column(df, item_col, integer=True)
    if users.size and users.max() >= n_users:
        raise DataError(f"user index {users.max()} >= n_users ({n_users})", column=user_col)
    if items.size and items.max() >= n_items:
        raise DataError(f"item index {items.max()} >= n_items ({n_items})", column=item_col)
    values = np.ones(users.size) if value_col is None else _column(df, value_col).astype(np.float64)
    matrix = sp.csr_matrix((values, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix
