"""The main job on the bundled data, the way `make demo` runs it (smaller tuning, no blocking serve)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import cli
from recsys.engine import load_bundle

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]


def test_pipeline_preprocesses_evaluates_and_builds_the_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "pipeline", "--out", str(tmp_path), "--families", "popularity,itemknn",
            "--tune-families", "ease,als", "--tune-budget", "1", "--no-serve",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    for step in ("1/5 preprocess", "2/5 tune", "3/5 evaluate", "4/5 serving bundle"):
        assert step in printed
    quality = json.loads((tmp_path / "data" / "quality.json").read_text())
    assert quality["rows_out"] == 100_836
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["families"]["itemknn"]["ndcg@10"] > metrics["families"]["popularity"]["ndcg@10"]
    assert (tmp_path / "eval" / "report.html").stat().st_size > 10_000
    parts = load_bundle(tmp_path / "bundle")
    assert parts.space.n_items == 9_742 and len(parts.item_ids) == 9_742
    assert parts.scorers and parts.featurizer is not None
    # The bundle is fitted with the champion's tuned hyperparameters.
    champion = json.loads((tmp_path / "models" / "champion" / "manifest.json").read_text())
    assert parts.manifest["space"] == {"family": "als", **champion["families"]["als"]["params"]}
    assert parts.manifest["scorer"] == {"family": "ease", **champion["families"]["ease"]["params"]}
