"""API keys, scopes, rate limits and user-id pseudonymisation, over HTTP on Ray Serve."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jobs import cli
from recsys.store import open_store
from serving.api_keys import add_key, new_key
from serving.auth import AuthConfig
from serving.privacy import PrivacyConfig
from tests.serving._app import serve_on_free_port, small_bundle

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(tmp_path_factory.mktemp("auth-bundle"))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_on_free_port() as url:
        yield url


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("keys") / "api-keys.json"
    made = {
        "reader": new_key(["recommendations:read"], name="reader"),
        "writer": new_key(["events:write"], name="writer"),
        "admin": new_key(["admin"], name="admin"),
        "limited": new_key(["recommendations:read"], name="limited", rate_per_s=0.05, burst=2),
    }
    for _, record in made.values():
        add_key(path, record)
    return {"file": str(path)} | {name: raw for name, (raw, _) in made.items()}


def serving_args(bundle: Path, store_url: str, keys_file: str) -> Any:
    from serving.app import ServingArgs

    privacy = PrivacyConfig()  # SQLite: the generated key goes beside the store; Redis: beside the keys
    if store_url.startswith("redis"):
        privacy = PrivacyConfig(key_file=str(Path(keys_file).parent / "wayfinder.hmac-key"))
    return ServingArgs(
        bundle=str(bundle), store_url=store_url, auth=AuthConfig(keys_file=keys_file), privacy=privacy
    )


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('auth-store')}/store.db"


@pytest.fixture(scope="module")
def url(bundle: Path, base_url: str, keys: dict[str, Any], store_url: str) -> Iterator[str]:
    from ray import serve

    from serving.app import build_app

    serve.run(build_app(serving_args(bundle, store_url, keys["file"])), name="auth", route_prefix="/")
    yield base_url
    serve.delete("auth")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(method: str, url: str, key: str | None = None, **kwargs: Any) -> requests.Response:
    headers = bearer(key) if key else {}
    return requests.request(method, url, headers=headers | kwargs.pop("headers", {}), timeout=30, **kwargs)


def an_item(url: str, key: str) -> str:
    page = call("GET", f"{url}/v1/users/someone/recommendations", key, params={"k": 1})
    assert page.status_code == 200, page.text
    return str(page.json()["items"][0]["item_id"])


def test_health_docs_and_schema_stay_open_and_declare_security(url: str) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert requests.get(f"{url}{path}", timeout=10).status_code == 200, path
    schema = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key: `Authorization: Bearer wf_...`",
    }
    expected = {
        ("post", "/v1/events"): "events:write",
        ("get", "/v1/users/{user_id}/recommendations"): "recommendations:read",
        ("get", "/v1/items/{item_id}/similar"): "recommendations:read",
        ("get", "/v1/users/{user_id}/intent"): "recommendations:read",
        ("put", "/v1/items/{item_id}"): "admin",
        ("delete", "/v1/users/{user_id}"): "admin",
        ("post", "/v1/promotions"): "admin",
    }
    for (method, path), scope in expected.items():
        security = schema["paths"][path][method]["security"]
        assert {"HTTPBearer": [scope]} in security and {"APIKeyHeader": [scope]} in security
    assert "security" not in schema["paths"]["/healthz"]["get"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/users/u1/recommendations", None),
        ("POST", "/v1/events", {"user_id": "u1", "item_id": "i", "event_type": "click"}),
        ("PUT", "/v1/items/new-one", {"title": "x"}),
        ("DELETE", "/v1/users/u1", None),
        ("GET", "/v1/promotions", None),
    ],
)
def test_missing_or_wrong_key_is_401_with_www_authenticate(
    url: str, keys: dict[str, Any], method: str, path: str, body: Any
) -> None:
    wrong = keys["admin"][:-4] + "abcd"
    for headers in ({}, bearer(wrong), bearer("nonsense"), {"Authorization": f"Basic {keys['admin']}"}):
        response = requests.request(method, f"{url}{path}", json=body, headers=headers, timeout=10)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "API key" in response.json()["detail"]


def test_scopes_are_enforced_and_admin_implies_all(url: str, keys: dict[str, Any]) -> None:
    item = an_item(url, keys["reader"])
    event = {"user_id": "scoped", "item_id": item, "event_type": "click"}
    reads = ["/v1/users/scoped/recommendations", f"/v1/items/{item}/similar", "/v1/users/scoped/intent"]
    for path in reads:
        assert call("GET", f"{url}{path}", keys["reader"]).status_code == 200
        assert call("GET", f"{url}{path}", keys["writer"]).status_code == 403
    assert call("POST", f"{url}/v1/events", keys["writer"], json=event).status_code == 200
    denied = call("POST", f"{url}/v1/events", keys["reader"], json=event)
    assert denied.status_code == 403 and "events:write" in denied.json()["detail"]
    for key in ("reader", "writer"):
        assert call("PUT", f"{url}/v1/items/x-{key}", keys[key], json={"title": "x"}).status_code == 403
        assert call("DELETE", f"{url}/v1/users/scoped", keys[key]).status_code == 403
        assert call("GET", f"{url}/v1/promotions", keys[key]).status_code == 403
    assert call("POST", f"{url}/v1/events", keys["admin"], json=event).status_code == 200
    assert call("GET", f"{url}{reads[0]}", keys["admin"]).status_code == 200
    assert call("GET", f"{url}/v1/promotions", keys["admin"]).status_code == 200
    by_header = requests.get(f"{url}{reads[0]}", headers={"X-API-Key": keys["reader"]}, timeout=10)
    assert by_header.status_code == 200


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/events"), ("PUT", "/v1/items/broken")])
def test_a_body_that_is_not_json_is_authenticated_first(
    url: str, keys: dict[str, Any], method: str, path: str
) -> None:
    """FastAPI parses the JSON body before the route's dependencies run; the key is checked first all
    the same, so only a caller allowed to use the route learns what is wrong with its body."""
    broken = {"data": b'{"user_id": "u1", "item_id": ', "headers": {"Content-Type": "application/json"}}
    missing = call(method, f"{url}{path}", **broken)
    assert missing.status_code == 401 and "API key" in missing.json()["detail"], missing.text
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    by_header = call(method, f"{url}{path}", headers={"X-API-Key": keys["reader"], **broken["headers"]},
                     data=broken["data"])  # fmt: skip
    assert by_header.status_code == 403 and "lacks scope" in by_header.json()["detail"], by_header.text
    allowed = call(method, f"{url}{path}", keys["admin"], **broken)
    assert allowed.status_code == 422 and allowed.json()["detail"][0]["type"] == "json_invalid", allowed.text


def test_rate_limit_answers_429_with_retry_after(url: str, keys: dict[str, Any]) -> None:
    statuses = [
        call("GET", f"{url}/v1/users/rl/recommendations", keys["limited"]).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    limited = call("GET", f"{url}/v1/users/rl/recommendations", keys["limited"])
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert call("GET", f"{url}/v1/users/rl/recommendations", keys["reader"]).status_code == 200


def eventually(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_keys_created_and_revoked_with_the_cli_apply_live(
    url: str, keys: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["keys", "create", "--scopes", "events:write", "--keys-file", keys["file"]]) == 0
    fresh = capsys.readouterr().out.strip()
    event = {"user_id": "live", "item_id": an_item(url, keys["reader"]), "event_type": "view"}
    assert eventually(lambda: call("POST", f"{url}/v1/events", fresh, json=event).status_code == 200)
    key_id = fresh.split("_")[1]
    assert cli.main(["keys", "revoke", key_id, "--keys-file", keys["file"]]) == 0
    assert eventually(lambda: call("POST", f"{url}/v1/events", fresh, json=event).status_code == 401)


def raw_bytes_in(paths: list[Path], needle: str) -> list[str]:
    return [p.name for p in paths if p.is_file() and needle.encode() in p.read_bytes()]


def exercise_user(url: str, key: str, user: str) -> str:
    """Events (one for an unknown item), a page, the intent; each answer echoes the client's id."""
    item, tag = an_item(url, key), uuid.uuid4().hex[:8]  # event and item ids are not personal data
    body = {
        "events": [
            {"user_id": user, "item_id": item, "event_type": "like", "event_id": f"ev-{tag}"},
            {"user_id": user, "item_id": f"unknown-{tag}", "event_type": "view"},
        ]
    }
    acks = call("POST", f"{url}/v1/events", key, json=body).json()["acks"]
    assert [a["user_id"] for a in acks] == [user, user]
    assert [a["status"] for a in acks] == ["applied", "pending_item"]
    page = call("GET", f"{url}/v1/users/{user}/recommendations", key, params={"k": 3}).json()
    assert page["user_id"] == user and page["state_version"] >= 1
    intent = call("GET", f"{url}/v1/users/{user}/intent", key).json()
    assert intent["user_id"] == user and intent["n_signals"] == 1
    return item


