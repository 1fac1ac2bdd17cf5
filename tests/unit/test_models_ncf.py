"""NeuMF specifics: optional PyTorch, partial_fit and early stopping, fold-in (the contract is shared)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.models import NCFRecommender, SupportsPartialFit, build, load

REPO = Path(__file__).resolve().parents[2]
SMALL: dict[str, Any] = {
    "factors": 4,
    "mlp_layers": (8,),
    "batch_size": 64,
    "device": "cpu",
    "random_state": 0,
}


def grouped_matrix(n_users: int = 60, n_items: int = 40, seed: int = 0) -> sp.csr_matrix:
    """Two taste groups (first/second half of the items), 8 positives per user, 1 off-group."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        half = (user % 2) * (n_items // 2)
        items = [*rng.choice(n_items // 2, size=7, replace=False) + half, rng.integers(n_items)]
        rows.append(np.bincount(items, minlength=n_items) > 0)
    return sp.csr_matrix(np.array(rows, dtype=np.float32))


def test_recsys_models_imports_without_torch() -> None:
    code = "import sys, recsys.models; assert 'torch' not in sys.modules, 'recsys.models imported torch'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_constructing_or_fitting_without_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    model = NCFRecommender(**SMALL)
    monkeypatch.setitem(sys.modules, "torch", None)  # what an environment without torch looks like
    for attempt in (lambda: build("ncf"), lambda: model.fit(grouped_matrix())):
        with pytest.raises(ConfigError, match=r"pip install 'wayfinder\[deep\]'"):
            attempt()


def test_bad_settings_raise() -> None:
    pytest.importorskip("torch")
    X = grouped_matrix()
    for bad in ({"device": "tpu"}, {"mlp_layers": ()}, {"negatives": 0}, {"validation_fraction": 1.0}):
        with pytest.raises(ConfigError, match="ncf"):
            NCFRecommender(**{**SMALL, **bad}).fit(X)


def test_partial_fit_continues_exactly_and_reports_epochs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    X = grouped_matrix()
    params = {**SMALL, "epochs": 3, "validation_fraction": 0.0}
    straight = NCFRecommender(**params).fit(X)
    seen: list[int] = []

    def on_epoch(epoch: int, model: Any) -> None:
        seen.append(epoch)
        assert model.recommend(X[:1], k=3)[0].shape == (1, 3)

    stepped = NCFRecommender(**{**params, "epochs": 1}).fit(X, on_epoch=on_epoch)
    stepped.partial_fit(X, epochs=2, on_epoch=on_epoch)
    assert seen == [1, 2, 3] and stepped.epochs_done_ == straight.epochs_done_ == 3
    for name, weights in straight.weights_.items():
        np.testing.assert_array_equal(stepped.weights_[name], weights, err_msg=name)
    stepped.save(tmp_path / "ncf")
    resumed = load(tmp_path / "ncf")
    assert isinstance(resumed, SupportsPartialFit) and resumed.get_params()["mlp_layers"] == (8,)
    resumed.partial_fit(X, epochs=1)
    assert resumed.epochs_done_ == 4
    with pytest.raises(DataError, match="partial_fit"):
        resumed.partial_fit(grouped_matrix(10, 40), epochs=1)


def test_fit_keeps_the_best_epoch_and_stops_after_patience() -> None:
    pytest.importorskip("torch")
    X = grouped_matrix(seed=1)
    snapshots: dict[int, np.ndarray] = {}

    def on_epoch(epoch: int, model: Any) -> None:
        snapshots[epoch] = model.weights_["item_gmf"].copy()

    params = {**SMALL, "epochs": 40, "patience": 2, "learning_rate": 0.05, "validation_fraction": 0.25}
    model = NCFRecommender(**params).fit(X, on_epoch=on_epoch)
    history = model.validation_ndcg_
    assert model.epochs_done_ == history.size == len(snapshots) < 40, history
    assert model.best_epoch_ == int(np.argmax(history)) + 1 == model.epochs_done_ - 2
    np.testing.assert_array_equal(model.weights_["item_gmf"], snapshots[model.best_epoch_])


def test_holdout_moves_a_seeded_share_of_each_users_positives() -> None:
    from recsys.models.ncf import _holdout

    X = grouped_matrix()
    train, valid = _holdout(X, 0.25, np.random.default_rng(0))
    assert (np.diff(valid.indptr) == np.floor(0.25 * np.diff(X.indptr))).all() and (
        train + valid != X
    ).nnz == 0
    assert train.nnz + valid.nnz == X.nnz and train.has_sorted_indices
    again = _holdout(X, 0.25, np.random.default_rng(0))[1]
    assert (again != valid).nnz == 0


def test_fold_in_moves_only_the_user_vectors_and_ignores_the_batch() -> None:
    pytest.importorskip("torch")
    X = grouped_matrix()
    model = NCFRecommender(**{**SMALL, "epochs": 15, "learning_rate": 0.02, "validation_fraction": 0.0}).fit(
        X
    )
    before = {name: weights.copy() for name, weights in model.weights_.items()}
    rows = X[:6]
    together = model.score(rows)
    alone = np.vstack([model.score(rows[r : r + 1]) for r in range(6)])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)
    for name, weights in before.items():
        np.testing.assert_array_equal(model.weights_[name], weights, err_msg=name)
    with_dislikes = rows.toarray()
    with_dislikes[:, -1] = np.where(with_dislikes[:, -1] > 0, with_dislikes[:, -1], -1.0)
    np.testing.assert_array_equal(model.fold_in(sp.csr_matrix(with_dislikes)), model.fold_in(rows))

    mean_user = copy.deepcopy(model)
    mean_user.fold_in_steps = 0
    np.testing.assert_allclose(mean_user.fold_in(rows), np.tile(model.weights_["user_gmf"].mean(0), (6, 1)))
    shown = rows.toarray() > 0

    def centred(scores: np.ndarray) -> np.ndarray:
        return scores - scores.mean(axis=1, keepdims=True)

    assert centred(together)[shown].mean() > centred(mean_user.score(rows))[shown].mean() + 0.5


def test_cuda_training_gives_a_cpu_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    X = grouped_matrix()
    model = NCFRecommender(**{**SMALL, "device": "auto", "epochs": 15, "learning_rate": 0.02}).fit(X)
    assert all(isinstance(w, np.ndarray) and w.dtype == np.float32 for w in model.weights_.values())
    model.save(tmp_path / "ncf")
    np.testing.assert_array_equal(load(tmp_path / "ncf").score(X[:4]), model.score(X[:4]))
    ids, _ = model.recommend(X, k=5)
    assert ((ids >= X.shape[1] // 2) == (np.arange(X.shape[0]) % 2 == 1)[:, None]).mean() >= 0.8
