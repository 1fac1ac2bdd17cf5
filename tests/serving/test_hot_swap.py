"""Hot swap of the served bundle version under load, over HTTP, on a real Serve app and SQLite store.

v1 and v2 are two versions of a bundle registry (different ALS spaces: 16 and 24 factors). The app
serves v1 (``wayfinder serve --model-version v0001``); threads send recommendations and events
without pause while v2 becomes the champion and ``wayfinder serve --reload`` runs ``serve.run``
again (only the deployments' ``user_config`` changes, so Serve calls ``reconfigure`` on the running
replicas). Nothing may fail, the replica must be the same one, the
reported version must change, and a user's state must be re-derived from their events in v2's space.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from jobs import cli
from recsys.data.ids import IdIndex
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.data.synthetic import DirtConfig, SyntheticConfig, generate
from recsys.embeddings import EmbeddingUpdater, UpdaterConfig, UserState
from recsys.engine import load_bundle, train_bundle
from recsys.engine.rederive import state_fold
from recsys.engine.versions import BundleRegistry
from recsys.store import open_store
from serving.api_keys import add_key, new_key
from tests._cluster import free_port

pytestmark = pytest.mark.usefixtures("ray_session")

LOAD_THREADS = 4
CHECKED_USER = "swap-check"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> BundleRegistry:
    root = tmp_path_factory.mktemp("swap")
    config = SyntheticConfig(seed=11, n_events=20_000, n_items=300, n_clusters=6, dirt=DirtConfig.none())
    generate(config, str(root / "raw"))
    source = parse_source(f"events:{root}/raw/events", items=f"{root}/raw/items", users=f"{root}/raw/users")
    preprocess(source, Location.parse(str(root / "data")), executor=SerialExecutor())
    registry = BundleRegistry(root / "bundles")
    for factors in (16, 24):
        space = {"family": "als", "factors": factors, "iterations": 8}
        registry.publish_bundle(lambda d, s=space: train_bundle(root / "data", d, space=s), {"parent": None})
    registry.set_champion("v0001")
    return registry


AUTH: dict[str, str] = {}
"""The admin key's header, set by the ``app`` fixture."""


@pytest.fixture(scope="module")
def app(registry: BundleRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    port = free_port()
    root = tmp_path_factory.mktemp("store")
    store_url = f"sqlite:///{root}/store.db"
    raw_key, record = new_key(["admin"], name="test", rate_per_s=1000, burst=1000)
    add_key(root / "api-keys.json", record)  # `wayfinder serve` uses this file's keys, makes none
    AUTH.update({"authorization": f"Bearer {raw_key}"})
    common = ["--bundle", str(registry.path), "--store", store_url, "--port", str(port)]
    common += ["--keys-file", str(root / "api-keys.json")]
    assert cli.main(["serve", *common, "--model-version", "v0001", "--detach"]) == 0

    def promote_and_reload(version: str) -> None:
        """What `wayfinder retrain --promote` then `wayfinder serve --reload` do."""
        registry.set_champion(version)
        assert cli.main(["serve", *common, "--reload"]) == 0

    from serving.app import ServingArgs

    # the store knows users by their pseudonyms (the HMAC key file `wayfinder serve` made beside it)
    pseudonym = ServingArgs(bundle=str(registry.path), store_url=store_url).pseudonymiser()
    yield {
        "url": f"http://127.0.0.1:{port}",
        "store_url": store_url,
        "swap": promote_and_reload,
        "id": pseudonym,
    }
    serve.delete("wayfinder")
    serve.shutdown()


class Load:
    """Threads that GET pages and POST events without pause; every response and error is kept."""

    def __init__(self, url: str, items: list[str]) -> None:
        self.url, self.items = url, items
        self.results: list[tuple[float, str, int]] = []
        self.errors: list[str] = []
        self.acked = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(LOAD_THREADS)]

    def _run(self, worker: int) -> None:
        session = requests.Session()
        session.headers.update(AUTH)
        n = 0
        while not self._stop.is_set():
            user = f"load-{worker}-{n % 5}"
            try:
                if n % 2:
                    body = {"user_id": user, "item_id": self.items[n % len(self.items)], "event_type": "like",
                            "event_id": f"load-{worker}-{n}"}  # fmt: skip
                    response = session.post(f"{self.url}/v1/events", json=body, timeout=30)
                    kind = "event"
                else:
                    response = session.get(f"{self.url}/v1/users/{user}/recommendations?k=5", timeout=30)
                    kind = "page"
                with self._lock:
                    self.results.append((time.monotonic(), kind, response.status_code))
                    if kind == "event" and response.status_code == 200:
                        self.acked += 1
            except requests.RequestException as exc:
                with self._lock:
                    self.errors.append(repr(exc))
            n += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def readyz(url: str) -> dict[str, Any]:
    response = requests.get(f"{url}/readyz", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json()["details"])