def test_raw_user_ids_never_reach_the_sqlite_store(
    url: str, bundle: Path, keys: dict[str, Any], store_url: str
) -> None:
    user = f"alice.{uuid.uuid4().hex[:8]}@example.com"
    exercise_user(url, keys["admin"], user)
    database = Path(store_url.removeprefix("sqlite:///"))
    files = sorted(database.parent.iterdir())
    assert any(p.name.endswith("-wal") for p in files)  # WAL included: not yet checkpointed writes
    assert raw_bytes_in(files, user) == []
    pseudonym = serving_args(bundle, store_url, keys["file"]).pseudonymiser()(user)
    store = open_store(store_url)
    assert store.get_state(pseudonym) is not None and store.get_state(user) is None
    assert len(store.events_for_user(pseudonym)) == 2
    deleted = call("DELETE", f"{url}/v1/users/{user}", keys["admin"]).json()
    assert deleted == {"user_id": user, "events_deleted": 2, "state_deleted": True}
    assert store.get_state(pseudonym) is None and len(store.events_for_user(pseudonym)) == 0
    store.close()


def test_raw_user_ids_never_reach_redis(
    bundle: Path, base_url: str, keys: dict[str, Any], redis_server: Any
) -> None:
    import redis
    from ray import serve

    from serving.app import build_app

    prefix = f"auth-{uuid.uuid4().hex[:6]}:"
    store_url = f"{redis_server.url}?prefix={prefix}&require_fsync=true"
    serve.run(build_app(serving_args(bundle, store_url, keys["file"])), name="auth-redis", route_prefix="/r")
    try:
        user = f"bob.{uuid.uuid4().hex[:8]}@example.com"
        exercise_user(f"{base_url}/r", keys["admin"], user)
        client = redis.Redis.from_url(redis_server.url)
        names = [k.decode() for k in client.scan_iter(f"{prefix}*")]
        assert names and not [n for n in names if user in n]
        log = list((redis_server.directory).rglob("*"))  # the append-only files hold every write
        assert raw_bytes_in(log, user) == []
        pseudonym = serving_args(bundle, store_url, keys["file"]).pseudonymiser()(user)
        assert raw_bytes_in(log, pseudonym)
        client.close()
    finally:
        serve.delete("auth-redis")
