"""The HTTP API end to end: Ray Serve on a local cluster, over HTTP, with both store backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.serving._app import small_bundle

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(
        tmp_path_factory.mktemp("serving"), seed=5, n_events=20_000, n_items=300, n_clusters=6,
        factors=16, iterations=8,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store')}/store.db"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=api-{uuid.uuid4().hex[:6]}:&require_fsync=true"


def deploy(bundle: Path, store_url: str, port: int) -> str:
    from ray import serve

    from serving.app import ServingArgs, build_app

    serve.run(build_app(ServingArgs(bundle=str(bundle), store_url=store_url)), name="api", route_prefix="/")
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def url(bundle: Path, store_url: str, http_port: int) -> Iterator[str]:
    from ray import serve

    yield deploy(bundle, store_url, http_port)
    serve.delete("api")


def items(url: str, user: str, **params: Any) -> dict[str, Any]:
    response = requests.get(f"{url}/v1/users/{user}/recommendations", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def post(url: str, body: Any) -> requests.Response:
    return requests.post(f"{url}/v1/events", json=body, timeout=30)


def test_health_and_openapi(url: str) -> None:
    assert requests.get(f"{url}/healthz", timeout=10).json()["status"] == "ok"
    assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
    paths = requests.get(f"{url}/openapi.json", timeout=10).json()["paths"]
    assert "/v1/users/{user_id}/recommendations" in paths and "/v1/events" in paths


def test_first_page_then_an_event_moves_the_next_page(url: str) -> None:
    user = f"new-{uuid.uuid4().hex[:6]}"
    first = items(url, user, k=10)
    assert first["state_version"] == 0 and len(first["items"]) == 10
    assert {i["provenance"] for i in first["items"]} == {"popular-fallback"}
    liked = first["items"][3]["item_id"]
    ack = post(url, {"user_id": user, "item_id": liked, "event_type": "like", "event_id": f"{user}-1"})
    assert ack.status_code == 200, ack.text
    (acked,) = ack.json()["acks"]
    assert acked["status"] == "applied" and acked["event_id"] == f"{user}-1"
    assert acked["state_version"] >= 1  # showing the first page counts too (journey policy)
    after = items(url, user, k=10)  # read-your-writes: the very next call sees the event
    assert after["state_version"] >= acked["state_version"]
    assert liked not in [i["item_id"] for i in after["items"]]  # seen items are filtered
    assert any(i["provenance"] == "exploit" for i in after["items"])
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in first["items"]]
    again = post(url, {"user_id": user, "item_id": liked, "event_type": "like", "event_id": f"{user}-1"})
    assert again.json()["acks"][0]["status"] == "duplicate"
    intent = requests.get(f"{url}/v1/users/{user}/intent", timeout=10).json()
    assert intent["n_signals"] == 1 and intent["interests"]


def test_batches_filters_and_similar(url: str) -> None:
    user = f"batch-{uuid.uuid4().hex[:6]}"
    page = items(url, user, k=5)
    batch = [
        {"user_id": user, "item_id": item["item_id"], "event_type": kind}
        for item, kind in zip(page["items"], ["click", "like", "dislike"], strict=False)
    ]
    acks = post(url, {"events": batch}).json()["acks"]
    assert [a["status"] for a in acks] == ["applied"] * 3
    assert [a["state_version"] for a in acks] == sorted(a["state_version"] for a in acks)
    excluded = items(url, user, k=5)["items"][0]["item_id"]
    assert excluded not in [i["item_id"] for i in items(url, user, k=5, exclude=excluded)["items"]]
    similar = requests.get(f"{url}/v1/items/{excluded}/similar", params={"k": 4}, timeout=10).json()
    assert len(similar["items"]) == 4 and excluded not in [i["item_id"] for i in similar["items"]]
    assert requests.get(f"{url}/v1/items/no-such-item/similar", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"item_id": "x", "event_type": "like"}, "user_id"),
        ({"user_id": "u", "item_id": "x", "event_type": "teleport"}, "event_type"),
        ({"user_id": "u", "item_id": "x", "event_type": "like", "value": "lots"}, "value"),
        ({"events": []}, "events"),
    ],
)
def test_bad_events_get_422_naming_the_field(url: str, body: dict[str, Any], field: str) -> None:
    response = post(url, body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_malformed_and_oversized_requests_are_4xx(url: str) -> None:
    broken = requests.post(
        f"{url}/v1/events", data="{not json", headers={"content-type": "application/json"}, timeout=10
    )
    assert broken.status_code == 422
    assert items_status(url, k=0) == 422 and items_status(url, k=100_000) == 422
    huge = requests.post(
        f"{url}/v1/events", data=b"x" * 2_000_000, headers={"content-type": "application/json"}, timeout=30
    )
    assert huge.status_code == 413


LIKE = '"user_id":"U","item_id":"I","event_type":"like"'
"""An event's required fields, ``U`` and ``I`` replaced by a fresh user and a known item."""


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("POST", "/v1/events", '{"user_id":"U\\ud800","item_id":"I","event_type":"like"}', "user_id"),
        ("POST", "/v1/events", '{"events":[{' + LIKE + ',"event_id":"\\udfff"}]}', "event_id"),
        ("POST", "/v1/events", "{" + LIKE + ',"context":{"d":"\\ud83d"}}', "context.d"),
        ("POST", "/v1/events", "{" + LIKE + ',"context":{"\\ud83d":"tv"}}', "context."),
        ("PUT", "/v1/items/I", '{"title":"\\ud800 title","categories":["c0"]}', "title"),
        ("PUT", "/v1/items/I", '{"title":"t","attributes":{"\\udc00":1.0}}', "attributes."),
        ("POST", "/v1/promotions", '{"item_ids":["I","\\udc00"]}', "item_ids[1]"),
    ],
)
def test_a_lone_surrogate_is_a_422(url: str, method: str, path: str, raw: str, field: str) -> None:
    """JSON can escape half a UTF-16 pair (``"\\ud800"``): no UTF-8 form, so no store can write it.
    Refused with a 422 naming the field, and nothing is stored (it was a 500, failing the other
    requests of its ``@serve.batch`` too)."""
    user, item = f"lone-{uuid.uuid4().hex[:6]}", f"lone-item-{uuid.uuid4().hex[:6]}"
    some = items(url, "lone-viewer", k=1)["items"][0]["item_id"]
    body = raw.replace('"U', f'"{user}').replace('"I"', f'"{some}"')
    response = requests.request(
        method, f"{url}{path.replace('/I', f'/{item}')}", data=body.encode("ascii"),
        headers={"content-type": "application/json"}, timeout=10,
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert any(field in error["msg"] for error in response.json()["detail"]), response.text
    assert requests.get(f"{url}/v1/users/{user}/intent", timeout=10).json()["n_signals"] == 0
    assert requests.get(f"{url}/v1/items/{item}/similar", timeout=10).status_code == 404


def items_status(url: str, **params: Any) -> int:
    return requests.get(f"{url}/v1/users/u/recommendations", params=params, timeout=10).status_code


def test_unknown_item_waits_then_a_new_item_is_recommendable(url: str) -> None:
    user, item = f"pend-{uuid.uuid4().hex[:6]}", f"new-item-{uuid.uuid4().hex[:6]}"
    ack = post(url, {"user_id": user, "item_id": item, "event_type": "like"}).json()["acks"][0]
    assert ack["status"] == "pending_item"
    created = requests.put(
        f"{url}/v1/items/{item}",
        json={"title": "A brand new thing", "categories": ["c0"], "tags": ["fresh"]},
        timeout=30,
    )
    assert created.status_code == 200 and created.json()["created"] is True
    similar = requests.get(f"{url}/v1/items/{item}/similar", params={"k": 3}, timeout=10)
    assert similar.status_code == 200 and len(similar.json()["items"]) == 3
    intent = requests.get(f"{url}/v1/users/{user}/intent", timeout=10).json()
    assert intent["n_signals"] == 1  # the pending like was applied once the item existed


def test_promotions_crud(url: str) -> None:
    some = items(url, "promo-viewer", k=3)["items"][0]["item_id"]
    created = requests.post(
        f"{url}/v1/promotions", json={"item_ids": [some], "relevance_floor": -1.0}, timeout=10
    )
    assert created.status_code == 201, created.text
    promotion_id = created.json()["promotion_id"]
    listed = requests.get(f"{url}/v1/promotions", timeout=10).json()["promotions"]
    assert promotion_id in [p["promotion_id"] for p in listed]
    bad = requests.post(f"{url}/v1/promotions", json={"item_ids": ["nope"]}, timeout=10)
    assert bad.status_code == 422 and "nope" in bad.text
    assert requests.delete(f"{url}/v1/promotions/{promotion_id}", timeout=10).status_code == 200
    assert requests.delete(f"{url}/v1/promotions/{promotion_id}", timeout=10).status_code == 404


def test_forget_user_erases_state_and_events(url: str) -> None:
    user = f"gone-{uuid.uuid4().hex[:6]}"
    liked = items(url, user, k=3)["items"][0]["item_id"]
    post(url, {"user_id": user, "item_id": liked, "event_type": "purchase"})
    deleted = requests.delete(f"{url}/v1/users/{user}", timeout=10).json()
    assert deleted["events_deleted"] == 1 and deleted["state_deleted"] is True
    assert items(url, user, k=3)["state_version"] == 0


def test_state_survives_an_app_restart(url: str, bundle: Path, store_url: str, http_port: int) -> None:
    from ray import serve

    user = f"durable-{uuid.uuid4().hex[:6]}"
    for n, item in enumerate(items(url, user, k=4)["items"]):
        post(
            url,
            {"user_id": user, "item_id": item["item_id"], "event_type": "like", "event_id": f"{user}-{n}"},
        )
    before = requests.get(f"{url}/v1/users/{user}/intent", timeout=10).json()
    serve.delete("api")
    deploy(bundle, store_url, http_port)
    after = requests.get(f"{url}/v1/users/{user}/intent", timeout=10).json()
    assert after == before
