"""Read-your-writes across replicas: two gateways and two updaters over one store, SQLite and Redis.

Each acknowledged event must show in the very next recommendation call, whichever gateway replica
receives the write and whichever the read (``X-Wayfinder-Replica`` names the one that answered).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from serving.app import REPLICA_HEADER
from tests.serving._app import small_bundle

pytestmark = pytest.mark.usefixtures("ray_session")

ROUNDS = 30


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(
        tmp_path_factory.mktemp("replicas"), seed=7, n_events=10_000, n_items=200, n_clusters=4,
        factors=8, iterations=4,
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path, bundle: Path, http_port: int) -> Iterator[str]:
    from ray import serve

    from serving.app import ServingArgs, build_app

    if request.param == "sqlite":
        store_url = f"sqlite:///{tmp_path}/store.db"
    else:
        server = request.getfixturevalue("redis_server")
        store_url = f"{server.url}?prefix=replicas-{uuid.uuid4().hex[:6]}:&require_fsync=true"
    args = ServingArgs(bundle=str(bundle), store_url=store_url, gateway_replicas=2, updater_replicas=2)
    serve.run(build_app(args), name="replicas", route_prefix="/")
    yield f"http://127.0.0.1:{http_port}"
    serve.delete("replicas")


def page(session: requests.Session, url: str, user: str) -> tuple[dict[str, Any], str]:
    response = session.get(f"{url}/v1/users/{user}/recommendations", params={"k": 10}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json(), response.headers[REPLICA_HEADER]


def test_every_acknowledged_event_shows_in_the_next_call_on_any_replica(url: str) -> None:
    from ray import serve

    status = serve.status().applications["replicas"].deployments
    assert status["Gateway"].replica_states.get("RUNNING") == 2
    assert status["EmbeddingUpdater"].replica_states.get("RUNNING") == 2
    session = requests.Session()
    user = f"ryw-{uuid.uuid4().hex[:6]}"
    current, first_reader = page(session, url, user)
    readers, writers, crossed = {first_reader}, set(), 0
    version = current["state_version"]
    for round_ in range(ROUNDS):
        liked = current["items"][0]["item_id"]
        event = {"user_id": user, "item_id": liked, "event_type": "like", "event_id": f"{user}-{round_}"}
        posted = session.post(f"{url}/v1/events", json=event, timeout=30)
        assert posted.status_code == 200, posted.text
        (ack,) = posted.json()["acks"]
        assert ack["status"] == "applied"
        assert ack["state_version"] > version  # every event moves the state version
        writer = posted.headers[REPLICA_HEADER]
        current, reader = page(session, url, user)  # at once, on whichever replica Serve picks
        assert current["state_version"] >= ack["state_version"], (round_, writer, reader)
        assert liked not in [i["item_id"] for i in current["items"]], (round_, writer, reader)
        version = current["state_version"]
        readers.add(reader)
        writers.add(writer)
        crossed += writer != reader
        if round_ % 10 == 9:
            intent = session.get(f"{url}/v1/users/{user}/intent", timeout=30).json()
            assert intent["n_signals"] == round_ + 1
    assert len(readers) == 2 and len(writers) == 2  # both gateway replicas served reads and writes
    assert crossed > 0  # some events were written through one gateway and read through the other
