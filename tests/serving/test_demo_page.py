"""The live demo page end to end: the real app on a local Ray cluster, driven in headless Chromium.

The browser is Debian's ``chromium`` driven by Playwright's Python package (never a browser that
Playwright downloads). The HTTP endpoints the page uses are checked over plain HTTP first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from recsys.store import open_store
from serving.api_keys import add_key, new_key
from serving.auth import AuthConfig
from tests.serving._app import serve_on_free_port, small_bundle

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"
N_ITEMS = 300


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(
        tmp_path_factory.mktemp("demo"), seed=5, n_events=20_000, n_items=N_ITEMS, n_clusters=6,
        factors=16, iterations=8,
    )  # fmt: skip


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('demo-store')}/store.db"


@pytest.fixture(scope="module")
def demo_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A keys file holding one key with the scopes the page needs; ``(keys file, raw key)``."""
    path = tmp_path_factory.mktemp("demo-keys") / "api-keys.json"
    raw, record = new_key(["recommendations:read", "events:write"], name="demo", rate_per_s=100, burst=200)
    add_key(path, record)
    return str(path), raw


@pytest.fixture(scope="module")
def serving_args(bundle: Path, store_url: str, demo_key: tuple[str, str]) -> Any:
    from serving.app import ServingArgs

    return ServingArgs(bundle=str(bundle), store_url=store_url, auth=AuthConfig(keys_file=demo_key[0]))


@pytest.fixture(scope="module")
def url(serving_args: Any) -> Iterator[str]:
    from ray import serve

    from serving.app import build_app

    with serve_on_free_port() as base:
        serve.run(build_app(serving_args), name="demo", route_prefix="/")
        yield base
        serve.delete("demo")


@pytest.fixture(scope="module")
def key(demo_key: tuple[str, str]) -> str:
    return demo_key[1]


KEY: dict[str, str] = {}


