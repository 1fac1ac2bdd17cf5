"""Two Ray nodes on one machine: a head (``ray start --head``, token auth) and a worker node
(``ray start --address=...`` with its own CPU and a ``worker_node`` resource).

The real jobs run as drivers against that cluster, and Ray's State API says where their work ran:
preprocessing tasks and Tune trials on both nodes, Serve replicas on both nodes. The app's state is
in Redis; killing the worker node (SIGKILL of its raylet and everything under it) in the middle of
a stream of events loses no acknowledged event, and the head's replicas see the events the worker's
replicas acknowledged.
"""

from __future__ import annotations

import random
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import yaml

from recsys.engine import load_bundle, train_bundle
from recsys.store import open_store
from tests._cluster import LocalCluster, WorkerNode, free_port
from tests.conftest import REPO

if TYPE_CHECKING:
    from tests._redis import RedisServer

pytestmark = pytest.mark.slow


@dataclass
class TwoNodes:
    cluster: LocalCluster
    worker: WorkerNode
    head_id: str
    worker_id: str
    root: Path

    def run_driver(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """A job's driver joined to this cluster (``--address``), as ``ray job submit`` would start it."""
        command = [sys.executable, "-m", *args, "--address", self.cluster.gcs_address]
        done = subprocess.run(
            command, cwd=REPO, env=self.cluster.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return done


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    cluster = LocalCluster(num_cpus=1)
    cluster.env["PYTHONPATH"] = str(REPO)  # every worker process imports this checkout
    with cluster:
        worker = cluster.add_worker(num_cpus=1, resources={"worker_node": 1})
        nodes = cluster.state("nodes")
        head_id = next(n["node_id"] for n in nodes if n["is_head_node"])
        worker_id = next(n["node_id"] for n in nodes if n["resources_total"].get("worker_node"))
        yield TwoNodes(cluster, worker, head_id, worker_id, tmp_path_factory.mktemp("multinode"))


@pytest.fixture(scope="module")
def preprocessed(two_nodes: TwoNodes, ml_small: Path) -> Path:
    """The bundled MovieLens data, preprocessed by the real job on the two-node cluster."""
    out = two_nodes.root / "data"
    two_nodes.run_driver("jobs.preprocess", "--source", f"movielens:{ml_small}", "--out", str(out))
    return out


def test_preprocessing_tasks_ran_on_both_nodes(two_nodes: TwoNodes, preprocessed: Path) -> None:
    assert (preprocessed / "quality.json").exists()
    tasks = [
        t
        for t in two_nodes.cluster.state("tasks")
        if t["type"] == "NORMAL_TASK" and "Map" in t["name"] and t["state"] == "FINISHED"
    ]
    nodes = {t["node_id"] for t in tasks}
    assert nodes == {two_nodes.head_id, two_nodes.worker_id}, sorted({t["name"] for t in tasks})


def test_tune_trials_ran_on_both_nodes(two_nodes: TwoNodes, preprocessed: Path) -> None:
    two_nodes.run_driver(
        "jobs.tune",
        *("--data", str(preprocessed), "--out", str(two_nodes.root / "models")),
        *("--smoke-test", "--families", "popularity,itemknn", "--no-ensemble"),
        *("--search", "random", "--cpus-per-trial", "1"),
    )
    actors = two_nodes.cluster.state("actors")
    trials = [a for a in actors if a["class_name"] == "ImplicitFunc"]  # function trainables
    assert {a["node_id"] for a in trials} == {two_nodes.head_id, two_nodes.worker_id}, sorted(
        {a["class_name"] for a in actors}
    )


@dataclass
class Traffic:
    """Events posted one per request; ``acked`` holds those answered 200 (durable by contract)."""

    url: str
    users: list[str]
    items: list[str]
    acked: dict[str, tuple[str, int]] = field(default_factory=dict)
    failed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng, n = random.Random(0), 0
        while not self.stop.is_set():
            user, event_id = self.users[n % len(self.users)], f"mn-{uuid.uuid4().hex[:10]}"
            body = {"user_id": user, "item_id": rng.choice(self.items), "event_type": "click"}
            try:
                response = requests.post(
                    f"{self.url}/v1/events", json=body | {"event_id": event_id}, timeout=15
                )
            except requests.RequestException:
                self.failed += 1
                continue
            finally:
                n += 1
            if response.status_code == 200:
                (ack,) = response.json()["acks"]
                self.acked[event_id] = (user, ack["state_version"])
            else:
                self.failed += 1


def cluster_deployments() -> list[dict[str, Any]]:
    """The per-deployment overrides of the cluster's Serve config (docs/serve-cluster.yaml)."""
    document = yaml.safe_load((REPO / "docs" / "serve-cluster.yaml").read_text())
    (application,) = document["applications"]
    return list(application["deployments"])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_serve_on_both_nodes_shares_redis_state_and_survives_losing_the_worker_node(
    two_nodes: TwoNodes, preprocessed: Path, redis_server: RedisServer
) -> None:
    bundle = two_nodes.root / "bundle"
    train_bundle(preprocessed, bundle, space={"family": "als", "factors": 8, "iterations": 4})
    store_url = f"{redis_server.url}?prefix=mn-{uuid.uuid4().hex[:6]}:&require_fsync=true"
    port = free_port()
    args = {
        "bundle": str(bundle),
        "store_url": store_url,
        "gateway_replicas": 2,
        "updater_replicas": 2,
        "privacy": {"hmac_key": secrets.token_hex(32)},  # one key for every node's replicas
    }
    config = {
        "proxy_location": "HeadOnly",  # one machine: a proxy per node would fight for the port
        "http_options": {"host": "127.0.0.1", "port": port},
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},
        "applications": [
            {
                "name": "wayfinder",
                "route_prefix": "/",
                "import_path": "serving.app:build_app",
                "args": args,
                "deployments": cluster_deployments(),  # one replica of each per node, as deployed
            }
        ],
    }
    config_path = two_nodes.root / "serve.yaml"
    config_path.write_text(yaml.safe_dump(config))
    deploy = [str(Path(sys.executable).parent / "serve"), "deploy", str(config_path)]
    subprocess.run(
        [*deploy, "-a", two_nodes.cluster.dashboard_url],
        env=two_nodes.cluster.env,
        check=True,
        capture_output=True,
        timeout=120,
    )

    def replicas() -> list[dict[str, Any]]:
        return [
            a
            for a in two_nodes.cluster.state("actors")
            if a["class_name"].startswith("ServeReplica:wayfinder") and a["state"] == "ALIVE"
        ]

    def ready() -> bool:
        try:
            ok = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False
        return ok and len(replicas()) == 4

    wait_for(ready, 600, "the app's four replicas")
    placed: dict[str, set[str]] = {}
    for actor in replicas():  # class names are ServeReplica:<app>:<deployment>
        placed.setdefault(actor["class_name"].rsplit(":", 1)[-1], set()).add(actor["node_id"])
    both = {two_nodes.head_id, two_nodes.worker_id}
    assert placed == {"Gateway": both, "EmbeddingUpdater": both}

    items = list(load_bundle(bundle).item_ids.ids)
    traffic = Traffic(f"http://127.0.0.1:{port}", [f"mn-u{i}" for i in range(6)], items)
    thread = threading.Thread(target=traffic.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(traffic.acked) >= 40, 300, "40 acknowledged events before the kill")
        two_nodes.cluster.kill_worker(two_nodes.worker)
        acked_at_kill = len(traffic.acked)
        wait_for(lambda: len(traffic.acked) >= acked_at_kill + 40, 300, "40 acknowledged events after")
    finally:
        traffic.stop.set()
        thread.join(timeout=60)

    from serving.app import ServingArgs

    pseudonym = ServingArgs.model_validate(args).pseudonymiser()  # the store knows users by pseudonym
    store = open_store(store_url)
    for user in traffic.users:
        stored = {record.event.event_id for record in store.events_for_user(pseudonym(user))}
        acked = {event_id for event_id, (who, _) in traffic.acked.items() if who == user}
        assert acked <= stored, f"{len(acked - stored)} acknowledged events of {user} are not in the store"
        newest = max((version for who, version in traffic.acked.values() if who == user), default=0)
        intent = requests.get(f"{traffic.url}/v1/users/{user}/intent", timeout=30).json()
        assert intent["state_version"] >= newest  # the head's replicas see every acknowledged write
    wait_for(
        lambda: {a["node_id"] for a in replicas()} == {two_nodes.head_id}, 180, "replicas only on the head"
    )
    print(  # shown with -s: how the loss of a node looked from the client
        f"acknowledged {len(traffic.acked)} ({acked_at_kill} before the kill), failed {traffic.failed}"
    )
