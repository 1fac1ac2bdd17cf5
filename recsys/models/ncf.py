"""Neural collaborative filtering: NeuMF (He et al., WWW 2017), a GMF and an MLP tower, in PyTorch.

PyTorch is optional (``pip install 'wayfinder[deep]'``) and imported only inside functions, so
``import recsys.models`` works without it. The learned weights are numpy arrays (``weights_``): the
artifact is plain npz arrays, and scoring, fold-in and ``load`` run on the CPU whatever device
trained the model.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.models._common import (
    RecommenderBase,
    as_csr,
    cosine_block,
    mask_seen,
    positive_part,
    row_chunks,
    top_k,
)

EpochCallback = Callable[[int, Any], None]
_NO_TORCH = "neural CF needs PyTorch: pip install 'wayfinder[deep]' (CPU: pip install torch==2.13.0)"
_DEVICES = ("auto", "cpu", "cuda")
_COUNTERS = ("seed_", "epochs_done_", "best_epoch_")
_INTEGERS = ("factors", "epochs", "batch_size", "negatives", "patience", "num_threads", "fold_in_steps")


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ConfigError(_NO_TORCH) from exc
    return torch


@contextmanager
def _threads(n: int) -> Iterator[Any]:
    """Yield torch with ``torch.set_num_threads(n)``, restoring the process-wide value afterwards."""
    torch = _torch()
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)


def _holdout(matrix: sp.csr_matrix, fraction: float, rng: np.random.Generator) -> tuple[Any, Any]:
    """Per user, ``floor(fraction * n_u)`` random positives moved from train to validation."""
    counts = np.diff(matrix.indptr)
    owner = np.repeat(np.arange(matrix.shape[0]), counts)
    rank = np.empty(matrix.nnz, dtype=np.int64)
    rank[np.lexsort((rng.random(matrix.nnz), owner))] = np.arange(matrix.nnz) - matrix.indptr[owner]
    held = (rank < np.floor(fraction * counts)[owner]).astype(np.float32)
    valid = sp.csr_matrix((held, matrix.indices, matrix.indptr), matrix.shape).multiply(matrix).tocsr()
    valid.eliminate_zeros()
    return (matrix - valid).tocsr(), valid


def _mlp_logit(t: Mapping[str, Any], first: Any, dropout: float = 0.0, generator: Any = None) -> Any:
    """The MLP tower's share of the logit from its first layer's pre-activation (any leading shape).

    Dropout follows every hidden layer when a torch ``generator`` is given (training only).
    """
    torch = _torch()
    x, j = torch.relu(first), 1
    while True:
        if generator is not None and dropout > 0:
            x = x * (torch.rand(x.shape, generator=generator, device=x.device) >= dropout) / (1.0 - dropout)
        if f"mlp{j}.w" not in t:
            return x @ t["out.w"][-x.shape[-1] :]
        x, j = torch.relu(x @ t[f"mlp{j}.w"].T + t[f"mlp{j}.b"]), j + 1


def _item_first(t: Mapping[str, Any]) -> Any:
    """Item half of the first MLP layer, ``W_item q'_i + b``, for every item."""
    return t["item_mlp"] @ t["mlp0.w"][:, t["item_mlp"].shape[1] :].T + t["mlp0.b"]


