"""A/B experiments end to end: Ray Serve over HTTP, a 2-variant experiment, SQLite and Redis."""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from recsys.experiments import Experiment, assign
from serving.privacy import PrivacyConfig
from tests.serving._app import small_bundle

pytestmark = pytest.mark.usefixtures("ray_session")

HMAC_KEY = secrets.token_hex(32)
PSEUDONYM = PrivacyConfig(hmac_key=HMAC_KEY).pseudonymiser()
EXPERIMENT = Experiment.model_validate(
    {
        "id": "explore-test",
        "attribution_window_s": 600,
        "variants": [
            {"name": "control", "share": 0.5},
            {
                "name": "explore",
                "share": 0.5,
                "ranker": {"interest_quota": 0.0, "blend": {"embedding_weight": 0.8}},
                "updater": {"push_strength": 0.5},
            },
        ],
    }
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(
        tmp_path_factory.mktemp("ab"), seed=3, n_events=10_000, n_items=200, n_clusters=4,
        factors=8, iterations=4,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def url(
    request: pytest.FixtureRequest, bundle: Path, http_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from ray import serve

    from serving.app import ServingArgs, build_app

    if request.param == "sqlite":
        store_url = f"sqlite:///{tmp_path_factory.mktemp('ab-store')}/store.db"
    else:
        server = request.getfixturevalue("redis_server")
        store_url = f"{server.url}?prefix=ab-{uuid.uuid4().hex[:6]}:&require_fsync=true"
    args = ServingArgs(
        bundle=str(bundle),
        store_url=store_url,
        experiments=[EXPERIMENT],
        privacy=PrivacyConfig(hmac_key=HMAC_KEY),
    )
    serve.run(build_app(args), name="ab", route_prefix="/")
    yield f"http://127.0.0.1:{http_port}"
    serve.delete("ab")


def page(url: str, user: str) -> dict[str, Any]:
    response = requests.get(f"{url}/v1/users/{user}/recommendations", params={"k": 5}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def send(url: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = requests.post(f"{url}/v1/events", json={"events": events}, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["acks"])


def report(url: str) -> dict[str, Any]:
    response = requests.get(f"{url}/v1/experiments/{EXPERIMENT.id}/report", timeout=30)
    assert response.status_code == 200, response.text
    return {row["variant"]: row for row in response.json()["variants"]}


def test_variants_are_sticky_and_events_are_attributed(url: str) -> None:
    run = uuid.uuid4().hex[:6]
    users = [f"{run}-u{n}" for n in range(24)]
    pages = {user: page(url, user) for user in users}
    for user, body in pages.items():
        assert body["experiment"] == EXPERIMENT.id and len(body["request_id"]) == 32
        # the documented hash of the user as the store knows them (their pseudonym), on every replica
        assert body["variant"] == assign(EXPERIMENT, PSEUDONYM(user))
    variants = Counter(body["variant"] for body in pages.values())
    assert set(variants) == {"control", "explore"}
    again = {user: page(url, user) for user in users[:8]}  # sticky: same variant on the next call
    assert all(again[u]["variant"] == pages[u]["variant"] for u in again)
    assert len({b["request_id"] for b in [*pages.values(), *again.values()]}) == 32
    shown = Counter(b["variant"] for b in [*pages.values(), *again.values()])

    clicks: Counter[str] = Counter()
    conversions: Counter[str] = Counter()
    events = []
    for n, (user, body) in enumerate(pages.items()):
        variant, request, items = body["variant"], body["request_id"], [i["item_id"] for i in body["items"]]
        base = {"user_id": user, "request_id": request}
        if n % 3 == 0:  # two clicks on one page: one click-through
            events += [base | {"item_id": items[0], "event_type": "click"}]
            events += [base | {"item_id": items[1], "event_type": "click"}]
            clicks[variant] += 1
        if n % 4 == 0:  # a purchase: a click-through (if not yet) and a conversion
            events += [base | {"item_id": items[2], "event_type": "purchase"}]
            clicks[variant] += n % 3 != 0
            conversions[variant] += 1
        if n % 5 == 1:  # not attributed: an item the page did not show, a view, someone else
            other = next(u for u in users if u != user)
            events += [base | {"item_id": "not-on-page", "event_type": "click"}]
            events += [base | {"item_id": items[0], "event_type": "view"}]
            events += [base | {"item_id": items[0], "event_type": "click", "user_id": other}]
    events.append({"user_id": users[0], "item_id": "x", "event_type": "click", "request_id": "unknown"})
    acks = send(url, events)
    assert len(acks) == len(events)
    # a resend without an event id is a new event, but its exposure already has its click-through
    assert send(url, [events[0]])[0]["status"] == "applied"

    rows = report(url)
    for variant in ("control", "explore"):
        assert rows[variant]["exposures"] == shown[variant]
        assert rows[variant]["click_through"]["count"] == clicks[variant]
        assert rows[variant]["conversion"]["count"] == conversions[variant]
        low, high = rows[variant]["click_through"]["ci95"]
        assert low <= rows[variant]["click_through"]["rate"] <= high
    assert rows["control"]["control"] and "vs_control" in rows["explore"]
    assert 0.0 <= rows["explore"]["vs_control"]["conversion"]["p_value"] <= 1.0


def test_report_and_bad_input(url: str) -> None:
    assert requests.get(f"{url}/v1/experiments/nope/report", timeout=10).status_code == 404
    listed = requests.get(f"{url}/v1/experiments", timeout=10).json()["experiments"]
    assert listed == [{"id": EXPERIMENT.id, "running": True, "variants": ["control", "explore"]}]
    body = requests.get(f"{url}/v1/experiments/{EXPERIMENT.id}/report", timeout=10).json()
    assert body["allocation"] == {"control": 0.5, "explore": 0.5} and body["control"] == "control"
    too_long = {"user_id": "u", "item_id": "i", "event_type": "click", "request_id": "r" * 300}
    response = requests.post(f"{url}/v1/events", json=too_long, timeout=10)
    assert response.status_code == 422 and "request_id" in response.text
