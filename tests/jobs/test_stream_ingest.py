"""Streaming ingestion against a real redis-server and the real Serve app on a local Ray cluster.

The app's store is Redis too (the same server, its own key prefix). Every check counts in the store:
each user's events in the log and their state version (one step per applied event), so an event
applied twice, or lost, fails the test.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from jobs._stream_consumer import ConsumerConfig, StreamConsumer
from jobs._stream_entries import Rejected, parse_entry
from jobs.stream_ingest import StreamIngestConfig, UpdaterSink, build_consumer, consume
from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.data.synthetic import DirtConfig, SyntheticConfig, generate
from recsys.engine import Ack, IncomingEvent, load_bundle, train_bundle
from recsys.store import Store, open_store
from tests._cluster import free_port
from tests.conftest import REPO

if TYPE_CHECKING:
    from tests._redis import RedisServer


APP = "stream"
KNOWN_TYPES = frozenset({"view", "click", "like", "dislike", "purchase"})


# ---------------------------------------------------------------------------- entries (no Ray)
def test_entries_parse_deterministically_or_name_their_problem() -> None:
    flat = {b"user_id": b"u1", b"item_id": b"i1", b"event_type": b"like", b"device": b"tv"}
    event = parse_entry("s", "1700000000123-4", flat, KNOWN_TYPES)
    assert isinstance(event, IncomingEvent)
    assert event.event_id == "s:1700000000123-4" and event.timestamp == 1_700_000_000.123
    assert event.context == {"device": "tv"}
    assert parse_entry("s", "1700000000123-4", flat, KNOWN_TYPES) == event  # redelivery: same event
    document = b'{"user_id": "u", "item_id": "i", "event_type": "click", "event_id": "e-1", "value": 2}'
    parsed = parse_entry("s", "1-0", {b"event": document}, KNOWN_TYPES)
    assert isinstance(parsed, IncomingEvent) and parsed.event_id == "e-1" and parsed.value == 2.0
    cases = {
        "invalid_field": {b"user_id": b"u", b"event_type": b"like"},
        "unknown_event_type": {b"user_id": b"u", b"item_id": b"i", b"event_type": b"teleport"},
        "malformed_json": {b"event": b"{oops"},
        "bad_encoding": {b"user_id": b"\xff", b"item_id": b"i", b"event_type": b"like"},
    }
    for code, fields in cases.items():
        rejected = parse_entry("s", "1-0", fields, KNOWN_TYPES)
        assert isinstance(rejected, Rejected) and rejected.code == code, (code, rejected)
    bad_value = parse_entry(
        "s", "1-0", {b"user_id": b"u", b"item_id": b"i", b"event_type": b"like", b"value": b"x"}, KNOWN_TYPES
    )
    assert isinstance(bad_value, Rejected) and bad_value.message.startswith("value:")


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    config = SyntheticConfig(seed=11, n_events=10_000, n_items=120, n_clusters=4, dirt=DirtConfig.none())
    generate(config, str(root / "raw"))
    source = parse_source(f"events:{root}/raw/events", items=f"{root}/raw/items", users=f"{root}/raw/users")
    preprocess(source, Location.parse(str(root / "data")), executor=SerialExecutor())
    train_bundle(root / "data", root / "bundle", space={"family": "als", "factors": 8, "iterations": 4})
    return root / "bundle"


@dataclass(frozen=True)
class App:
    store_url: str
    redis_url: str
    items: list[str]
    pseudonym: Callable[[str], str]
    """The app's user-id map: the store knows users only by their pseudonyms."""

    def store(self) -> Store:
        return open_store(self.store_url)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)