class NCFRecommender(RecommenderBase):
    """NeuMF: ``logit = h . [p_u * q_i, MLP([p'_u, q'_i])] + b``, BCE against sampled negatives.

    Training: each positive entry (confidence > 0; others are ignored) is a label-1 pair with
    ``negatives`` label-0 items drawn uniformly among the user's non-positives (up to three redraws);
    Adam minimises the binary cross-entropy; the towers train jointly (no pre-training). With
    ``validation_fraction > 0`` that share of each user's positives (rounded down, seeded) is held
    out and ranked after each epoch (NDCG@10, trained user vectors, train items masked); :meth:`fit`
    keeps the best epoch's weights and stops after ``patience`` epochs without improvement.
    ``on_epoch(epochs_done, model)`` runs after each epoch of ``fit`` or :meth:`partial_fit` (where
    Ray Tune's ASHA reports).

    Fold-in, for every history row (training users too: ranking never reads the trained user
    table): the row's GMF and MLP user vectors start at the mean trained user and take
    ``fold_in_steps`` Adam steps on the BCE of its positives against ``negatives`` sampled items
    each, every item-side weight and layer frozen. The loss is a sum of per-row means and negatives
    are a seeded stream indexed by the position in the row, so a row's vectors ignore its batch.

    Embeddings: ``item_embeddings`` (GMF item vectors times the GMF half of ``h``) dotted with
    ``fold_in`` (GMF user vectors) is the GMF part of the logit; the MLP tower is not in that space,
    whose ranking approximates ``recommend``. ``similar_items`` is the cosine in that space.

    Parameters
    ----------
    factors : int
        Size of each embedding (GMF and MLP, user and item).
    mlp_layers : tuple of int
        Hidden widths of the MLP (its input is the ``2 * factors`` concatenation); at least one.
    dropout, learning_rate, weight_decay : float
        Dropout after each hidden layer while training; Adam's step size and L2 penalty.
    epochs, batch_size, negatives, patience : int
        Most epochs of :meth:`fit`, pairs per step, negatives per positive, early-stopping patience.
    validation_fraction : float
        Share of each user's positives held out for early stopping (0: none, no stopping).
    fold_in_steps, fold_in_learning_rate : int, float
        Adam steps of fold-in and their size (0 steps: every row is the mean user).
    random_state : int or None
        Seed of initialisation, holdout, sampling, dropout and fold-in negatives.
    device : {"auto", "cpu", "cuda"}
        Where to train (``"auto"``: CUDA when available); scoring and fold-in run on the CPU.
    num_threads : int
        ``torch.set_num_threads`` while training and scoring (restored afterwards).

    Attributes
    ----------
    weights_ : dict of str to ndarray
        float32 ``user_gmf``, ``item_gmf``, ``user_mlp``, ``item_mlp``, ``mlp{j}.w``, ``mlp{j}.b``,
        ``out.w`` (``h``), ``out.b``.
    epochs_done_, best_epoch_ : int
        Epochs run so far; the epoch whose weights :meth:`fit` kept.
    validation_ndcg_ : ndarray
        Validation NDCG@10 after each epoch (empty without a holdout).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0, 0]] * 4 + [[0, 0, 1, 1]] * 4, dtype="float32")
    >>> model = NCFRecommender(factors=4, mlp_layers=(8,), epochs=60, validation_fraction=0,
    ...                        learning_rate=0.05, device="cpu", random_state=0).fit(X)
    >>> model.recommend(sp.csr_matrix([[0, 0, 1, 0]], dtype="float32"), k=1)[0].tolist()
    [[3]]
    """

    family = "ncf"
    _live: tuple[dict[str, Any], Any] | None = None  # torch parameters and their Adam, while training

    def __init__(
        self,
        *,
        factors: int = 32,
        mlp_layers: tuple[int, ...] = (64, 32, 16),
        dropout: float = 0.0,
        learning_rate: float = 0.001,
        weight_decay: float = 0.0,
        epochs: int = 30,
        batch_size: int = 1024,
        negatives: int = 4,
        patience: int = 3,
        validation_fraction: float = 0.1,
        fold_in_steps: int = 30,
        fold_in_learning_rate: float = 0.015,
        random_state: int | None = None,
        device: str = "auto",
        num_threads: int = 1,
    ) -> None:
        if importlib.util.find_spec("torch") is None:
            raise ConfigError(_NO_TORCH)
        self.factors, self.mlp_layers, self.dropout = factors, mlp_layers, dropout
        self.learning_rate, self.weight_decay, self.epochs = learning_rate, weight_decay, epochs
        self.batch_size, self.negatives, self.patience = batch_size, negatives, patience
        self.validation_fraction, self.random_state = validation_fraction, random_state
        self.fold_in_steps, self.fold_in_learning_rate = fold_in_steps, fold_in_learning_rate
        self.device, self.num_threads = device, num_threads

    def get_params(self) -> dict[str, Any]:
        """As the base class, with ``mlp_layers`` a tuple (artifacts store it as a JSON list)."""
        return {**super().get_params(), "mlp_layers": tuple(self.mlp_layers)}

    def fit(
        self,
        interactions: sp.csr_matrix,
        item_features: sp.csr_matrix | None = None,
        *,
        on_epoch: EpochCallback | None = None,
    ) -> NCFRecommender:
        """Train from scratch for up to ``epochs`` epochs with early stopping; features are ignored."""
        for name in ("n_items_", "weights_", "_live"):
            self.__dict__.pop(name, None)
        return self._train(interactions, self.epochs, on_epoch, stop=self.validation_fraction > 0)

    def partial_fit(
        self, interactions: sp.csr_matrix, epochs: int = 1, *, on_epoch: EpochCallback | None = None
    ) -> NCFRecommender:
        """Run ``epochs`` more epochs (from scratch if unfitted), without early stopping.

        In memory, ``fit`` with ``validation_fraction=0`` equals repeated ``partial_fit`` calls
        exactly; a loaded model, or one ``fit`` rolled back to its best epoch, gets fresh Adam moments.
        """
        return self._train(interactions, epochs, on_epoch, stop=False)

    def _check_params(self) -> str:
        for name in _INTEGERS:
            value, low = getattr(self, name), 0 if name == "fold_in_steps" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"ncf {name} must be an integer >= {low}, got {value!r}")
        if not self.mlp_layers or any(int(w) < 1 for w in self.mlp_layers):
            raise ConfigError(f"ncf mlp_layers needs one or more positive widths, got {self.mlp_layers!r}")
        if not (0 <= self.dropout < 1 and 0 <= self.validation_fraction < 1):
            raise ConfigError("ncf dropout and validation_fraction must be in [0, 1)")
        if self.device not in _DEVICES:
            raise ConfigError(f"ncf device must be one of {_DEVICES}, got {self.device!r}")
        cuda = _torch().cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise ConfigError("ncf device='cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
        return "cuda" if self.device != "cpu" and cuda else "cpu"

    def _init_weights(self, shape: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Embeddings N(0, 0.01), Glorot-uniform layers, zero biases."""
        f, widths = self.factors, [2 * self.factors, *map(int, self.mlp_layers)]
        sides = dict(zip(("user", "item"), shape, strict=True))
        weights = {f"{s}_{t}": rng.normal(0, 0.01, (n, f)) for t in ("gmf", "mlp") for s, n in sides.items()}
        layers = [(f"mlp{j}", *pair) for j, pair in enumerate(itertools.pairwise(widths))]
        for name, fan_in, fan_out in [*layers, ("out", widths[-1] + f, 1)]:
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            weights[f"{name}.w"] = rng.uniform(-bound, bound, (fan_out, fan_in))
            weights[f"{name}.b"] = np.zeros(fan_out)
        weights["out.w"], weights["out.b"] = weights["out.w"][0], np.zeros(())
        return {name: value.astype(np.float32) for name, value in weights.items()}

    def _train(self, interactions: Any, epochs: int, on_epoch: EpochCallback | None, stop: bool) -> Any:
        device = self._check_params()
        if epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {epochs}")
        matrix = positive_part(as_csr(interactions, name="interactions"))
        matrix.data[:] = 1.0
        if not hasattr(self, "weights_"):
            self.seed_ = int(np.random.default_rng(self.random_state).integers(2**62))
            self.weights_ = self._init_weights(matrix.shape, np.random.default_rng([self.seed_, 1]))
            self.n_items_, self.epochs_done_, self.best_epoch_ = int(matrix.shape[1]), 0, 0
            self.validation_ndcg_ = np.zeros(0, dtype=np.float32)
        elif matrix.shape != (fitted := (len(self.weights_["user_gmf"]), self.n_items_)):
            raise DataError(f"partial_fit got a {matrix.shape} matrix; the model was fitted on {fitted}")
        train, valid = matrix, None
        if self.validation_fraction > 0:
            train, valid = _holdout(matrix, self.validation_fraction, np.random.default_rng([self.seed_, 0]))
        best, stale, kept = float(self.validation_ndcg_.max(initial=-np.inf)), 0, self.weights_
        with _threads(self.num_threads) as torch:
            if self._live is None:
                params = {
                    k: torch.tensor(w, device=device).requires_grad_() for k, w in self.weights_.items()
                }
                adam = torch.optim.Adam(
                    params.values(), lr=self.learning_rate, weight_decay=self.weight_decay
                )
                self._live = (params, adam)
            params, adam = self._live
            for _ in range(epochs):
                self._epoch(train, params, adam, torch)
                self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in params.items()}
                self.epochs_done_ += 1
                improved = True
                if valid is not None:
                    score = self._validation_ndcg(train, valid)
                    self.validation_ndcg_ = np.append(self.validation_ndcg_, np.float32(score))
                    improved, best = score > best, max(best, score)
                stale = 0 if improved else stale + 1
                if improved:
                    kept, self.best_epoch_ = self.weights_, self.epochs_done_
                if on_epoch is not None:
                    on_epoch(self.epochs_done_, self)
                if stop and stale >= self.patience:
                    break
        if stop and kept is not self.weights_:
            self.weights_, self._live = kept, None
        return self

    def _epoch(self, train: sp.csr_matrix, params: dict[str, Any], adam: Any, torch: Any) -> None:
        rng = np.random.default_rng([self.seed_, 2, self.epochs_done_])
        users = np.repeat(np.arange(train.shape[0]), np.diff(train.indptr))
        neg_users = np.repeat(users, self.negatives)
        neg_items = rng.integers(self.n_items_, size=neg_users.size)
        keys = users * self.n_items_ + train.indices
        for _ in range(3):
            clash = np.flatnonzero(np.isin(neg_users * self.n_items_ + neg_items, keys))
            neg_items[clash] = rng.integers(self.n_items_, size=clash.size)
        device = params["item_gmf"].device
        all_users = torch.as_tensor(np.concatenate([users, neg_users]), device=device)
        all_items = torch.as_tensor(np.concatenate([train.indices, neg_items]), device=device)
        labels = torch.cat([torch.ones(users.size), torch.zeros(neg_users.size)]).to(device)
        order = torch.as_tensor(rng.permutation(labels.numel()), device=device)
        generator = torch.Generator(device=device)
        generator.manual_seed(int(rng.integers(2**62)))
        for start in range(0, order.numel(), self.batch_size):
            batch = order[start : start + self.batch_size]
            u, i = all_users[batch], all_items[batch]
            first = torch.cat([params["user_mlp"][u], params["item_mlp"][i]], dim=1) @ params["mlp0.w"].T
            mlp = _mlp_logit(params, first + params["mlp0.b"], self.dropout, generator)
            gmf = (params["user_gmf"][u] * params["item_gmf"][i]) @ params["out.w"][: self.factors]
            logits = gmf + mlp + params["out.b"]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[batch])
            adam.zero_grad()
            loss.backward()
            adam.step()

    def _validation_ndcg(self, train: sp.csr_matrix, valid: sp.csr_matrix) -> float:
        from recsys.evaluation.metrics import ndcg_at_k

        users = np.flatnonzero(np.diff(valid.indptr))
        ids = np.empty((users.size, 10), dtype=np.int64)
        for chunk in row_chunks(users.size, self._block_width()):
            block = users[chunk]
            scores = self._scores(self.weights_["user_gmf"][block], self.weights_["user_mlp"][block])
            mask_seen(scores, train[block])
            ids[chunk] = top_k(scores, 10)[0]
        return float(np.nanmean(ndcg_at_k(ids, valid[users], 10))) if users.size else 0.0

    def _scores(self, user_gmf: np.ndarray, user_mlp: np.ndarray) -> np.ndarray:
        """``(n, n_items)`` logits of user vectors against every item (first MLP layer split)."""
        with _threads(self.num_threads) as torch, torch.no_grad():
            t = {k: torch.from_numpy(v) for k, v in self.weights_.items()}
            user_first = torch.from_numpy(user_mlp) @ t["mlp0.w"][:, : self.factors].T
            first = user_first[:, None, :] + _item_first(t)
            gmf = torch.from_numpy(user_gmf) @ (t["item_gmf"] * t["out.w"][: self.factors]).T
            return np.asarray((gmf + _mlp_logit(t, first) + t["out.b"]).numpy(), dtype=np.float32)

    def _fold_in(self, rows: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """GMF and MLP user vectors of history rows (see the class docstring)."""
        positives = positive_part(rows)
        n, counts = rows.shape[0], np.diff(positives.indptr)
        start = [np.repeat(self.weights_[k].mean(0, keepdims=True), n, 0) for k in ("user_gmf", "user_mlp")]
        if positives.nnz == 0 or self.fold_in_steps == 0:
            return start[0], start[1]
        owner, neg_owner = np.repeat(np.arange(n), counts), np.repeat(np.arange(n), counts * self.negatives)
        first_slot = np.repeat(np.cumsum(counts) - counts, counts * self.negatives) * self.negatives
        position = np.arange(neg_owner.size) - first_slot
        size = int(position.max()) + 1
        keys = owner * self.n_items_ + positives.indices
        row_weight = 1.0 / (np.maximum(counts, 1) * (1 + self.negatives))
        with _threads(self.num_threads) as torch:
            t = {k: torch.from_numpy(v) for k, v in self.weights_.items()}
            item_first, item_gmf = _item_first(t), t["item_gmf"] * t["out.w"][: self.factors]
            user_gmf, user_mlp = (torch.tensor(v, requires_grad=True) for v in start)
            adam = torch.optim.Adam([user_gmf, user_mlp], lr=self.fold_in_learning_rate)
            pair_owner = torch.from_numpy(np.concatenate([owner, neg_owner]))
            labels = torch.cat([torch.ones(owner.size), torch.zeros(neg_owner.size)])
            for step in range(self.fold_in_steps):
                stream = np.random.default_rng([self.seed_, 3, step]).integers(self.n_items_, size=size)
                neg_items = stream[position]
                clash = np.isin(neg_owner * self.n_items_ + neg_items, keys)
                weight = np.concatenate([row_weight[owner], np.where(clash, 0.0, row_weight[neg_owner])])
                items = torch.from_numpy(np.concatenate([positives.indices.astype(np.int64), neg_items]))
                first = (user_mlp @ t["mlp0.w"][:, : self.factors].T)[pair_owner] + item_first[items]
                gmf = (user_gmf[pair_owner] * item_gmf[items]).sum(dim=1)
                logits = gmf + _mlp_logit(t, first) + t["out.b"]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
                adam.zero_grad()
                (loss * torch.from_numpy(weight.astype(np.float32))).sum().backward()
                adam.step()
            return user_gmf.detach().numpy().copy(), user_mlp.detach().numpy().copy()

    @property
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, factors)`` float32 GMF item vectors scaled by the GMF output weights."""
        self.check_fitted()
        return self.weights_["item_gmf"] * self.weights_["out.w"][None, : self.factors]

    def fold_in(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """``(n, factors)`` float32 GMF user vectors of history rows (gradient fold-in)."""
        self.check_fitted()
        return self._fold_in(as_csr(user_rows, n_items=self.n_items_))[0]

    def _block_width(self) -> int:
        return self.n_items_ * max(self.factors, *(int(w) for w in self.mlp_layers))

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        return self._scores(*self._fold_in(rows))

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        return cosine_block(self.item_embeddings[item_ids], self.item_embeddings)

    def _state(self) -> dict[str, np.ndarray]:
        state = {f"w.{k}": v for k, v in self.weights_.items()}
        state.update({k: np.asarray(getattr(self, k), dtype=np.int64) for k in _COUNTERS})
        return {**state, "validation_ndcg_": self.validation_ndcg_}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.weights_ = {k[2:]: w.astype(np.float32) for k, w in arrays.items() if k.startswith("w.")}
        self.seed_, self.epochs_done_, self.best_epoch_ = (int(arrays[k]) for k in _COUNTERS)
        self.validation_ndcg_ = np.asarray(arrays["validation_ndcg_"], dtype=np.float32)
        self._live = None
