"""Machinery shared by every model family: input checks, batched top-k, masking, artifacts.

A family subclasses :class:`RecommenderBase` and provides four private hooks:

* ``_score_block(rows)``: dense ``(n, n_items)`` float32 scores for a CSR block of history rows;
* ``_similarity_block(item_ids)``: dense ``(len(item_ids), n_items)`` item-to-item scores;
* ``_state()`` / ``_set_state(arrays)``: the learned ``attr_`` state as plain numpy arrays.

The base class turns those into the public ``score``, ``recommend``, ``similar_items``, ``save`` and
``load``, chunked over users so that memory stays bounded whatever the number of rows.

Artifacts are a directory holding ``model.json`` (``family``, ``format_version``, ``params``) and
``arrays.npz`` (numeric arrays only, loaded with ``allow_pickle=False``); nothing is ever pickled.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp

from recsys.errors import ArtifactError, ConfigError, DataError

#: Upper bound on the number of float32 cells of one dense score block (64 MiB).
BLOCK_CELLS = 1 << 24
MODEL_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"

T = TypeVar("T", bound="RecommenderBase")


# --------------------------------------------------------------------------- inputs


def as_csr(matrix: Any, *, n_items: int | None = None, name: str = "user_rows") -> sp.csr_matrix:
    """Return ``matrix`` as a float32 CSR matrix with summed duplicates and sorted indices.

    Raises :class:`DataError` when it is not 2-D or (given ``n_items``) has the wrong width.
    """
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    else:
        dense = np.asarray(matrix, dtype=np.float32)
        if dense.ndim != 2:
            raise DataError(f"{name} must be a 2-D users x items matrix, got shape {dense.shape}")
        csr = sp.csr_matrix(dense)
    csr.sum_duplicates()
    if n_items is not None and csr.shape[1] != n_items:
        raise DataError(
            f"{name} has {csr.shape[1]} item columns but the model was fitted on {n_items} items; "
            "encode histories with the item index of the training data"
        )
    return csr


def check_item_ids(item_ids: Any, n_items: int, name: str = "item_ids") -> np.ndarray:
    """Return ``item_ids`` as a 1-D int64 array, raising :class:`ConfigError` on out-of-range ids."""
    ids = np.asarray(item_ids).reshape(-1)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"{name} must be integer item indices, got dtype {ids.dtype}")
    ids = ids.astype(np.int64, copy=False)
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        raise ConfigError(f"{name} holds ids outside [0, {n_items}): min {ids.min()}, max {ids.max()}")
    return ids


def check_k(k: int) -> int:
    """Validate the number of results asked for."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