@pytest.fixture(scope="module")
def app(ray_session: None, bundle: Path, redis_server: RedisServer) -> Iterator[App]:
    """The real Serve app (Gateway + EmbeddingUpdater) over a Redis store."""
    from ray import serve

    from serving.app import ServingArgs, build_app

    store_url = f"{redis_server.url}?prefix=si-{uuid.uuid4().hex[:6]}:&require_fsync=true"
    serve.start(
        http_options={"host": "127.0.0.1", "port": free_port()},
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
    args = ServingArgs(bundle=str(bundle), store_url=store_url, privacy={"hmac_key": secrets.token_hex(32)})
    serve.run(build_app(args), name=APP, route_prefix="/")
    try:
        yield App(store_url, redis_server.url, list(load_bundle(bundle).item_ids.ids), args.pseudonymiser())
    finally:
        serve.delete(APP)
        serve.shutdown()


# ---------------------------------------------------------------------------- helpers
def make_events(app: App, n: int, *, users: int, seed: int) -> list[dict[bytes, bytes]]:
    """Distinct events over known items; every other one carries its own event_id."""
    rng = random.Random(seed)
    prefix = f"s{seed}-{uuid.uuid4().hex[:4]}"
    events = []
    for i in range(n):
        fields = {
            b"user_id": f"{prefix}-u{i % users}".encode(),
            b"item_id": rng.choice(app.items).encode(),
            b"event_type": rng.choice(["view", "click", "like", "dislike"]).encode(),
            b"timestamp": str(1_700_000_000 + i).encode(),
        }
        if i % 2:
            fields[b"event_id"] = f"{prefix}-e{i}".encode()
        events.append(fields)
    return events


def publish(client: redis.Redis, stream: str, entries: Sequence[dict[bytes, bytes]]) -> None:
    with client.pipeline(transaction=False) as pipe:
        for fields in entries:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        pipe.execute()


def assert_each_applied_once(app: App, store: Store, events: Sequence[dict[bytes, bytes]]) -> None:
    """Per user: as many events in the log as were published, and as many state steps."""
    per_user = Counter(e[b"user_id"].decode() for e in events)
    for user, n in per_user.items():
        assert store.count_events(user_id=app.pseudonym(user)) == n, user
        assert store.count_events(user_id=user) == 0, user  # raw ids never reach the store
        state = store.get_state(app.pseudonym(user))
        assert state is not None and state.version == n, (user, state and state.version, n)


def ingest_config(app: App, stream: str, consumer: str, **overrides: object) -> StreamIngestConfig:
    settings: dict[str, object] = {
        "redis_url": app.redis_url,
        "stream": stream,
        "group": "g",
        "consumer": consumer,
        "dead_letter": f"{stream}:dead",
        "app_name": APP,
        "batch_size": 40,
        "block_ms": 100,
        "claim_idle_ms": 60_000,
        "start_id": "0",
        "progress_every_s": 1.0,
        "exit_when_idle_s": 0.5,
        "call_timeout_s": 60.0,
    }
    return StreamIngestConfig.model_validate(settings | overrides)


class _Crash(BaseException):
    """Stands for the process dying: nothing in the consumer catches it."""


class CrashAfterWrite:
    """The real updater sink, then a crash before the consumer could XACK."""

    def __init__(self, inner: UpdaterSink) -> None:
        self.inner = inner
        self.written: list[Ack] = []

    def __call__(self, events: Sequence[IncomingEvent]) -> list[Ack]:
        self.written = self.inner(events)
        raise _Crash


# ---------------------------------------------------------------------------- tests
def test_a_consumer_killed_after_the_write_but_before_xack_is_redelivered_not_reapplied(app: App) -> None:
    client, stream = app.client(), f"st-{uuid.uuid4().hex[:6]}"
    good = make_events(app, 120, users=6, seed=1)
    malformed = [
        {b"user_id": b"x", b"event_type": b"like"},  # no item_id
        {b"user_id": b"x", b"item_id": app.items[0].encode(), b"event_type": b"teleport"},
        {b"event": b"{not json"},
        {b"user_id": b"x", b"item_id": app.items[0].encode(), b"event_type": b"like", b"value": b"lots"},
    ]
    entries = good[:10] + malformed[:2] + good[10:70] + malformed[2:] + good[70:]
    publish(client, stream, entries)

    sink = UpdaterSink(APP, timeout_s=60)
    crashing = CrashAfterWrite(sink)
    first = build_consumer(ingest_config(app, stream, "dies"), crashing)
    first.ensure_group()
    with pytest.raises(_Crash):
        first.step()
    in_flight = len(crashing.written)
    assert in_flight == 38 and all(a.status == "applied" for a in crashing.written)  # 40 read, 2 malformed
    assert first.backlog() == (len(entries) - 40, in_flight)  # written, not acknowledged
    store = app.store()
    assert store.count_events() >= in_flight

    config = ingest_config(app, stream, "takes-over", claim_idle_ms=0)
    second = build_consumer(config, sink)
    counts = consume(second, config)
    assert counts.claimed == in_flight and counts.duplicate == in_flight
    assert counts.applied == len(good) - in_flight
    assert first.counts.dead_lettered + counts.dead_lettered == len(malformed)
    assert second.backlog() == (0, 0)
    assert_each_applied_once(app, store, good)
    dead = client.xrange(f"{stream}:dead")
    assert sorted(fields[b"reason"].decode() for _, fields in dead) == sorted(
        ["invalid_field", "unknown_event_type", "malformed_json", "invalid_field"]
    )
    assert all(fields[b"source_stream"].decode() == stream for _, fields in dead)


def _consumer_process(app: App, stream: str, *extra: str) -> subprocess.Popen[str]:
    import ray

    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    command = [
        sys.executable,
        "-m",
        "jobs.cli",
        "stream-ingest",
        *("--address", ray.get_runtime_context().gcs_address),
        *("--redis", app.redis_url, "--stream", stream, "--group", "g", "--consumer", "c1"),
        *("--app", APP, "--batch-size", "25", "--block-ms", "200", "--progress-every-s", "1"),
        *extra,
    ]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_events_published_while_the_consumer_is_down_are_all_applied_after_restart(app: App) -> None:
    client, stream = app.client(), f"st-{uuid.uuid4().hex[:6]}"
    store = app.store()
    before = make_events(app, 300, users=10, seed=2)
    users = {e[b"user_id"].decode() for e in before}
    publish(client, stream, before)

    running = _consumer_process(app, stream)
    try:
        deadline = time.monotonic() + 240
        while (
            sum(store.count_events(user_id=app.pseudonym(u)) for u in users) < 50
        ):  # mid-stream, then kill -9
            assert running.poll() is None, running.communicate()
            assert time.monotonic() < deadline, "the consumer applied nothing in 240 s"
            time.sleep(0.05)
    finally:
        running.send_signal(signal.SIGKILL)
        running.communicate(timeout=30)

    during = make_events(app, 300, users=10, seed=3)  # published while no consumer runs
    publish(client, stream, during)
    restarted = _consumer_process(app, stream, "--exit-when-idle-s", "1")
    out, err = restarted.communicate(timeout=300)
    assert restarted.returncode == 0, err[-3000:]
    assert "Consumed" in out and "[stream-ingest]" in err

    assert_each_applied_once(app, store, before + during)
    lag, pending = StreamConsumer(
        client, ConsumerConfig(stream=stream, group="g", consumer="c1", dead_letter="-"), lambda e: [], ()
    ).backlog()
    assert (lag, pending) == (0, 0)


def test_an_event_the_updater_refuses_is_dead_lettered_and_the_rest_of_its_batch_applied(app: App) -> None:
    client, stream = app.client(), f"st-{uuid.uuid4().hex[:6]}"
    good = make_events(app, 10, users=2, seed=4)
    refused = dict(good[0]) | {b"event_id": b"nan-value", b"value": b"nan"}  # parses; the store refuses NaN
    publish(client, stream, [*good[:5], refused, *good[5:]])
    config = ingest_config(app, stream, "one")
    counts = consume(build_consumer(config, UpdaterSink(APP, timeout_s=60)), config)
    # the engine checks a batch's events before writing any, so the batch call wrote nothing; resent one
    # by one, the ten good events are applied and the refused one is dead-lettered
    assert (counts.applied, counts.duplicate, counts.dead_lettered) == (10, 0, 1)
    ((_, dead),) = client.xrange(f"{stream}:dead")
    assert dead[b"reason"] == b"rejected_by_updater" and b"value" in dead[b"message"]
    assert dead[b"field:event_id"] == b"nan-value"
    assert_each_applied_once(app, app.store(), good)
