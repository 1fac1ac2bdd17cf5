"""The bundle's sequence scorers: fitted on frequent items, pruned, sparse, saved and loaded back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.data.synthetic import DirtConfig, SyntheticConfig, generate
from recsys.embeddings.state import Signal
from recsys.engine import load_bundle, train_bundle
from recsys.ranking import ItemItemScorer
from recsys.ranking.sequence_fit import SequenceConfig, fit_sequence_scorers


def chains(n_users: int = 60, n_items: int = 40, rare: int = 39) -> tuple[np.ndarray, ...]:
    """Every user walks 0 -> 1 -> 2 -> ... from a random start (wrapping at 30); one user takes
    the rare item once."""
    rng = np.random.default_rng(0)
    users, items, stamps = [], [], []
    for user in range(n_users):
        start = int(rng.integers(0, 30))
        walk = [(start + step) % 30 for step in range(12)]
        users += [user] * len(walk)
        items += walk
        stamps += list(range(len(walk)))
    users.append(0)
    items.append(rare)
    stamps.append(100)
    return np.asarray(users), np.asarray(items), np.asarray(stamps, dtype=np.float64)


def test_next_items_learns_the_walk_and_keeps_the_whole_catalogue() -> None:
    users, items, stamps = chains()
    config = SequenceConfig(min_count=2, top_k=5)
    next_items, session = fit_sequence_scorers(users, items, stamps, n_items=45, config=config)
    assert (next_items.name, session.name) == ("next_items", "session_ease")
    assert (next_items.weight, session.weight) == (1.0, 0.5)
    for scorer in (next_items, session):
        assert sp.issparse(scorer.matrix) and scorer.matrix.shape == (45, 45)
        assert np.diff(scorer.matrix.indptr).max() <= 5  # pruned to top_k per row
        assert scorer.matrix[39].nnz == 0 and scorer.matrix[:, 39].nnz == 0  # rare item: no links
        assert scorer.matrix[40:].nnz == 0  # items without events
    scores = next_items.scores([Signal(7, 1.0, 0.0, 0, "like")], n_signals=1, n_items=45)
    assert set(np.argsort(-scores)[:5].tolist()) <= set(range(8, 18))  # the walk's next ten after 7


def test_compact_fit_equals_the_direct_fit_on_the_kept_items() -> None:
    users, items, stamps = chains()
    kept = items != 39
    config = SequenceConfig(min_count=2, top_k=7)
    shifted = fit_sequence_scorers(users, items + 5, stamps, n_items=50, config=config)
    arrays = (users[kept], items[kept], stamps[kept])
    direct = [
        ItemItemScorer.fit_next_items(*arrays, n_items=30).pruned(7),
        ItemItemScorer.fit_session_ease(*arrays, n_items=30).pruned(7),
    ]
    for ours, reference in zip(shifted, direct, strict=True):
        np.testing.assert_allclose(ours.matrix[5:35, 5:35].toarray(), reference.matrix.toarray(), atol=1e-6)
        assert ours.matrix.nnz == reference.matrix.nnz


def test_zero_weights_and_tiny_catalogues_give_no_scorers() -> None:
    users, items, stamps = chains()
    off = SequenceConfig(next_items_weight=0.0, session_weight=0.0)
    assert fit_sequence_scorers(users, items, stamps, n_items=45, config=off) == []
    assert (
        fit_sequence_scorers(users, items, stamps, n_items=45, config=SequenceConfig(min_count=10_000)) == []
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seq")
    config = SyntheticConfig(seed=5, n_events=10_000, n_items=150, n_clusters=4, dirt=DirtConfig.none())
    generate(config, str(root / "raw"))
    source = parse_source(f"events:{root}/raw/events", items=f"{root}/raw/items", users=f"{root}/raw/users")
    preprocess(source, Location.parse(str(root / "data")), executor=SerialExecutor())
    return root / "data"


def test_bundle_saves_pruned_scorers_and_the_stage_prior(data: Path, tmp_path: Path) -> None:
    space = {"family": "als", "factors": 8, "iterations": 3}
    manifest = train_bundle(data, tmp_path / "b", space=space, sequence=SequenceConfig(top_k=20))
    assert manifest["prior"] == "stage" and manifest["sequence"]["top_k"] == 20
    saved = sorted(p.name for p in (tmp_path / "b" / "scorers").iterdir())
    assert saved == ["00-next_items.npz", "01-session_ease.npz"]
    with np.load(tmp_path / "b" / "scorers" / saved[0]) as npz:
        assert "dense" not in npz.files  # never an n_items^2 matrix on disk
    parts = load_bundle(tmp_path / "b")
    assert [s.name for s in parts.scorers] == ["ease", "next_items", "session_ease"]
    assert [s.weight for s in parts.scorers[1:]] == [1.0, 0.5]
    assert all(np.diff(s.matrix.indptr).max() <= 20 for s in parts.scorers[1:])
    prior = parts.space.prior
    assert prior.table is not None and prior.stages[0] == 0
    positives = pd.read_parquet(data / "interactions", columns=["user_idx", "item_idx", "weight"])
    positives = positives[positives["weight"] > 0].drop_duplicates(["user_idx", "item_idx"])
    expected = np.bincount(positives["item_idx"], minlength=parts.space.n_items)
    np.testing.assert_array_equal(prior.overall, expected)


def test_bundle_without_sequence_scorers(data: Path, tmp_path: Path) -> None:
    space = {"family": "als", "factors": 8, "iterations": 3}
    manifest = train_bundle(data, tmp_path / "b", space=space, scorer=None, sequence=None)
    assert manifest["sequence"] is None
    assert load_bundle(tmp_path / "b").scorers == []
