"""Matrix factorisation through ``implicit``: ALS (Hu, Koren & Volinsky 2008) and BPR.

Both wrap ``implicit.cpu`` (or ``implicit.gpu`` when ``device="gpu"``, or ``"auto"`` and
``implicit.gpu.HAS_CUDA``); the learned factors are always kept as numpy arrays, so scoring, fold-in
and artifacts are CPU code and identical whichever device trained the model.

Training can be continued: ``implicit`` only initialises factors that are not set yet, so
:meth:`partial_fit` runs ``epochs`` more iterations from the current factors. For ALS,
``fit`` with ``iterations=15`` equals fifteen ``partial_fit(X, 1)`` calls exactly; for BPR the
continuation draws fresh negative samples per call (seeded by ``random_state`` and the epoch count).
``fit(..., on_epoch=f)`` calls ``f(epochs_done, model)`` after every iteration with the model usable
for ``recommend``: that is the hook for per-epoch validation (Ray Tune ASHA).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.models._common import RecommenderBase, as_csr, cosine_block, positive_part

EpochCallback = Callable[[int, Any], None]
_DEVICES = ("auto", "cpu", "gpu")


def _wants_gpu(device: str) -> bool:
    if device not in _DEVICES:
        raise ConfigError(f"device must be one of {_DEVICES}, got {device!r}")
    if device == "cpu":
        return False
    import implicit.gpu

    if device == "gpu" and not implicit.gpu.HAS_CUDA:
        raise ConfigError("device='gpu' but implicit has no CUDA support here; use 'auto' or 'cpu'")
    return bool(implicit.gpu.HAS_CUDA)


def _to_numpy(factors: Any) -> np.ndarray:
    array = factors.to_numpy() if hasattr(factors, "to_numpy") else factors
    return np.array(array, dtype=np.float32, copy=True)


class _ImplicitFactorModel(RecommenderBase):
    """Shared fitting loop of the ``implicit`` wrappers."""

    iterations: int
    num_threads: int
    device: str
    random_state: int | None

    def _new_engine(self, gpu: bool) -> Any:
        raise NotImplementedError

    def _training_matrix(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        return matrix

    def fit(
        self,
        interactions: sp.csr_matrix,
        item_features: sp.csr_matrix | None = None,
        *,
        on_epoch: EpochCallback | None = None,
    ) -> Any:
        """Train from scratch for ``iterations`` epochs; ``item_features`` is ignored.

        ``on_epoch(epochs_done, self)`` is called after every epoch (the model can recommend then).
        """
        for name in ("n_items_", "item_factors_", "user_factors_", "epochs_done_"):
            self.__dict__.pop(name, None)
        self._engine: Any = None
        return self.partial_fit(interactions, epochs=self.iterations, on_epoch=on_epoch)

    def partial_fit(
        self, interactions: sp.csr_matrix, epochs: int = 1, *, on_epoch: EpochCallback | None = None
    ) -> Any:
        """Run ``epochs`` more iterations from the current factors (from scratch if unfitted)."""
        if epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {epochs}")
        matrix = self._training_matrix(as_csr(interactions, name="interactions"))
        if hasattr(self, "user_factors_") and matrix.shape != (len(self.user_factors_), self.n_items_):
            raise DataError(
                f"partial_fit got a {matrix.shape} matrix but the model was fitted on "
                f"{(len(self.user_factors_), self.n_items_)}; continue on the same training matrix"
            )
        engine = getattr(self, "_engine", None)
        if engine is None:
            engine = self._new_engine(_wants_gpu(self.device))
            if hasattr(self, "user_factors_"):
                engine.user_factors = self._on_engine_device(engine, self.user_factors_)
                engine.item_factors = self._on_engine_device(engine, self.item_factors_)
            self._engine = engine
        done = getattr(self, "epochs_done_", 0)
        if done and self.random_state is not None:
            engine.random_state = np.random.default_rng([int(self.random_state), done])
        engine.iterations = epochs
        self.n_items_ = int(matrix.shape[1])
        self.epochs_done_ = done

        def callback(iteration: int, *_: Any) -> None:
            self._sync(engine, done + iteration + 1)
            if on_epoch is not None:
                on_epoch(self.epochs_done_, self)

        engine.fit(matrix, show_progress=False, callback=callback)
        self._sync(engine, done + epochs)
        return self

    @staticmethod
    def _on_engine_device(engine: Any, array: np.ndarray) -> Any:
        if type(engine).__module__.startswith("implicit.gpu"):
            import implicit.gpu

            return implicit.gpu.Matrix(array)
        return np.array(array, dtype=np.float32, copy=True)

    def _sync(self, engine: Any, epochs_done: int) -> None:
        self.user_factors_ = _to_numpy(engine.user_factors)
        self.item_factors_ = _to_numpy(engine.item_factors)
        self.epochs_done_ = epochs_done
        self._fold_engine: Any = None

    @property
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, d)`` float32 item factors; ``fold_in(rows) @ item_embeddings.T`` = scores."""
        self.check_fitted()
        return self.item_factors_

    def fold_in(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """``(n, d)`` user factors for history rows, without refitting (see the class docstring)."""
        self.check_fitted()
        return self._fold_in(as_csr(user_rows, n_items=self.n_items_))

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _score_block(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self._fold_in(rows) @ self.item_factors_.T, dtype=np.float32)

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        return cosine_block(self.item_factors_[item_ids], self.item_factors_)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors_": self.user_factors_,
            "item_factors_": self.item_factors_,
            "epochs_done_": np.asarray(self.epochs_done_, dtype=np.int64),
        }

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.user_factors_ = np.ascontiguousarray(arrays["user_factors_"], dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(arrays["item_factors_"], dtype=np.float32)
        self.epochs_done_ = int(arrays["epochs_done_"])
        self._engine = None
        self._fold_engine = None


class ALSRecommender(_ImplicitFactorModel):
    """Implicit-feedback ALS; fold-in is the exact regularised least-squares user solve.

    A user's factors are ``x_u = (Y^T C_u Y + regularization I)^-1 Y^T C_u p_u`` with
    ``C_u = alpha * confidence`` on stored entries and 1 elsewhere (``implicit``'s convention);
    negative confidences are dislikes (``p = 0`` with confidence ``alpha * |c|``), in ``fit`` and in
    fold-in alike. Fold-in uses ``implicit``'s Cholesky solver (``recalculate_user``), so a new user
    gets exactly the vector a final ALS half-step would give them.

    Parameters
    ----------
    factors : int
        Latent dimension.
    regularization : float
        L2 weight on the factors.
    alpha : float
        Multiplier of the confidences.
    iterations : int
        ALS sweeps done by :meth:`fit`.
    use_cg : bool
        Conjugate-gradient solver in training (faster; fold-in always solves exactly).
    num_threads : int
        Threads of implicit's native code (0 = all cores). Keep OPENBLAS_NUM_THREADS=1 too.
    device : {"auto", "cpu", "gpu"}
        Where to train; ``"auto"`` uses the GPU when ``implicit.gpu.HAS_CUDA``.
    random_state : int or None
        Seed of the factor initialisation.

    Attributes
    ----------
    item_factors_, user_factors_ : ndarray
        float32 factors of the training items and users.
    epochs_done_ : int
        Iterations run so far (``fit`` + ``partial_fit``).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], dtype="float32")
    >>> model = ALSRecommender(factors=2, regularization=0.01, random_state=0).fit(X)
    >>> model.recommend(sp.csr_matrix([[1, 0, 0, 0]], dtype="float32"), k=1)[0].tolist()
    [[1]]
    """

    family = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        use_cg: bool = True,
        num_threads: int = 1,
        device: str = "auto",
        random_state: int | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.use_cg = use_cg
        self.num_threads = num_threads
        self.device = device
        self.random_state = random_state

    def _new_engine(self, gpu: bool) -> Any:
        if gpu:
            import implicit.gpu.als

            return implicit.gpu.als.AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                random_state=self.random_state,
            )
        return self._cpu_engine(self.random_state)

    def _cpu_engine(self, random_state: int | None) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            use_cg=self.use_cg,
            num_threads=self.num_threads,
            random_state=random_state,
        )

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        if getattr(self, "_fold_engine", None) is None:
            self._fold_engine = self._cpu_engine(None)
            self._fold_engine.item_factors = self.item_factors_
        if rows.shape[0] == 0:
            return np.zeros((0, self.item_factors_.shape[1]), dtype=np.float32)
        users = self._fold_engine.recalculate_user(np.arange(rows.shape[0]), rows)
        return np.asarray(users, dtype=np.float32)