def row_chunks(n_rows: int, width: int, cells: int | None = None) -> Iterator[slice]:
    """Slices of rows such that ``rows x width`` cells stay under ``cells`` (default BLOCK_CELLS)."""
    step = max(1, (BLOCK_CELLS if cells is None else cells) // max(1, width))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def positive_part(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Copy of ``matrix`` without its zero and negative entries."""
    out = matrix.copy()
    out.data = np.maximum(out.data, 0.0)
    out.eliminate_zeros()
    return out


def row_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def cosine_block(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query row against every row of ``vectors`` (float32)."""
    return (row_normalize(query) @ row_normalize(vectors).T).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- top-k


def excluded_items(n_items: int, allow: Any = None, deny: Any = None) -> np.ndarray | None:
    """Item ids that may not be recommended given an allow list and a deny list (``None``: none)."""
    if allow is None and deny is None:
        return None
    banned = np.zeros(n_items, dtype=bool)
    if allow is not None:
        banned[:] = True
        banned[check_item_ids(allow, n_items, "allow")] = False
    if deny is not None:
        banned[check_item_ids(deny, n_items, "deny")] = True
    return np.flatnonzero(banned)


def mask_seen(scores: np.ndarray, rows: sp.csr_matrix) -> None:
    """Set the score of every stored entry of ``rows`` (liked or disliked) to ``-inf`` in place."""
    owners = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    scores[owners, rows.indices] = -np.inf


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of ``scores``, highest first, ties broken by lower id.

    ``-inf`` (and NaN) scores are never returned: such slots, and slots beyond the number of
    columns, hold id ``-1`` and score ``-inf``. ``scores`` may be modified (NaN replaced).

    Uses ``np.argpartition`` and then sorts only the ``k`` winners; rows whose k-th value is tied
    with unselected columns are fixed up so that the lowest ids win, which makes results
    independent of the partition algorithm.
    """
    n, m = scores.shape
    ids_out = np.full((n, k), -1, dtype=np.int64)
    scores_out = np.full((n, k), -np.inf, dtype=np.float32)
    if n == 0 or m == 0:
        return ids_out, scores_out
    nan = np.isnan(scores)
    if nan.any():
        scores[nan] = -np.inf
    kk = min(k, m)
    if kk < m:
        chosen = np.argpartition(scores, m - kk, axis=1)[:, m - kk :]
        values = np.take_along_axis(scores, chosen, axis=1)
        threshold = values.min(axis=1)
        tied_total = (scores == threshold[:, None]).sum(axis=1)
        tied_chosen = (values == threshold[:, None]).sum(axis=1)
        for r in np.flatnonzero((tied_total > tied_chosen) & np.isfinite(threshold)):
            above = chosen[r][values[r] > threshold[r]]
            tied = np.flatnonzero(scores[r] == threshold[r])[: kk - above.size]
            chosen[r] = np.concatenate([above, tied])
            values[r] = scores[r, chosen[r]]
    else:
        chosen = np.broadcast_to(np.arange(m), (n, m)).copy()
        values = scores.copy()
    order = np.lexsort((chosen, -values), axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    valid = values > -np.inf
    ids_out[:, :kk] = np.where(valid, chosen, -1)
    scores_out[:, :kk] = np.where(valid, values, -np.inf)
    return ids_out, scores_out


# --------------------------------------------------------------------------- artifacts


def pack_csr(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Arrays that store a CSR matrix under ``prefix`` in an npz file."""
    return {
        f"{prefix}.data": matrix.data,
        f"{prefix}.indices": matrix.indices,
        f"{prefix}.indptr": matrix.indptr,
        f"{prefix}.shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def unpack_csr(prefix: str, arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix:
    """Inverse of :func:`pack_csr`."""
    shape = tuple(int(v) for v in arrays[f"{prefix}.shape"])
    parts = (arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"])
    return sp.csr_matrix(parts, shape=shape)


def write_artifact(
    path: str | Path, family: str, version: int, params: Mapping[str, Any], arrays: Mapping[str, Any]
) -> Path:
    """Write ``model.json`` and ``arrays.npz`` into directory ``path`` (created if needed)."""
    directory = Path(path)
    try:
        meta = json.dumps({"family": family, "format_version": version, "params": dict(params)}, indent=2)
    except TypeError as exc:
        raise ArtifactError(
            f"cannot save {family} model to {directory}: its parameters are not JSON values ({exc}); "
            "pass plain numbers, strings, lists and dicts (e.g. an int random_state)"
        ) from exc
    plain = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in plain.items():
        if value.dtype == object:
            raise ArtifactError(f"cannot save {family} model: array {name!r} has dtype object")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_text(meta + "\n", encoding="utf-8")
    savez: Any = np.savez  # numpy's stub mistakes ``**plain`` for its allow_pickle flag
    with open(directory / ARRAYS_FILE, "wb") as handle:
        savez(handle, **plain)
    return directory


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The parsed ``model.json`` of an artifact directory."""
    file = Path(path) / MODEL_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"no model artifact at {Path(path)}: {MODEL_FILE} is missing") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model artifact {file} is unreadable or not JSON: {exc}") from exc
    if not isinstance(meta, dict) or not {"family", "format_version", "params"} <= meta.keys():
        raise ArtifactError(f"model artifact {file} lacks family/format_version/params")
    return meta


def read_artifact(
    path: str | Path, family: str, version: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read an artifact written by :func:`write_artifact`, checking family and format version."""
    meta = read_metadata(path)
    file = Path(path) / MODEL_FILE
    if meta["family"] != family:
        raise ArtifactError(
            f"{file} holds a {meta['family']!r} model, not {family!r}; load it with "
            "recsys.models.load(path) or the matching class"
        )
    if meta["format_version"] != version:
        raise ArtifactError(
            f"{file} has format_version {meta['format_version']!r}; this code reads version {version} "
            f"of the {family!r} format: refit and save the model again"
        )
    try:
        with np.load(Path(path) / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"arrays of model artifact {Path(path)} are missing or corrupt: {exc}") from exc
    return dict(meta["params"]), arrays


# --------------------------------------------------------------------------- base class


class RecommenderBase:
    """Common implementation of the :class:`~recsys.models.base.Recommender` protocol.

    Subclasses set ``family``, take keyword-only hyperparameters in ``__init__`` (stored under
    the same names, no logic), and implement the private hooks described in the module docstring.
    """

    family: ClassVar[str] = ""
    format_version: ClassVar[int] = 1
    n_items_: int

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments of this model; ``type(self)(**model.get_params())`` rebuilds it."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {name: copy.deepcopy(getattr(self, name)) for name in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # hooks ------------------------------------------------------------------
    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _block_width(self) -> int:
        """Widest dense intermediate per row of a score block (users x training users for kNN)."""
        return self.n_items_

    # public API -------------------------------------------------------------
    def check_fitted(self) -> None:
        """Raise :class:`ConfigError` if :meth:`fit` (or :meth:`load`) has not run yet."""
        if not hasattr(self, "n_items_"):
            raise ConfigError(f"{type(self).__name__} is not fitted yet: call fit(interactions) first")

    def score(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """Unmasked ``(n_users, n_items)`` float32 scores for history rows."""
        self.check_fitted()
        rows = as_csr(user_rows, n_items=self.n_items_)
        out = np.empty((rows.shape[0], self.n_items_), dtype=np.float32)
        for chunk in row_chunks(rows.shape[0], self._block_width()):
            out[chunk] = self._score_block(rows[chunk])
        return out

    def recommend(
        self,
        user_rows: sp.csr_matrix,
        k: int = 10,
        *,
        filter_seen: bool = True,
        allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids (int64) and scores (float32), two ``(n, k)`` arrays.

        ``filter_seen`` removes every item stored in the user's row (liked or disliked); ``allow``
        restricts candidates to those ids, ``deny`` removes ids. Rows with fewer than ``k``
        candidates are padded with id ``-1`` and score ``-inf``. Ties go to the lower item id.
        """
        self.check_fitted()
        k = check_k(k)
        rows = as_csr(user_rows, n_items=self.n_items_)
        banned = excluded_items(self.n_items_, allow, deny)
        ids = np.empty((rows.shape[0], k), dtype=np.int64)
        scores = np.empty((rows.shape[0], k), dtype=np.float32)
        for chunk in row_chunks(rows.shape[0], self._block_width()):
            block_rows = rows[chunk]
            block = np.array(self._score_block(block_rows), dtype=np.float32)
            if filter_seen:
                mask_seen(block, block_rows)
            if banned is not None:
                block[:, banned] = -np.inf
            ids[chunk], scores[chunk] = top_k(block, k)
        return ids, scores

    def similar_items(self, item_ids: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` most similar items for each item id (the item itself excluded)."""
        self.check_fitted()
        k = check_k(k)
        items = check_item_ids(item_ids, self.n_items_)
        ids = np.empty((items.size, k), dtype=np.int64)
        scores = np.empty((items.size, k), dtype=np.float32)
        for chunk in row_chunks(items.size, self.n_items_):
            block = np.array(self._similarity_block(items[chunk]), dtype=np.float32)
            block[np.arange(block.shape[0]), items[chunk]] = -np.inf
            ids[chunk], scores[chunk] = top_k(block, k)
        return ids, scores

    def save(self, path: str | Path) -> None:
        """Write the fitted model to directory ``path`` (``model.json`` + ``arrays.npz``)."""
        self.check_fitted()
        state = self._state()
        state["n_items_"] = np.asarray(self.n_items_, dtype=np.int64)
        write_artifact(path, self.family, self.format_version, self.get_params(), state)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        """Read a model written by :meth:`save`; its scores are identical to the saved model's."""
        params, arrays = read_artifact(path, cls.family, cls.format_version)
        try:
            model = cls(**params)
            model.n_items_ = int(arrays["n_items_"])
            model._set_state(arrays)
        except (TypeError, KeyError) as exc:
            raise ArtifactError(
                f"model artifact {Path(path)} does not match {cls.__name__}: {exc!r}; refit and save again"
            ) from exc
        return model
