"""Serve autoscaling of the Gateway: under load Serve adds a replica, the new replica answers like
the first (read-your-writes across both, over one store), and Serve removes it when the load stops.
A re-deploy that changes only the replica setting scales the running app, keeping its replicas."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from serving.app import REPLICA_HEADER
from serving.config import Autoscaling
from tests.serving._app import small_bundle

pytestmark = pytest.mark.usefixtures("ray_session")

APP = "autoscaling"
SCALING = Autoscaling(
    min_replicas=1,
    max_replicas=2,
    target_ongoing_requests=1,
    metrics_interval_s=0.5,
    look_back_period_s=2,
    upscale_delay_s=0,
    downscale_delay_s=2,
)
"""Fast to react, so the test is short: any sustained concurrency above one adds the second replica."""
TIMEOUT_S = 120.0
CLIENTS = 6


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(
        tmp_path_factory.mktemp("autoscaling"), seed=11, n_events=10_000, n_items=150, n_clusters=3,
        factors=8, iterations=4,
    )  # fmt: skip


@pytest.fixture
def url(tmp_path: Path, bundle: Path, http_port: int) -> Iterator[str]:
    from ray import serve

    from serving.app import ServingArgs, build_app

    args = ServingArgs(
        bundle=str(bundle), store_url=f"sqlite:///{tmp_path}/store.db", gateway_replicas=SCALING
    )
    serve.run(build_app(args), name=APP, route_prefix="/")
    yield f"http://127.0.0.1:{http_port}"
    serve.delete(APP)


def running_gateways() -> int:
    from ray import serve

    return int(serve.status().applications[APP].deployments["Gateway"].replica_states.get("RUNNING", 0))


class Load:
    """``CLIENTS`` threads sending recommendation calls back to back; the replicas that answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.replicas: set[str] = set()
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)]

    def _client(self, n: int) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            response = session.get(
                f"{self.url}/v1/users/load-{n}/recommendations", params={"k": 5}, timeout=30
            )
            if response.status_code != 200:
                self.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
            else:
                self.replicas.add(response.headers[REPLICA_HEADER])

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Until ``condition()`` holds (polled every 0.5 s), failing after :data:`TIMEOUT_S`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < TIMEOUT_S, f"{what}: not within {TIMEOUT_S} s"
        time.sleep(0.5)


def test_the_gateway_scales_out_under_load_and_back_in_when_it_stops(url: str) -> None:
    assert running_gateways() == 1
    session = requests.Session()
    with Load(url) as load:
        wait_for(lambda: running_gateways() == 2, "a second Gateway under load")
        wait_for(lambda: len(load.replicas) == 2, "both replicas answering")
        # Read-your-writes on whichever replica answers: like the top item, then at once read.
        user = f"scaled-{uuid.uuid4().hex[:6]}"
        for round_ in range(12):
            first = session.get(f"{url}/v1/users/{user}/recommendations", params={"k": 5}, timeout=30).json()
            liked = first["items"][0]["item_id"]
            event = {"user_id": user, "item_id": liked, "event_type": "like", "event_id": f"{user}-{round_}"}
            posted = session.post(f"{url}/v1/events", json=event, timeout=30)
            assert posted.status_code == 200, posted.text
            (ack,) = posted.json()["acks"]
            after = session.get(f"{url}/v1/users/{user}/recommendations", params={"k": 5}, timeout=30)
            assert after.json()["state_version"] >= ack["state_version"]
            assert liked not in [item["item_id"] for item in after.json()["items"]]
    assert not load.failures, load.failures[:3]
    assert len(load.replicas) == 2
    wait_for(lambda: running_gateways() == 1, "back to one Gateway without load")
    assert session.get(f"{url}/v1/users/{user}/recommendations", timeout=30).status_code == 200


def test_a_new_replica_setting_scales_the_running_app_in_place(
    url: str, bundle: Path, tmp_path: Path
) -> None:
    from ray import serve

    from serving.app import ServingArgs, build_app

    first = requests.get(f"{url}/readyz", timeout=30).json()["details"]["replica"]
    args = ServingArgs(bundle=str(bundle), store_url=f"sqlite:///{tmp_path}/store.db", gateway_replicas=2)
    serve.run(build_app(args), name=APP, route_prefix="/")  # only the replica setting changed
    assert running_gateways() == 2
    session = requests.Session()
    answered = {session.get(f"{url}/readyz", timeout=30).json()["details"]["replica"] for _ in range(40)}
    assert first in answered  # the replica that ran before was kept, not restarted
    assert len(answered) == 2