def stored_state(store_url: str, user: str) -> UserState:
    store = open_store(store_url)
    try:
        current = store.get_state(user)
        assert current is not None
        return UserState.from_bytes(current.data)
    finally:
        store.close()


def test_swap_under_load_fails_nothing_and_rederives_states(
    app: dict[str, Any], registry: BundleRegistry
) -> None:
    url, store_url = app["url"], app["store_url"]
    items = IdIndex.load(registry.bundle_dir("v0001") / "ids" / "items.parquet").ids[:40]
    before = readyz(url)
    assert before["model_version"] == "v0001"
    for n, item in enumerate(items[:3]):
        body = {"user_id": CHECKED_USER, "item_id": item, "event_type": "like", "event_id": f"check-{n}"}
        assert requests.post(f"{url}/v1/events", json=body, headers=AUTH, timeout=30).status_code == 200
    assert stored_state(store_url, app["id"](CHECKED_USER)).model_version == "v0001"

    with Load(url, items) as load:
        time.sleep(3)
        swap_started = time.monotonic()
        app["swap"]("v0002")
        swap_done = time.monotonic()
        time.sleep(3)

    assert load.errors == []
    statuses = [status for _, _, status in load.results]
    assert statuses and all(200 <= status < 300 for status in statuses), sorted(set(statuses))
    during = [r for r in load.results if swap_started <= r[0] <= swap_done]
    after = [r for r in load.results if r[0] > swap_done]
    print(
        f"[hot-swap] {len(load.results)} requests: {len(load.results) - len(during) - len(after)} before, "
        f"{len(during)} during the {swap_done - swap_started:.1f} s swap, {len(after)} after"
    )
    assert during and after, "the load must run through the swap and after it"
    after_swap = readyz(url)
    assert after_swap["model_version"] == "v0002"
    assert after_swap["replica"] == before["replica"]  # reconfigured in place, not restarted

    # every acknowledged event is in the log
    store = open_store(store_url)
    try:
        assert store.count_events() == 3 + load.acked
    finally:
        store.close()

    # the checked user was not touched since the swap: still in v1's space until the first touch
    assert stored_state(store_url, app["id"](CHECKED_USER)).model_version == "v0001"
    response = requests.get(f"{url}/v1/users/{CHECKED_USER}/intent", headers=AUTH, timeout=30)
    assert response.status_code == 200
    state = stored_state(store_url, app["id"](CHECKED_USER))
    parts = load_bundle(registry.bundle_dir("v0002"))
    store = open_store(store_url)
    try:
        events = store.events_for_user(app["id"](CHECKED_USER))
    finally:
        store.close()

    def index(item_id: str) -> int | None:
        found = int(parts.item_ids.lookup([item_id])[0])
        return found if found >= 0 else None

    expected = UserState.from_bytes(
        state_fold(EmbeddingUpdater(parts.space, UpdaterConfig()), index, "v0002")(None, events)
    )
    assert state == expected
    assert state.model_version == "v0002" and state.n_signals == 3
    dimension = parts.space.dim
    assert dimension != load_bundle(registry.bundle_dir("v0001")).space.dim
    assert state.interests and all(interest.total.shape == (dimension,) for interest in state.interests)
