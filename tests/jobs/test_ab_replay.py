"""The offline A/B replay job on ml-latest-small: Ray tasks over users, report.json and a table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from jobs import cli
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

SMALL = ["--max-users", "12", "--max-test-events", "25", "--factors", "16", "--iterations", "5"]


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory: pytest.TempPathFactory, ml_small: Path) -> Path:
    out = tmp_path_factory.mktemp("ml-ab-replay")
    preprocess(parse_source(f"movielens:{ml_small}"), Location.parse(str(out)), executor=SerialExecutor())
    return out


def test_replay_on_ray_matches_serial_and_reports_every_variant(
    ml_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    on_ray = tmp_path / "ray"
    assert cli.main(["ab-replay", "--data", str(ml_data), "--out", str(on_ray), "--chunks", "3", *SMALL]) == 0
    report = json.loads((on_ray / "report.json").read_text())
    assert report["experiment"] == "explore-share" and report["replay"]["users"] == 12
    assert report["replay"]["chunks"] == 3
    control, explore = report["variants"]
    assert (control["variant"], explore["variant"]) == ("control", "more-explore")
    # paired replay: every variant serves a page before each of the same positive events
    assert control["exposures"] == explore["exposures"] > 0
    assert control["exposures"] <= 12 * 25
    for row in (control, explore):
        ctr = row["click_through"]
        assert ctr["ci95"][0] <= ctr["rate"] <= ctr["ci95"][1]
        assert row["conversion"]["count"] <= ctr["count"]
    # personalised pages hit the next positive far more often than chance (10 of ~9,700 items)
    assert control["click_through"]["rate"] > 0.01
    assert 0.0 <= explore["vs_control"]["click_through"]["p_value"] <= 1.0
    printed = capsys.readouterr().out
    assert "more-explore" in printed and "p vs control" in printed

    serial = tmp_path / "serial"
    assert cli.main(["ab-replay", "--data", str(ml_data), "--out", str(serial), "--serial", *SMALL]) == 0
    again = json.loads((serial / "report.json").read_text())
    assert again["variants"] == report["variants"]  # same counts however the users are chunked


def test_a_variant_with_its_own_bundle_is_refused(
    ml_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = {
        "id": "models",
        "variants": [{"name": "v1", "share": 0.5}, {"name": "v2", "share": 0.5, "bundle": "out/v2"}],
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    code = cli.main(
        ["ab-replay", "--data", str(ml_data), "--out", str(tmp_path / "o"), "--experiment", str(path)]
    )
    assert code == 2 and "names a bundle" in capsys.readouterr().err
