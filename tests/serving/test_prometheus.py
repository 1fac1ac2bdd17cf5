"""Monitoring end to end: a real Prometheus scrapes the app's Ray metrics endpoint, and the series
are checked through Prometheus's HTTP API; the replicas' logs are JSON lines without raw user ids.

The app runs on the session's Ray cluster over a Redis store of its own (so the store's process can
be stopped to cause real store errors). Prometheus runs from ``monitoring/prometheus.yml`` with only
the service-discovery file's path and the scrape interval changed. Ray's agent exports what replicas
recorded every 10 s, so each check polls Prometheus until the expected value shows or a deadline
passes. Skips, saying why, when the ``prometheus`` or ``redis-server`` binary is missing.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from serving.logs import LOG_KEY_ENV, pseudonym
from serving.metrics import ServingMetrics, model_identity
from tests._cluster import free_port
from tests._redis import RedisServer
from tests.serving._app import small_bundle

REPO = Path(__file__).resolve().parents[2]
APP = "monitoring"
SERIES_DEADLINE_S = 90.0
"""Ray exports every 10 s and Prometheus scrapes every second here; 90 s leaves room on a busy box."""


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(
        tmp_path_factory.mktemp("monitoring"), seed=11, n_events=10_000, n_items=150, n_clusters=4,
        factors=8, iterations=4,
    )  # fmt: skip


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    server = RedisServer(binary, tmp_path_factory.mktemp("monitoring-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus on a free port, scraping this Ray cluster through the shipped config."""
    import ray

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus; .ci/run installs it)")
    root = tmp_path_factory.mktemp("prometheus")
    # The service-discovery file exactly as Ray's head writes it (metrics_agent.py), for this cluster.
    targets = [f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}" for n in ray.nodes() if n["Alive"]]
    (root / "ray_sd.json").write_text(json.dumps([{"labels": {"job": "ray"}, "targets": targets}]))
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "ray"]
    job["file_sd_configs"][0]["files"] = [str(root / "ray_sd.json")]
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (root / "prometheus.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def app(
    ray_session: None, bundle: Path, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The app over HTTP, logging as serving/config.yaml says but at INFO, into its own directory."""
    from ray import serve

    from serving.app import ServingArgs, build_app

    logs_dir = tmp_path_factory.mktemp("serve-logs")
    logging_config = yaml.safe_load((REPO / "serving" / "config.yaml").read_text())["logging_config"]
    assert logging_config["encoding"] == "JSON" and logging_config["enable_access_log"] is False
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config=logging_config)
    store_url = f"{redis.url}?prefix=mon-{uuid.uuid4().hex[:6]}:&require_fsync=true"
    replica_logging = logging_config | {"log_level": "INFO", "logs_dir": str(logs_dir)}
    serve.run(
        build_app(ServingArgs(bundle=str(bundle), store_url=store_url)),
        name=APP,
        route_prefix="/",
        logging_config=replica_logging,
    )
    try:
        yield f"http://127.0.0.1:{port}", logs_dir
    finally:
        serve.delete(APP)
        serve.shutdown()


@dataclass
class Traffic:
    """What the test sent, and so what the series must show."""

    users: list[str] = field(default_factory=list)
    ingested: Counter[tuple[str, str]] = field(default_factory=Counter)
    ingest_calls: int = 0
    zero_history: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def traffic(app: tuple[str, Path]) -> Traffic:
    """Pages for new users, events of several types (one duplicate, one for an unknown item), and
    pages again for the users who now have history."""
    url, _ = app
    sent = Traffic(users=[f"person-{uuid.uuid4().hex[:10]}" for _ in range(4)])

    def page(user: str) -> list[str]:
        response = requests.get(f"{url}/v1/users/{user}/recommendations", params={"k": 8}, timeout=30)
        assert response.status_code == 200, response.text
        return [item["item_id"] for item in response.json()["items"]]

    def post(events: list[dict[str, Any]]) -> None:
        response = requests.post(f"{url}/v1/events", json={"events": events}, timeout=30)
        assert response.status_code == 200, response.text
        sent.ingest_calls += 1
        for event, ack in zip(events, response.json()["acks"], strict=True):
            sent.ingested[(event["event_type"], ack["status"])] += 1

    first_pages = {user: page(user) for user in sent.users}
    sent.zero_history["true"] += len(sent.users)
    active = sent.users[:2]
    kinds = ["click", "click", "like", "purchase", "view"]
    for n, user in enumerate(active):
        post(
            [
                {"user_id": user, "item_id": item, "event_type": kind, "event_id": f"{user}-{n}-{i}"}
                for i, (item, kind) in enumerate(zip(first_pages[user], kinds, strict=False))
            ]
        )
    replay = {"user_id": active[0], "item_id": first_pages[active[0]][0], "event_type": "click"}
    post([replay | {"event_id": f"{active[0]}-0-0"}])  # a duplicate of one already applied
    post([{"user_id": active[1], "item_id": "not-in-catalogue", "event_type": "like"}])  # pending_item
    for user in sent.users:
        page(user)
        sent.zero_history["false" if user in active else "true"] += 1
    assert {status for _, status in sent.ingested} == {"applied", "duplicate", "pending_item"}
    return sent


# ---------------------------------------------------------------------------------------- helpers
def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def by_labels(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in result}


def log_records(logs_dir: Path) -> list[dict[str, Any]]:
    """Every line the app's replicas logged, each parsed as one JSON object (or the test fails)."""
    lines = [line for path in sorted(logs_dir.rglob("*.log")) for line in path.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.strip()]


def eventually(fetch: Callable[[], Any], expected: Any, what: str) -> None:
    """Poll ``fetch`` until it returns ``expected``; fail with the last value after the deadline."""
    deadline = time.monotonic() + SERIES_DEADLINE_S
    last = fetch()
    while last != expected and time.monotonic() < deadline:
        time.sleep(1.0)
        last = fetch()
    assert last == expected, f"{what}: Prometheus shows {last}, expected {expected}"


# ---------------------------------------------------------------------------------------- tests
def test_events_ingested_by_type_and_outcome(prometheus: str, traffic: Traffic) -> None:
    expr = f'sum by (event_type, status) (ray_wayfinder_events_ingested_total{{application="{APP}"}})'
    expected = {key: float(count) for key, count in traffic.ingested.items()}
    eventually(lambda: by_labels(query(prometheus, expr), "event_type", "status"), expected, expr)
    # and by type alone, as the dashboard charts it: exactly what was posted
    posted = Counter[str]()
    for (kind, _), count in traffic.ingested.items():
        posted[kind] += count
    by_type = query(
        prometheus, f'sum by (event_type) (ray_wayfinder_events_ingested_total{{application="{APP}"}})'
    )
    assert by_labels(by_type, "event_type") == {(kind,): float(n) for kind, n in posted.items()}


def test_latency_histograms_and_zero_history_share(prometheus: str, traffic: Traffic) -> None:
    recs = f'sum by (zero_history) (ray_wayfinder_recommendations_total{{application="{APP}"}})'
    expected = {(flag,): float(n) for flag, n in traffic.zero_history.items()}
    eventually(lambda: by_labels(query(prometheus, recs), "zero_history"), expected, recs)

    total = sum(traffic.zero_history.values())
    count = f'sum(ray_wayfinder_recommendation_seconds_count{{application="{APP}"}})'
    eventually(lambda: by_labels(query(prometheus, count)), {(): float(total)}, count)
    updates = f'sum(ray_wayfinder_embedding_update_seconds_count{{application="{APP}"}})'
    eventually(lambda: by_labels(query(prometheus, updates)), {(): float(traffic.ingest_calls)}, updates)

    share = (
        f'sum(ray_wayfinder_recommendations_total{{application="{APP}",zero_history="true"}})'
        f' / sum(ray_wayfinder_recommendations_total{{application="{APP}"}})'
    )
    (value,) = by_labels(query(prometheus, share)).values()
    assert value == pytest.approx(traffic.zero_history["true"] / total)
    for name in ("recommendation_seconds", "embedding_update_seconds"):
        for q in (0.5, 0.95, 0.99):
            expr = (
                f'histogram_quantile({q}, sum by (le) (ray_wayfinder_{name}_bucket{{application="{APP}"}}))'
            )
            (latency,) = by_labels(query(prometheus, expr)).values()
            assert math.isfinite(latency) and 0 < latency < 30, (expr, latency)


def test_model_version_in_service(prometheus: str, traffic: Traffic, bundle: Path) -> None:
    version, fingerprint = model_identity(bundle)
    expr = f'ray_wayfinder_model_info{{application="{APP}"}}'
    expected = {
        ("Gateway", version, fingerprint): 1.0,
        ("EmbeddingUpdater", version, fingerprint): 1.0,
    }
    eventually(
        lambda: by_labels(query(prometheus, expr), "deployment", "model_version", "fingerprint"),
        expected,
        expr,
    )


def test_store_errors_counted_by_operation(
    prometheus: str, traffic: Traffic, app: tuple[str, Path], redis: RedisServer
) -> None:
    url, logs_dir = app
    redis.stop()  # the store's process goes away
    try:
        failed = [
            requests.get(f"{url}/v1/users/{traffic.users[0]}/recommendations", timeout=60) for _ in range(2)
        ]
        event = {"user_id": traffic.users[0], "item_id": "x", "event_type": "click"}
        failed.append(requests.post(f"{url}/v1/events", json=event, timeout=60))
    finally:
        redis.start()
    assert [r.status_code for r in failed] == [503, 503, 503], [r.text for r in failed]
    expr = f'sum by (operation) (ray_wayfinder_store_errors_total{{application="{APP}"}})'
    expected = {("recommend",): 2.0, ("ingest",): 1.0}
    eventually(lambda: by_labels(query(prometheus, expr), "operation"), expected, expr)
    assert requests.get(f"{url}/readyz", timeout=30).status_code == 200  # and it recovers
    warnings = [r for r in log_records(logs_dir) if r.get("wf_operation") in {"recommend", "ingest"}]
    assert len(warnings) == 3 and {r["levelname"] for r in warnings} == {"WARNING"}
    assert {r["wf_error"] for r in warnings} == {"StoreError"}


def _record_experiment(experiment: str) -> None:
    """What the A/B code records in a replica, here in a Ray task: exposures and conversions per
    variant, and a model swap."""
    from serving.metrics import observe_conversion, observe_exposure, serving_metrics

    for variant, shown, clicked in (("A", 5, 2), ("B", 4, 3)):
        for _ in range(shown):
            observe_exposure(experiment, variant)
        for _ in range(clicked):
            observe_conversion(experiment, variant, "click")
    observe_conversion(experiment, "B", "purchase")
    serving_metrics().model_loaded(f"{experiment}-v1", "aaaaaaaaaaaa")
    serving_metrics().model_loaded(f"{experiment}-v2", "bbbbbbbbbbbb")


def test_variant_exposures_conversions_and_model_swap(prometheus: str) -> None:
    import ray

    experiment = f"exp-{uuid.uuid4().hex[:8]}"
    ray.get(ray.remote(num_cpus=0)(_record_experiment).remote(experiment))
    exposures = f'sum by (variant) (ray_wayfinder_exposures_total{{experiment="{experiment}"}})'
    eventually(
        lambda: by_labels(query(prometheus, exposures), "variant"), {("A",): 5.0, ("B",): 4.0}, exposures
    )
    conversions = (
        f'sum by (variant, event_type) (ray_wayfinder_conversions_total{{experiment="{experiment}"}})'
    )
    expected = {("A", "click"): 2.0, ("B", "click"): 3.0, ("B", "purchase"): 1.0}
    eventually(
        lambda: by_labels(query(prometheus, conversions), "variant", "event_type"), expected, conversions
    )
    ctr = (
        f'sum by (variant) (ray_wayfinder_conversions_total{{experiment="{experiment}",event_type="click"}})'
        f' / sum by (variant) (ray_wayfinder_exposures_total{{experiment="{experiment}"}})'
    )
    assert by_labels(query(prometheus, ctr), "variant") == {("A",): 2 / 5, ("B",): 3 / 4}
    model = f'ray_wayfinder_model_info{{model_version=~"{experiment}-.*"}}'
    expected = {(f"{experiment}-v1",): 0.0, (f"{experiment}-v2",): 1.0}  # the replaced one drops to 0
    eventually(lambda: by_labels(query(prometheus, model), "model_version"), expected, model)


def test_dashboard_queries_run_against_prometheus(prometheus: str, traffic: Traffic) -> None:
    dashboard = json.loads((REPO / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    text = " ".join(exprs)
    for series in (
        "events_ingested_total",
        "embedding_update_seconds_bucket",
        "recommendation_seconds_bucket",
        "recommendations_total",
        "exposures_total",
        "conversions_total",
        "store_errors_total",
        "model_info",
    ):
        assert f"ray_wayfinder_{series}" in text, series
    for expr in exprs:  # Grafana's variables replaced as Grafana would; Prometheus must parse each
        concrete = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
        concrete = re.sub(r"\$\{?application\}?", APP, concrete)
        query(prometheus, concrete)


def test_logs_are_json_lines_without_raw_user_ids(traffic: Traffic, app: tuple[str, Path]) -> None:
    import ray

    _, logs_dir = app
    records = log_records(logs_dir)
    requests_logged = [r for r in records if r.get("message") == "recommendations"]
    assert len(requests_logged) >= sum(traffic.zero_history.values())
    for record in requests_logged:
        assert {"asctime", "levelname", "name", "request_id", "route", "deployment"} <= record.keys()
        assert record["name"] == "ray.serve.wayfinder" and record["levelname"] == "INFO"
        assert re.fullmatch(r"[0-9a-f]{16}", record["wf_user"])
        assert record["route"] == "/v1/users/{user_id}/recommendations"
    # no raw user id anywhere: not in the app's logs, nor in any Serve log of this Ray session
    session_logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    everything = [*logs_dir.rglob("*"), *session_logs.rglob("*")]
    for path in (p for p in everything if p.is_file()):
        text = path.read_text(errors="replace")
        leaked = [user for user in traffic.users if user in text]
        assert not leaked, f"{path} holds raw user ids {leaked}"


# ------------------------------------------------------------------------------ without a cluster
def test_metric_labels_are_checked() -> None:
    metrics = ServingMetrics()
    metrics.exposure("homepage", "B")
    metrics.conversion("homepage", "B", "purchase")
    for bad in ("", "x" * 65):
        with pytest.raises(ValueError, match="variant"):
            metrics.exposure("homepage", bad)
    with pytest.raises(ValueError, match="event_type"):
        metrics.events_ingested([("", "applied")])
    with pytest.raises(ValueError, match="experiment"):
        metrics.conversion(None, "B", "click")  # type: ignore[arg-type]


def test_pseudonym_is_keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import logs

    monkeypatch.setenv(LOG_KEY_ENV, "key-one")
    logs._key.cache_clear()
    first = pseudonym("alice")
    assert first == pseudonym("alice") and first != pseudonym("bob") and "alice" not in first
    monkeypatch.setenv(LOG_KEY_ENV, "key-two")
    logs._key.cache_clear()
    assert pseudonym("alice") != first
    logs._key.cache_clear()