class BPRRecommender(_ImplicitFactorModel):
    """Bayesian Personalised Ranking with an item-bias column; fold-in averages item factors.

    ``implicit`` learns item vectors ``[y_i, b_i]`` (the last column is an item bias) and user
    vectors ``[x_u, 1]``. BPR treats every stored entry as a positive, so ``fit`` drops zero and
    negative confidences. Fold-in is the confidence-weighted mean of the history's item factors,
    ``x_u = sum_i c_ui y_i / sum_i |c_ui|`` (dislikes subtract), with the bias coordinate 1; an
    empty history scores items by their bias. On ml-latest-small (80/20 split) this fold-in scored
    NDCG@10 0.29-0.32 against 0.15-0.22 for BPR's own trained user factors and 0.20-0.23 for a
    regularised least-squares fold-in, which is why it replaced least squares.

    Parameters
    ----------
    factors : int
        Latent dimension (the bias column comes on top).
    learning_rate, regularization : float
        SGD step and L2 weight.
    iterations : int
        Epochs done by :meth:`fit`.
    verify_negative_samples : bool
        Resample negatives the user actually liked (slower, usually better).
    num_threads, device, random_state
        As for :class:`ALSRecommender`.

    Attributes
    ----------
    item_factors_ : ndarray of shape (n_items, factors + 1)
        float32 ``[y_i, b_i]``; these are the ``item_embeddings``.
    user_factors_ : ndarray of shape (n_train_users, factors + 1)
        BPR's own user vectors (kept to continue training; recommendations use fold-in).
    epochs_done_ : int

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], dtype="float32")
    >>> model = BPRRecommender(factors=2, iterations=50, random_state=0).fit(X)
    >>> model.item_embeddings.shape
    (4, 3)
    """

    family = "bpr"

    def __init__(
        self,
        *,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        verify_negative_samples: bool = True,
        num_threads: int = 1,
        device: str = "auto",
        random_state: int | None = None,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.verify_negative_samples = verify_negative_samples
        self.num_threads = num_threads
        self.device = device
        self.random_state = random_state

    def _new_engine(self, gpu: bool) -> Any:
        if gpu:
            import implicit.gpu.bpr

            return implicit.gpu.bpr.BayesianPersonalizedRanking(
                factors=self.factors,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                verify_negative_samples=self.verify_negative_samples,
                random_state=self.random_state,
            )
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            verify_negative_samples=self.verify_negative_samples,
            num_threads=self.num_threads,
            random_state=self.random_state,
        )

    def _training_matrix(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        return positive_part(matrix)

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        totals = np.asarray(abs(rows).sum(axis=1), dtype=np.float32).reshape(-1, 1)
        sums = np.asarray(rows @ self.item_factors_[:, :-1], dtype=np.float32)
        users = np.divide(sums, totals, out=np.zeros_like(sums), where=totals > 0)
        return np.hstack([users, np.ones((rows.shape[0], 1), dtype=np.float32)])

    def _similarity_block(self, item_ids: np.ndarray) -> np.ndarray:
        vectors = self.item_factors_[:, :-1]
        return cosine_block(vectors[item_ids], vectors)
