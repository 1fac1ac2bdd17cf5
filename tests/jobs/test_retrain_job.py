"""`wayfinder retrain` on ml-latest-small with synthetic fresh events in a real SQLite event log.

The fresh events plant a taste the champion cannot know: 90 new users each like 8 of the 10 items of
one of six random item groups (items that never co-occur in the original data). The challenger
learns the groups from the events that are not held out; the champion cannot. With a margin no
metric can reach it is not promoted; with the normal margin it is, and the pointer moves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs import cli
from recsys.data.ids import IdIndex
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.engine import train_bundle
from recsys.engine.versions import BundleRegistry
from recsys.store import Event, open_store
from tests._cluster import LocalCluster
from tests.conftest import REPO

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]

GROUPS, GROUP_SIZE, USERS, LIKES = 6, 10, 90, 8


@pytest.fixture(scope="module")
def world(ml_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("retrain")
    preprocess(
        parse_source(f"movielens:{ml_small}"), Location.parse(str(root / "data")), executor=SerialExecutor()
    )
    train_bundle(root / "data", root / "bundle", scorer=None)
    items = IdIndex.load(root / "data" / "ids" / "items.parquet").ids
    rng = np.random.default_rng(7)
    groups = rng.choice(len(items), size=(GROUPS, GROUP_SIZE), replace=False)
    store = open_store(f"sqlite:///{root}/store.db")
    events = []
    t0 = 1_800_000_000_000
    for user in range(USERS):
        liked = rng.permutation(groups[user % GROUPS])[:LIKES]
        for n, item in enumerate(liked):
            events.append(Event(f"f{user}-{n}", f"fresh-{user:03d}", items[item], "like", t0 + 60_000 * n))
    events.append(Event("old-user-1", "1", items[groups[0][0]], "click", t0))  # a user the data knows
    events.append(Event("unknown-1", "fresh-000", "no-such-item", "like", t0 + 1))  # an item it does not
    store.append_many(events)
    store.close()
    return {"root": root, "data": root / "data", "bundle": root / "bundle", "store": root / "store.db"}


def retrain(world: dict[str, Path], *extra: str) -> dict:
    report = world["root"] / f"report-{len(list(world['root'].glob('report-*')))}.json"
    code = cli.main(
        [
            "retrain",
            "--data", str(world["data"]),
            "--bundles", str(world["root"] / "bundles"),
            "--store", f"sqlite:///{world['store']}",
            "--init-from", str(world["bundle"]),
            "--report", str(report),
            *extra,
        ]
    )  # fmt: skip
    assert code == 0
    return dict(json.loads(report.read_text()))


def test_retrain_keeps_the_champion_under_an_unreachable_margin_and_promotes_a_winner(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    registry = BundleRegistry(world["root"] / "bundles")

    kept = retrain(world, "--margin", "1.0", "--promote")  # NDCG@10 never exceeds 1: never promoted
    assert kept["outcome"] == "kept_champion"
    assert registry.champion() == "v0001" and registry.versions() == ["v0001"]
    assert kept["evaluation"]["users"] == USERS
    assert kept["evaluation"]["hidden_events"] == 2 * USERS
    assert kept["fresh_events"] == {
        "events": USERS * LIKES + 2 - 2 * USERS,
        "used": USERS * LIKES + 1 - 2 * USERS,
        "unknown_item": 1,
        "new_users": USERS,
    }
    champion_ndcg = kept["champion"]["metrics"]["ndcg@10"]
    challenger_ndcg = kept["challenger"]["metrics"]["ndcg@10"]
    assert challenger_ndcg > champion_ndcg  # it learned the planted groups; the decision was the margin

    promoted = retrain(world, "--margin", "0.0", "--promote")
    assert promoted["outcome"] == "promoted", promoted["reason"]
    assert promoted["champion"]["version"] == "v0001"
    assert promoted["challenger"]["version"] == promoted["champion_now"] == registry.champion() == "v0002"
    assert promoted["delta"] == pytest.approx(
        promoted["challenger"]["metrics"]["ndcg@10"] - promoted["champion"]["metrics"]["ndcg@10"]
    )
    manifest = registry.manifest("champion")
    assert manifest["parent"] == "v0001"
    assert manifest["data"]["log_seq"] == USERS * LIKES + 2
    assert len(manifest["data"]["fingerprint"]) == 64
    assert manifest["bundle"]["users"] == 610 + USERS
    assert manifest["metrics"]["challenger"]["ndcg@10"] == promoted["challenger"]["metrics"]["ndcg@10"]
    assert (registry.bundle_dir() / "space").is_dir()
    printed = capsys.readouterr().out
    assert "[retrain] training the challenger" in printed and "-> promoted" in printed


def test_only_events_newer_than_the_champion_are_held_out(world: dict[str, Path]) -> None:
    registry = BundleRegistry(world["root"] / "bundles")
    before = registry.champion()
    trained_through = registry.manifest()["data"]["log_seq"]
    items = IdIndex.load(world["data"] / "ids" / "items.parquet").ids
    store = open_store(f"sqlite:///{world['store']}")
    store.append_many(
        [
            Event(f"new-{user}-{n}", f"fresh-{user:03d}", items[user * 7 + n], "like", 1_900_000_000_000 + n)
            for user in range(30)
            for n in range(2)
        ]
    )
    store.close()
    report = retrain(world, "--margin", "-1.0", "--metric", "recall@10", "--smoke-test")
    assert report["evaluation"]["newer_than_seq"] == trained_through
    assert report["evaluation"]["users"] == 30  # only users with events the champion never saw
    assert report["outcome"] == "would_promote"  # a win is reported, but without --promote
    assert registry.champion() == before
    assert report["challenger"]["version"] in registry.versions()


def test_retrain_rejects_an_unknown_metric(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["retrain", "--data", str(world["data"]), "--bundles", str(world["root"] / "b2"),
                     "--store", f"sqlite:///{world['store']}", "--metric", "auc"])  # fmt: skip
    assert code == 2
    assert "--metric 'auc'" in capsys.readouterr().err


def test_retrain_runs_under_ray_job_submit(world: dict[str, Path]) -> None:
    bundles, report = world["root"] / "submitted", world["root"] / "submitted.json"
    with LocalCluster(num_cpus=2) as cluster:
        finished = cluster.submit(
            "python", "-m", "jobs.retrain",
            "--data", str(world["data"]),
            "--bundles", str(bundles),
            "--store", f"sqlite:///{world['store']}",
            "--init-from", str(world["bundle"]),
            "--promote", "--smoke-test",
            "--report", str(report),
            working_dir=REPO,
        )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "[retrain] training the challenger" in finished.stdout
    decision = json.loads(report.read_text())
    assert decision["champion"]["version"] == "v0001"
    assert decision["outcome"] in ("promoted", "kept_champion")
    assert BundleRegistry(bundles).champion() == decision["champion_now"]