def get(url: str, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{url}{path}", params=params, headers=KEY, timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _authorised(key: str) -> Iterator[None]:
    KEY["authorization"] = f"Bearer {key}"
    yield
    KEY.clear()


def test_the_data_endpoints_need_a_key_and_the_page_does_not(url: str) -> None:
    for path in ("/v1/items", "/v1/items/map", "/v1/users/someone/map"):
        response = requests.get(f"{url}{path}", timeout=30)
        assert response.status_code == 401, (path, response.text)
    assert requests.get(f"{url}/demo", timeout=30).status_code == 200


# ---------------------------------------------------------------------- the endpoints, over HTTP
def test_catalogue_pages_searches_and_filters(url: str) -> None:
    first = get(url, "/v1/items").json()
    assert first["total"] == N_ITEMS and first["offset"] == 0 and len(first["items"]) == 24
    assert sum(f["count"] for f in first["facets"]) >= N_ITEMS  # every item has a category
    second = get(url, "/v1/items", offset=24, limit=24).json()
    assert not {i["item_id"] for i in first["items"]} & {i["item_id"] for i in second["items"]}

    word = next(w for w in first["items"][0]["title"].split() if len(w) > 3)
    found = get(url, "/v1/items", query=word.upper(), limit=200).json()
    assert 1 <= found["total"] < N_ITEMS and found["items"][0]["item_id"] == first["items"][0]["item_id"]
    category = first["facets"][-1]["name"]
    filtered = get(url, "/v1/items", category=category, limit=200).json()
    assert filtered["total"] == first["facets"][-1]["count"]
    assert all(category in item["categories"] for item in filtered["items"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"offset": -1}, "offset"),
        ({"category": "no-such-category"}, "category"),
        ({"query": "x" * 201}, "query"),
    ],
)
def test_catalogue_rejects_bad_parameters_naming_them(url: str, params: dict[str, Any], field: str) -> None:
    response = get(url, "/v1/items", **params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", field]


def test_item_map_and_an_unknown_users_map(url: str) -> None:
    points = get(url, "/v1/items/map", max_points=50).json()
    assert points["n_items"] == N_ITEMS
    assert len(points["item_ids"]) == len(points["x"]) == len(points["y"]) == 50
    assert len(points["category"]) == len(points["title"]) == 50 and all(points["category"])
    assert 0 < sum(points["explained_variance"]) <= 1
    assert len(set(zip(points["x"], points["y"], strict=True))) == 50  # items spread, not one point
    everything = get(url, "/v1/items/map", max_points=20_000).json()
    drawn = everything["item_ids"]  # items never interacted with have no vector, so no place
    assert N_ITEMS * 0.9 < len(drawn) <= N_ITEMS and len(set(drawn)) == len(drawn)
    assert everything["x"][:50] == points["x"]  # the same projection (fitted once) on every call
    assert get(url, "/v1/items/map", max_points=0).status_code == 422
    blank = get(url, f"/v1/users/never-seen-{uuid.uuid4().hex[:6]}/map").json()
    assert blank["position"] is None and blank["state_version"] == 0 and blank["signals"] == []
    too_long = get(url, f"/v1/users/{'u' * 300}/map")
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["path", "user_id"]


def test_page_and_assets_are_served(url: str) -> None:
    page = get(url, "/demo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="demo/demo.js"' in page.text and "http" not in page.text.split("<body>")[1]  # nothing remote
    for asset, kind in [("demo.js", "text/javascript"), ("demo.css", "text/css")]:
        response = get(url, f"/demo/{asset}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    assert get(url, "/demo/app.py").status_code == 404


# ---------------------------------------------------------------------- the page, in a browser
def marker(page: Any) -> tuple[float, float] | None:
    found: tuple[float, float] | None = page.evaluate(
        "() => { const m = document.getElementById('user-marker');"
        " return m.hidden ? null : [Number(m.dataset.x), Number(m.dataset.y)]; }"
    )
    return found


def recommended(page: Any) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = page.eval_on_selector_all(
        "#recs .card", "cards => cards.map(c => [c.dataset.itemId, c.dataset.provenance])"
    )
    return [(item, provenance) for item, provenance in rows]


def send(page: Any, card: str, event_type: str) -> str:
    """Press ``event_type`` on the card; wait until the page has re-read the user; the item id."""
    refreshes = page.evaluate("() => Number(document.body.dataset.refreshes)")
    item: str = page.eval_on_selector(card, "c => c.dataset.itemId")
    page.click(f"{card} button[data-event='{event_type}']")
    page.wait_for_function(
        f"() => Number(document.body.dataset.refreshes) > {refreshes} && !document.body.dataset.busy",
        timeout=30_000,
    )
    return item


def test_clicking_moves_recommendations_and_map_and_reaches_the_store(
    url: str, store_url: str, key: str, serving_args: Any
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}); apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    user = f"browser-{uuid.uuid4().hex[:8]}"
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}/demo?user={user}#key={key}")  # as `wayfinder serve` prints it
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            assert page.input_value("#user-id") == user
            assert page.locator("#catalogue-grid .card").count() == 18
            assert page.evaluate("() => document.querySelectorAll('#legend span').length") > 3

            before = recommended(page)
            assert len(before) == 10 and {p for _, p in before} == {"popular-fallback"}
            assert marker(page) is None  # no signal, no place on the map yet

            liked = send(page, "#catalogue-grid .card:nth-child(1)", "like")
            after_like = recommended(page)
            assert [i for i, _ in after_like] != [i for i, _ in before]
            assert liked not in [i for i, _ in after_like]
            assert "exploit" in {p for _, p in after_like}
            first = marker(page)
            assert first is not None

            # search for another item by its title, and like it too
            page.fill("#query", page.inner_text("#catalogue-grid .card:nth-child(7) .title"))
            page.press("#query", "Enter")
            page.wait_for_function("() => document.querySelectorAll('#catalogue-grid .card').length < 18")
            second_liked = send(page, "#catalogue-grid .card:nth-child(1)", "like")
            second = marker(page)
            assert second is not None and second != first
            clicked = send(page, "#recs .card:nth-child(2)", "click")
            third = marker(page)
            assert third is not None and third != second
            assert page.evaluate("() => Number(document.getElementById('intent').dataset.nSignals)") == 3
            assert page.get_attribute("#map", "data-path-length") == "3"  # one point per event
            assert "because of" in page.inner_text("#intent")

            card = page.locator("#recs .card").first
            card.hover()
            why = card.locator(".why")
            assert why.is_visible() and why.inner_text().strip()
            assert card.get_attribute("title") == why.inner_text()

            page.check("#zoom")  # redraw around the journey; the marker stays where the user is
            assert marker(page) == third

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors

    stored_as = serving_args.pseudonymiser()(user)  # the store only ever sees the pseudonym
    store = open_store(store_url)
    try:
        logged = [(e.event.item_id, e.event.event_type) for e in store.events_for_user(stored_as)]
        sources = {e.event.payload.get("source") for e in store.events_for_user(stored_as)}
        assert not store.events_for_user(user)
    finally:
        store.close()
    assert logged == [(liked, "like"), (second_liked, "like"), (clicked, "click")]
    assert sources == {"demo-page"}
