"""The evaluation runner and report on the bundled ml-latest-small, serially (no Ray)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.errors import ConfigError, SourceNotFoundError
from recsys.evaluation import runner
from recsys.evaluation._family import popularity_profile
from recsys.evaluation.report import metric_bars_png, render_report
from recsys.evaluation.runner import DEFAULT_GRIDS, evaluate_families, resolve_families

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAMILIES = ["popularity", "ease", "itemknn"]
SMALL_GRIDS = {"ease": {"l2": [250.0]}, "itemknn": {"k": [50], "shrinkage": [10.0]}}
METRICS = ("ndcg", "recall", "precision", "hit", "map", "mrr", "coverage", "novelty")
K_VALUES = (5, 10)


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory: pytest.TempPathFactory, ml_small: Path) -> Path:
    out = tmp_path_factory.mktemp("ml-eval")
    preprocess(parse_source(f"movielens:{ml_small}"), Location.parse(str(out)), executor=SerialExecutor())
    return out


@pytest.fixture(scope="module")
def metrics(ml_data: Path) -> dict[str, Any]:
    messages: list[str] = []
    payload = evaluate_families(
        str(ml_data),
        FAMILIES,
        grids=SMALL_GRIDS,
        k_values=K_VALUES,
        cv_folds=2,
        seed=0,
        executor=SerialExecutor(),
        on_message=messages.append,
    )
    assert [m.split(":")[0] for m in messages] == FAMILIES
    # what the job writes: strict JSON (no NaN), read back
    return json.loads(json.dumps(payload, allow_nan=False))


def test_metrics_schema_is_exact(metrics: dict[str, Any]) -> None:
    assert set(metrics) == {"protocol", "dataset", "families"}
    assert metrics["protocol"] == "recbole"
    dataset = metrics["dataset"]
    assert {k: dataset[k] for k in ("users", "items", "interactions")} == {
        "users": 608,
        "items": 3_012,
        "interactions": 72_402,
    }
    assert dataset["train"] + dataset["valid"] + dataset["test"] == 72_402
    assert dataset["positives"] == "rating >= 3" and dataset["item_features"] is True
    assert list(metrics["families"]) == FAMILIES
    expected = {f"{m}@{k}" for m in METRICS for k in K_VALUES} | {
        "params",
        "fit_seconds",
        "seconds",
        "grid_size",
        "valid_ndcg@10",
        "popularity",
        "cv",
    }
    for family, result in metrics["families"].items():
        assert set(result) == expected, family
        assert set(result["popularity"]) == {"head_share", "mean_percentile"}
        assert set(result["cv"]) == {"folds", "mean", "std"} and result["cv"]["folds"] == 2
        assert set(result["cv"]["mean"]) == {
            f"{m}@10" for m in ("ndcg", "recall", "precision", "hit", "map", "mrr")
        }
        assert result["fit_seconds"] >= 0
    assert metrics["families"]["ease"]["params"] == {"l2": 250.0}
    assert metrics["families"]["popularity"]["grid_size"] == 1


def test_ease_beats_popularity_widely(metrics: dict[str, Any]) -> None:
    families = metrics["families"]
    assert families["ease"]["ndcg@10"] > 0.24
    assert families["ease"]["ndcg@10"] > 1.8 * families["popularity"]["ndcg@10"]
    assert families["itemknn"]["ndcg@10"] > 1.5 * families["popularity"]["ndcg@10"]
    # popularity recommends only head items; the data's own test items are far less concentrated
    assert families["popularity"]["popularity"]["head_share"] == 1.0
    assert metrics["dataset"]["popularity"]["head_share"] < 0.6
    for family in families.values():
        assert family["recall@10"] >= family["recall@5"]


def test_report_embeds_valid_pngs_and_names_every_family(metrics: dict[str, Any]) -> None:
    page = render_report(metrics)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4
    for encoded in images:
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)
    for family in FAMILIES:
        assert family in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert metric_bars_png(metrics).startswith(PNG_SIGNATURE)


def test_unknown_family_and_bad_settings_are_config_errors(ml_data: Path) -> None:
    with pytest.raises(ConfigError, match="'nope'"):
        evaluate_families(str(ml_data), ["ease", "nope"])
    with pytest.raises(ConfigError, match="protocol"):
        evaluate_families(str(ml_data), ["ease"], protocol="leave-one-out")
    with pytest.raises(ConfigError, match="cv_folds"):
        evaluate_families(str(ml_data), ["ease"], cv_folds=1)
    with pytest.raises(ConfigError, match="bad parameters"):
        evaluate_families(str(ml_data), ["ease"], grids={"ease": {"lambda": [1.0]}})
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        evaluate_families(str(ml_data / "missing"), ["ease"])


def test_optional_family_is_skipped_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    runnable, skipped = resolve_families(["popularity", "ncf"])
    assert runnable[0] == "popularity"
    assert "ncf" in runnable or "ncf" in skipped["ncf"]
    monkeypatch.setitem(runner.OPTIONAL_FAMILIES, "ease", ("no_such_package_wf",))
    runnable, skipped = resolve_families(["popularity", "ease"])
    assert runnable == ["popularity"] and "no_such_package_wf" in skipped["ease"]
    assert set(resolve_families(None)[0]) <= set(DEFAULT_GRIDS)


def test_event_data_uses_positive_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 3_000), rng.integers(0, 30, 3_000)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "item_idx": items.astype(np.int64),
            "event_type": "view",
            "value": np.nan,
            "weight": np.where(rng.random(3_000) < 0.8, 1.0, -1.0).astype(np.float32),
        }
    )
    (tmp_path / "interactions").mkdir()
    frame.to_parquet(tmp_path / "interactions" / "part-00000.parquet")
    messages: list[str] = []
    result = evaluate_families(
        str(tmp_path), ["popularity", "content"], k_values=(5,), on_message=messages.append
    )
    assert result["dataset"]["positives"] == "weight > 0"
    assert result["dataset"]["item_features"] is False
    assert list(result["families"]) == ["popularity"]
    assert any("content" in m and "item_matrix" in m for m in messages)


def test_popularity_profile_ranks_ties_together() -> None:
    counts = np.array([3.0, 3.0, 1.0, 0.0])
    profile = popularity_profile(np.array([[0, 1, -1]]), counts)
    assert profile == {"head_share": 1.0, "mean_percentile": pytest.approx(2.5 / 3)}
    assert popularity_profile(np.array([[-1]]), counts) == {"head_share": None, "mean_percentile": None}
