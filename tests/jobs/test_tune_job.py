"""The tuning job through the CLI on Ray Tune: smoke test, champion manifest, resume, ray job submit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobs import cli
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.registry import Registry
from tests._cluster import LocalCluster

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory: pytest.TempPathFactory, ml_small: Path) -> Path:
    out = tmp_path_factory.mktemp("ml-tune-job")
    preprocess(parse_source(f"movielens:{ml_small}"), Location.parse(str(out)), executor=SerialExecutor())
    return out


@pytest.fixture(scope="module")
def smoke(ml_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("tune-out")
    code = cli.main(["tune", "--data", str(ml_data), "--out", str(out), "--smoke-test"])
    return {"code": code, "out": out, "data": ml_data}


def check_manifest(manifest: dict[str, Any]) -> None:
    """The schema the issue fixes, plus the provenance fields of the registry."""
    assert {"ndcg@10", "recall@10"} <= set(manifest["test"])
    assert len(manifest["families"]) >= 3
    for row in manifest["families"].values():
        assert {"ndcg@10", "recall@10"} <= set(row["test"]) and isinstance(row["params"], dict)
    ensemble = manifest["ensemble"]
    assert ensemble["method"] in ("blending", "stacking")
    assert ("weights" in ensemble) if ensemble["method"] == "blending" else ("features" in ensemble)
    assert {"fingerprint", "schema", "source"} <= set(manifest["data"])
    assert {"package", "git_commit"} <= set(manifest["code"])
    assert manifest["schema_version"] == 1 and manifest["created_at"] and manifest["config"]


def test_smoke_test_tunes_several_families_and_writes_the_champion(smoke: dict[str, Any]) -> None:
    assert smoke["code"] == 0
    manifest = json.loads((smoke["out"] / "champion" / "manifest.json").read_text())
    check_manifest(manifest)
    assert manifest["version"] == "v0001"
    assert manifest["tuning"]["trials"] >= 6
    assert {"popularity", "itemknn", "puresvd", "als"} <= set(manifest["families"])
    assert manifest["families"]["als"]["params"]["iterations"] <= 4  # the smoke cap on epochs
    best_single = max(row["test"]["ndcg@10"] for row in manifest["families"].values())
    assert manifest["test"]["ndcg@10"] > best_single
    served = Registry(str(smoke["out"])).load("champion")
    assert served.model.n_items_ == manifest["data"]["items"] == len(served.item_ids)


def test_resuming_from_the_storage_path_reuses_the_finished_trials(
    smoke: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = smoke["out"] / "tune-runs" / "tune"
    trials_before = sorted(p.name for p in experiment.iterdir() if p.is_dir())
    summary_before = json.loads((experiment / "summary.json").read_text())
    capsys.readouterr()
    args = ["tune", "--data", str(smoke["data"]), "--out", str(smoke["out"]), "--smoke-test"]
    assert cli.main([*args, "--resume"]) == 0
    assert sorted(p.name for p in experiment.iterdir() if p.is_dir()) == trials_before  # nothing rerun
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["best"] == summary_before["best"]
    assert Registry(str(smoke["out"])).champion() == "v0002"
    assert "best trial per family" in capsys.readouterr().out
    assert cli.main(args) == 2  # a fresh run into the same experiment is refused, not mixed in
    assert "--resume" in capsys.readouterr().err


def test_unknown_family_exits_2_before_any_trial(
    ml_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["tune", "--data", str(ml_data), "--out", str(tmp_path), "--families", "ease,nosuch"])
    assert code == 2
    assert "nosuch" in capsys.readouterr().err
    assert not (tmp_path / "tune-runs").exists()


@pytest.mark.slow
def test_ray_job_submit_runs_the_tuning_job(ml_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    with LocalCluster(num_cpus=2) as cluster:
        finished = cluster.submit(
            "python",
            "-m",
            "jobs.tune",
            "--data",
            str(ml_data),
            "--out",
            str(out),
            "--smoke-test",
            working_dir=REPO,
        )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    check_manifest(json.loads((out / "champion" / "manifest.json").read_text()))
