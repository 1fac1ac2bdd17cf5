"""The preprocessing job end to end: on Ray Data, serially, through the CLI and through ray job submit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from jobs import cli
from jobs._executor import RayDataExecutor
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from tests._cluster import LocalCluster
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("ray_session")


def interactions(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "interactions")


@pytest.fixture(scope="module")
def ml_ray(tmp_path_factory: pytest.TempPathFactory, ml_small: Path) -> Path:
    out = tmp_path_factory.mktemp("ml-ray")
    preprocess(
        parse_source(f"movielens:{ml_small}"),
        Location.parse(str(out)),
        executor=RayDataExecutor(progress=False),
    )
    return out


def test_movielens_counts_and_layout(ml_ray: Path) -> None:
    quality = json.loads((ml_ray / "quality.json").read_text())
    assert quality["rows_in"] == 100_836
    assert quality["rows_out"] == 100_836
    assert quality["quarantined"] == 0 and quality["duplicates"] == 0
    assert quality["users"] == 610
    assert quality["items"] == 9_742
    frame = interactions(ml_ray)
    assert len(frame) == 100_836
    assert frame["user_idx"].between(0, 609).all()
    assert frame["item_idx"].between(0, 9_741).all()
    assert set(frame["event_type"]) == {"rating"}
    assert {"hour_of_day", "day_of_week", "recency_days", "weight"} <= set(frame.columns)
    # 5 stars pull hardest, 0.5 stars push away (negative confidence is kept, not dropped)
    assert frame.loc[frame["value"] == 5.0, "weight"].eq(1.0).all()
    assert (frame.loc[frame["value"] < 3.0, "weight"] < 0).all()
    items = pd.read_parquet(ml_ray / "items")
    assert len(items) == 9_742
    toy_story = items.loc[items["item_id"] == "1"].iloc[0]
    assert "Animation" in list(toy_story["categories"])
    assert (ml_ray / "features" / "item_matrix.npz").exists()
    assert (ml_ray / "ids" / "users.parquet").exists()


def test_serial_and_ray_outputs_are_identical(ml_ray: Path, tmp_path: Path, ml_small: Path) -> None:
    preprocess(
        parse_source(f"movielens:{ml_small}"), Location.parse(str(tmp_path)), executor=SerialExecutor()
    )
    pd.testing.assert_frame_equal(interactions(ml_ray), interactions(tmp_path))
    assert (ml_ray / "quality.json").read_bytes() == (tmp_path / "quality.json").read_bytes()
    for name in ("items/part-00000.parquet", "ids/items.parquet", "ids/users.parquet"):
        assert (ml_ray / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_cli_quarantines_bad_rows_with_file_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        "user_id,item_id,event_type,timestamp,value\n"
        "u1,i1,click,2024-01-01T10:00:00Z,\n"
        "u1,i2,purchase,2024-01-01T10:05:00Z,\n"
        "u2,i1,teleport,2024-01-01T10:00:00Z,\n"
        "u2,i3,rating,2024-01-01T10:00:00Z,9\n"
        "u2,only-two-fields\n"
        "u3,i1,view,2024-01-01T10:00:00Z,\n"
        "u3,i1,view,2024-01-01T10:00:00Z,\n"
    )
    out = tmp_path / "out"
    code = cli.main(
        ["preprocess", "--source", f"events:{events}", "--out", str(out), "--now", "2024-02-01T00:00:00Z"]
    )
    assert code == 0
    quality = json.loads((out / "quality.json").read_text())
    assert quality["rows_in"] == 7
    assert quality["rows_out"] == 3
    assert quality["quarantine_reasons"] == {
        "malformed_row": 1,
        "unknown_event_type": 1,
        "value_out_of_range": 1,
    }
    assert quality["duplicate_kinds"]["exact_duplicate"] == 1
    quarantine = pd.read_parquet(out / "quarantine").sort_values("_source_row")
    assert quarantine["_source_row"].tolist() == [3, 4, 5]
    assert quarantine["_source_file"].str.endswith("events.csv").all()
    assert quarantine.loc[quarantine["_reason"] == "malformed_row", "_raw"].tolist() == ["u2,only-two-fields"]
    assert "quarantined" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "movielens:/no/such/dir"], "/no/such/dir"),
        (["--source", "kafka:topic"], "movielens:DIR"),
        (["--source", "events:{bad}", "--now", "yesterday"], "--now"),
        (["--source", "events:{bad}", "--map", "user_id"], "FIELD=COLUMN"),
        (["--source", "events:{bad}"], "event_type"),
    ],
)
def test_cli_errors_name_the_problem(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\nu1,i1,2024-01-01\n")
    argv = [a.replace("{bad}", str(bad)) for a in argv]
    code = cli.main(["preprocess", *argv, "--out", str(tmp_path / "out"), "--serial"])
    assert code == cli.EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert message in error
    assert "Traceback" not in error


def test_cli_rejects_unknown_arguments_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["preprocess", "--source", "movielens:x"])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_job_submit_runs_the_jobs_on_a_started_cluster(tmp_path: Path) -> None:
    out = tmp_path / "job-out"
    with LocalCluster(num_cpus=2) as cluster:
        finished = cluster.submit(
            "python",
            "-m",
            "jobs.preprocess",
            "--source",
            "movielens:data/ml-latest-small",
            "--out",
            str(out),
            working_dir=REPO,
        )
        assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
        assert "succeeded" in finished.stdout + finished.stderr
        evaluated = cluster.submit(
            "python",
            "-m",
            "jobs.evaluate",
            "--data",
            str(out),
            "--families",
            "popularity,puresvd",
            "--out",
            str(tmp_path / "eval"),
            working_dir=REPO,
        )
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    quality = json.loads((out / "quality.json").read_text())
    assert quality["rows_out"] == 100_836
    assert quality["users"] == 610
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["families"]) == {"popularity", "puresvd"}
