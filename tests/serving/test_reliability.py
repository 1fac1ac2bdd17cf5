"""Reliability under load and faults, over HTTP against the real app, with both store backends.

A shorter run of the soak benchmark's harness (:mod:`benchmarks.soak`; the 64-client, 60-second
numbers are in BENCHMARKS.md): 12 clients for 15 s of mixed events and recommendation pages; at 25%
of the run an ``EmbeddingUpdater`` replica is killed, at 50% the store's process (``redis-server``
SIGKILLed and restarted on the same AOF) or, for SQLite, a gateway replica. Then the whole app is
restarted on the same store.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from benchmarks.soak import PROBES, Deployment, Scenario, free_port, run_scenario
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.data.synthetic import DirtConfig, SyntheticConfig, generate
from recsys.engine import train_bundle

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]

CLIENTS = 12
DURATION_S = 15.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A serving bundle fitted on a small synthetic catalogue."""
    root = tmp_path_factory.mktemp("soak")
    config = SyntheticConfig(seed=7, n_events=20_000, n_items=300, n_clusters=6, dirt=DirtConfig.none())
    generate(config, str(root / "raw"))
    source = parse_source(f"events:{root}/raw/events", items=f"{root}/raw/items", users=f"{root}/raw/users")
    preprocess(source, Location.parse(str(root / "data")), executor=SerialExecutor())
    train_bundle(root / "data", root / "bundle", space={"family": "als", "factors": 16, "iterations": 8})
    return root / "bundle"


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def scenario(
    request: pytest.FixtureRequest, bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Scenario:
    """One soak run per backend: load with two faults, then a whole-app restart (Serve stopped after)."""
    redis_server = None
    if request.param == "sqlite":
        store_url = f"sqlite:///{tmp_path_factory.mktemp('soak-store')}/store.db"
    else:
        redis_server = request.getfixturevalue("redis_server")
        store_url = f"{redis_server.url}?prefix=soak-{uuid.uuid4().hex[:6]}:&require_fsync=true"
    deployment = Deployment(bundle=bundle, store_url=store_url, port=free_port())
    try:
        return run_scenario(
            deployment,
            backend=request.param,
            clients=CLIENTS,
            duration=DURATION_S,
            redis_server=redis_server,
            redis_down_s=1.0,
        )
    finally:
        deployment.stop()


def test_no_server_error_but_counted_503s(scenario: Scenario) -> None:
    load = scenario.load
    errors = load.server_errors(scenario.faults)
    assert errors == [], (scenario.summary(), errors[:5])
    assert load.client_errors() == [], (scenario.summary(), load.client_errors()[:5])
    outcomes = load.outcomes()
    lost = load.lost_with_ingress(scenario.faults)  # in flight on the gateway replica that was killed
    assert outcomes["HTTP 500"] == len(lost) and set(outcomes) <= {"ok", "503", "HTTP 500"}, outcomes
    unavailable = [s.detail for s in load.samples if s.outcome == "503"]
    assert all("temporarily unavailable" in d and "ray::" not in d for d in unavailable), unavailable[:3]
    if scenario.backend == "redis":  # no gateway replica is killed there
        assert lost == []
    assert outcomes["ok"] > 10 * CLIENTS  # the load really ran
    # every 503 came while a fault was in effect, never before the first one
    early = [s for s in load.samples if s.end < scenario.faults[0].at and s.outcome != "ok"]
    assert early == [], early[:5]


def test_every_acknowledged_event_is_in_the_store(scenario: Scenario) -> None:
    load = scenario.load
    assert load.unacked_after_drain == set()  # each retried event was acknowledged in the end
    assert load.acked == load.sent
    assert len(scenario.stored_ids) == len(set(scenario.stored_ids))  # retries stored once
    assert set(scenario.stored_ids) == load.acked
    assert len(scenario.stored_ids) == len(load.acked)


def test_the_service_recovers_after_each_fault(scenario: Scenario) -> None:
    for fault in scenario.faults:
        assert fault.replaced_after_s is not None, f"{fault.name}: no replacement seen"
    assert scenario.probe == {"page": PROBES, "event": PROBES}, scenario.summary()


def test_restart_keeps_every_state_and_page(scenario: Scenario) -> None:
    restart = scenario.restart
    assert restart.users == len(scenario.users) and restart.states_differing == []
    assert restart.old_app_matches_engine == restart.pages_checked > 0
    assert restart.pages_differing == []
