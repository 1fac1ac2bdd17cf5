"""The evaluation job through the CLI, with the families as parallel Ray tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import cli
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory: pytest.TempPathFactory, ml_small: Path) -> Path:
    out = tmp_path_factory.mktemp("ml-eval-job")
    preprocess(parse_source(f"movielens:{ml_small}"), Location.parse(str(out)), executor=SerialExecutor())
    return out


def test_evaluate_on_ray_writes_metrics_and_report(
    ml_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    code = cli.main(
        [
            "evaluate",
            "--data",
            str(ml_data),
            "--families",
            "popularity,puresvd",
            "--out",
            str(out),
            "--k",
            "5,10",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"protocol", "dataset", "families"}
    assert set(metrics["families"]) == {"popularity", "puresvd"}
    svd, popularity = metrics["families"]["puresvd"], metrics["families"]["popularity"]
    assert svd["ndcg@10"] > 1.5 * popularity["ndcg@10"]
    assert svd["params"]["factors"] in (32, 64, 128)
    for key in ("ndcg@10", "recall@10", "precision@10", "hit@10", "map@10", "ndcg@5", "fit_seconds"):
        assert key in svd
    assert "data:image/png;base64," in (out / "report.html").read_text()
    captured = capsys.readouterr()
    assert "[evaluate] families: 2/2" in captured.err
    assert "puresvd" in captured.out


def test_unknown_family_exits_2_naming_it(
    ml_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        ["evaluate", "--data", str(ml_data), "--families", "ease,nosuchfamily", "--out", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "nosuchfamily" in err and "known families" in err
    assert not (tmp_path / "metrics.json").exists()


def test_missing_data_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["evaluate", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
