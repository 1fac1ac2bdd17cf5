"""Reliability, measured: load, faults mid-load and a whole-app restart against the real app.

Protocol (issue 6, section 5), once per store backend, on one local Ray cluster (2 CPUs), Serve over
HTTP on a free loopback port, the app built by :func:`serving.app.build_app` with two gateway
replicas and one updater replica:

1. **Load.** ``--clients`` concurrent clients (asyncio + aiohttp, one keep-alive connection each) for
   ``--duration`` seconds, each sending a mix of ``POST /v1/events`` (one event, a unique
   ``event_id``) and ``GET /v1/users/{u}/recommendations?k=10`` for its own users. Every answer is
   classified (2xx, 503, any other status, client-side error) and timed.
2. **Faults, mid-load.** An :class:`EmbeddingUpdater` replica is killed (``ray.kill`` on its actor,
   Serve replaces it); then the store's process: a SIGKILL of ``redis-server`` and a restart on the
   same port and AOF directory (``appendfsync always``), or, for SQLite, where the store lives in
   the app's own process, a gateway replica is killed. A client whose event was not acknowledged
   (a 503, a connection error) sends it again later with the *same* ``event_id``, as a real client
   would; the store's idempotency makes that safe. After the load, unacknowledged events are sent
   until acknowledged.
3. **No acknowledged event lost.** The store's events of the run's users, read through
   :mod:`recsys.store`, must be exactly the acknowledged event ids.
4. **Restart.** ``serve.shutdown`` and ``serve.run`` again on the same store: every user's stored
   state (version, bytes, last sequence) is identical before and after, and the first page after the
   restart equals the page the engine computes from the pre-restart state (checked against the old
   app's own pages first).

The load and the fault record are in :mod:`benchmarks._soak_load`, the report in
:mod:`benchmarks._soak_report`. ``tests/serving/test_reliability.py`` runs the same harness at a
smaller size; the full run is

    python -m benchmarks.soak [--clients 64] [--duration 60] [--workdir /tmp/wf-bench-soak]

and writes the ``soak`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmarks._soak_load import Fault, Load, LoadResult
from benchmarks.serving import catalogue, free_port

REPO = Path(__file__).resolve().parents[1]
QUIET_S = 1.0
UPDATER_FAULT_AT = 0.25
STORE_FAULT_AT = 0.5
"""When the faults are injected, as shares of the load's duration."""
PROBES = 10
"""States are settled when two reads this far apart are equal (pages are counted after responding)."""


def log(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ faults
def replica_actor_names(app: str, deployment: str) -> list[str]:
    """Names of the live replica actors of one deployment (Serve names them in namespace ``serve``)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and actor["name"].startswith(prefix)
    )


def kill_replica(
    load: Load, app: str, deployment: str, *, ingress: bool = False, replace_timeout_s: float = 120.0
) -> Fault:
    """``ray.kill`` one replica of ``deployment`` (Serve starts another); wait until it is listed."""
    import ray

    before = replica_actor_names(app, deployment)
    if not before:
        raise RuntimeError(f"no live replica of {app}/{deployment} to kill")
    victim = before[0]
    fault = Fault(f"kill {deployment} replica", load.now(), detail=victim.rsplit("#", 1)[-1], ingress=ingress)
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=False)
    fault.killed_at = load.now()
    deadline = time.monotonic() + replace_timeout_s
    while time.monotonic() < deadline:
        names = replica_actor_names(app, deployment)
        if victim not in names and len(names) >= len(before):
            fault.replaced_after_s = round(load.now() - fault.at, 2)
            break
        time.sleep(0.1)
    log(f"{fault.name} at {fault.at:.1f} s: replaced after {fault.replaced_after_s} s")
    return fault


def kill_redis(load: Load, server: Any, *, down_s: float) -> Fault:
    """SIGKILL the ``redis-server``, keep it down ``down_s`` seconds, start it on the same port and AOF dir.

    ``server`` is a :class:`tests._redis.RedisServer` (``stop(crash=True)`` and ``start()``).
    """
    fault = Fault("kill redis-server", load.now(), detail=f"down {down_s:g} s, restarted on the same AOF")
    server.stop(crash=True)
    fault.killed_at = load.now()
    time.sleep(down_s)
    server.start()
    fault.replaced_after_s = round(load.now() - fault.at, 2)
    log(f"{fault.name} at {fault.at:.1f} s: answering again after {fault.replaced_after_s} s")
    return fault


def run_with_faults(
    load: Load, faults: Sequence[tuple[float, Callable[[Load], Fault]]]
) -> tuple[LoadResult, list[Fault]]:
    """Run ``load``, injecting each fault at its time (load seconds); attribute failures to faults."""
    load.start()
    done: list[Fault] = []
    for at, inject in faults:
        time.sleep(max(0.0, at - load.now()))
        done.append(inject(load))
    result = load.join()
    bounds = [f.at for f in done[1:]] + [math.inf]
    for fault, until in zip(done, bounds[: len(done)], strict=True):
        fault.measure(result, until)
    return result, done


def probe(load: Load, count: int = 10) -> dict[str, int]:
    """After the load and its faults: ``count`` pages and events, one at a time; how many answered 200."""
    import requests

    ok: collections.Counter[str] = collections.Counter(page=0, event=0)
    with requests.Session() as http:
        for n in range(count):
            user = load.users[n % len(load.users)]
            page = http.get(f"{load.base}/v1/users/{user}/recommendations", params={"k": 10}, timeout=60)
            ok["page"] += page.status_code == 200
            body = {"user_id": user, "item_id": load.items[n], "event_type": "click"}
            body["event_id"] = f"{load.prefix}-probe-{n}"
            load.result.sent.add(body["event_id"])
            event = http.post(f"{load.base}/v1/events", json=body, timeout=60)
            if event.status_code == 200:
                ok["event"] += 1
                load.result.acked.add(body["event_id"])
    return dict(ok)


# ------------------------------------------------------------------------------------------ store checks
def stored_event_ids(store: Any, users: Iterable[str]) -> list[str]:
    """Every event id the store holds for ``users`` (read through :mod:`recsys.store`), with repeats."""
    return [stored.event.event_id for user in users for stored in store.events_for_user(user)]


def stored_states(store: Any, users: Iterable[str]) -> dict[str, tuple[int, bytes, int] | None]:
    """Each user's stored state as ``(version, bytes, seq)``."""
    out: dict[str, tuple[int, bytes, int] | None] = {}
    for user in users:
        state = store.get_state(user)
        out[user] = None if state is None else (state.version, state.data, state.seq)
    return out


def settled_states(
    store: Any, users: Sequence[str], *, timeout_s: float = 60.0
) -> dict[str, tuple[int, bytes, int] | None]:
    """The states once they stop changing (each page is counted in the user's state after responding)."""
    deadline = time.monotonic() + timeout_s
    previous = stored_states(store, users)
    while True:
        time.sleep(QUIET_S)
        current = stored_states(store, users)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


# ------------------------------------------------------------------------------------------ restart
def page_signature(page: dict[str, Any]) -> list[tuple[str, str, float]]:
    """A page's items as ``(item_id, provenance, score rounded)`` for comparing two pages."""
    return [(i["item_id"], i["provenance"], round(float(i["score"]), 5)) for i in page["items"]]


def engine_page(engine: Any, user: str, k: int = 10) -> list[tuple[str, str, float]]:
    """The page ``engine`` (a :class:`recsys.engine.Engine` on the same bundle and store) would serve."""
    page = engine.recommend(user, k)
    provenance = {"popular": "popular-fallback"}
    return [
        (
            engine.item_id(r.item),
            provenance.get(r.provenance, r.provenance),
            round(float(r.score) if math.isfinite(r.score) else 0.0, 5),
        )
        for r in page.items
    ]


def get_pages(base: str, users: Sequence[str], k: int = 10) -> dict[str, dict[str, Any]]:
    import requests

    pages = {}
    with requests.Session() as http:
        for user in users:
            response = http.get(f"{base}/v1/users/{user}/recommendations", params={"k": k}, timeout=60)
            response.raise_for_status()
            pages[user] = response.json()
    return pages


@dataclass
class RestartCheck:
    """A whole-app restart on the same store: states and pages before and after."""

    users: int
    states_identical: int
    states_differing: list[str]
    pages_checked: int
    old_app_matches_engine: int
    pages_identical_after_restart: int
    pages_differing: list[str]
    shutdown_s: float
    start_s: float

    def summary(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "states_identical": self.states_identical,
            "states_differing": len(self.states_differing),
            "pages_checked": self.pages_checked,
            "old_app_matches_engine": self.old_app_matches_engine,
            "pages_identical_after_restart": self.pages_identical_after_restart,
            "pages_differing": len(self.pages_differing),
            "shutdown_s": round(self.shutdown_s, 1),
            "start_s": round(self.start_s, 1),
        }


def restart_check(
    base: str,
    store: Any,
    engine: Any,
    users: Sequence[str],
    *,
    stop: Callable[[], None],
    start: Callable[[], None],
    pseudonym: Callable[[str], str],
    page_users: int = 32,
) -> RestartCheck:
    """Stop and start the whole app on the same store; compare every user's state and sampled pages.

    ``engine`` computes pages from the stored state in this process without recording them. It is
    first checked against the running app's own pages, then predicts the page the app must serve
    right after the restart. The store and ``engine`` know users by ``pseudonym(user)``, HTTP by their id.
    """
    sample = list(users[:page_users])
    stored_as = [pseudonym(user) for user in users]
    settled_states(store, stored_as)
    expected_now = {user: engine_page(engine, pseudonym(user)) for user in sample}
    served = get_pages(base, sample)
    old_matches = sum(page_signature(served[u]) == expected_now[u] for u in sample)
    before = settled_states(store, stored_as)
    expected_next = {user: engine_page(engine, pseudonym(user)) for user in sample}
    started = time.perf_counter()
    stop()
    shutdown_s = time.perf_counter() - started
    started = time.perf_counter()
    start()
    start_s = time.perf_counter() - started
    after = stored_states(store, stored_as)
    differing = [u for u, key in zip(users, stored_as, strict=True) if before[key] != after[key]]
    pages = get_pages(base, sample)
    pages_differing = [u for u in sample if page_signature(pages[u]) != expected_next[u]]
    return RestartCheck(
        users=len(users),
        states_identical=len(users) - len(differing),
        states_differing=differing,
        pages_checked=len(sample),
        old_app_matches_engine=old_matches,
        pages_identical_after_restart=len(sample) - len(pages_differing),
        pages_differing=pages_differing,
        shutdown_s=shutdown_s,
        start_s=start_s,
    )


# ------------------------------------------------------------------------------------------ the app
QUIET = {"enable_access_log": False, "log_level": "WARNING"}


@dataclass
class Deployment:
    """The Wayfinder app on Serve at a fixed loopback port, which it keeps across restarts."""

    bundle: Path
    store_url: str
    port: int
    name: str = "soak"
    gateway_replicas: int = 2
    updater_replicas: int = 1
    event_path: Literal["gateway", "updater"] = "updater"
    """Through the EmbeddingUpdater (the replica the faults kill); ``gateway`` is the app's default."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> Any:
        from serving.config import ServingArgs

        return ServingArgs(
            bundle=str(self.bundle),
            store_url=self.store_url,
            gateway_replicas=self.gateway_replicas,
            updater_replicas=self.updater_replicas,
            event_path=self.event_path,
        ).resolved()

    def start(self) -> None:
        """``serve.start`` on the port, then ``serve.run`` of the app (returns when it is running)."""
        from ray import serve

        from serving.app import build_app

        serve.start(http_options={"host": "127.0.0.1", "port": self.port}, logging_config=QUIET)
        serve.run(build_app(self.args()), name=self.name, route_prefix="/", logging_config=QUIET)

    def stop(self) -> None:
        from ray import serve

        serve.shutdown()

    def engine(self) -> Any:
        """An engine on the same bundle and store in this process (reads only; for expected pages)."""
        from serving.config import make_engine

        return make_engine(self.args())


# ------------------------------------------------------------------------------------------ one scenario
@dataclass
class Scenario:
    """Everything one backend's run measured."""

    backend: str
    clients: int
    duration: float
    users: list[str]
    load: LoadResult
    faults: list[Fault]
    probe: dict[str, int]
    """Pages and events answered 200 right after the load (of :data:`PROBES` each)."""
    stored_ids: list[str]
    restart: RestartCheck

    def summary(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "clients": self.clients,
            "duration_s": self.duration,
            "users": len(self.users),
            "load": self.load.summary(self.faults),
            "faults": [f.summary() for f in self.faults],
            "probe_ok": self.probe,
            "stored_events": len(self.stored_ids),
            "stored_distinct": len(set(self.stored_ids)),
            "acked_missing_from_store": len(self.load.acked - set(self.stored_ids)),
            "stored_but_not_acked": len(set(self.stored_ids) - self.load.acked),
            "restart": self.restart.summary(),
        }


def run_scenario(
    deployment: Deployment,
    *,
    backend: str,
    clients: int,
    duration: float,
    redis_server: Any = None,
    redis_down_s: float = 2.0,
    faults: bool = True,
) -> Scenario:
    """Deploy, load with an updater kill at 25% and a store-process fault at 50% (unless ``faults``
    is false: the load alone), check, restart."""
    from recsys.store import open_store

    deployment.start()
    prefix = f"soak-{uuid.uuid4().hex[:6]}"
    load = Load(
        deployment.base, catalogue(deployment.bundle), clients=clients, duration=duration, prefix=prefix
    )

    def updater_fault(running: Load) -> Fault:
        return kill_replica(running, deployment.name, "EmbeddingUpdater")

    def store_fault(running: Load) -> Fault:
        if backend == "redis":
            return kill_redis(running, redis_server, down_s=redis_down_s)
        # SQLite lives in the app's process: kill the process that reads and writes it
        return kill_replica(running, deployment.name, "Gateway", ingress=True)

    log(f"{backend}: {clients} clients for {duration:g} s against {deployment.base}")
    planned = [(UPDATER_FAULT_AT * duration, updater_fault), (STORE_FAULT_AT * duration, store_fault)]
    result, injected = run_with_faults(load, planned if faults else [])
    log(f"{backend}: load done, {json.dumps(result.summary(injected))}")
    probed = probe(load, PROBES)
    store = open_store(deployment.store_url)
    try:
        pseudonym = deployment.args().pseudonymiser()
        stored = stored_event_ids(store, [pseudonym(user) for user in load.users])
        engine = deployment.engine()
        restart = restart_check(
            deployment.base,
            store,
            engine,
            load.users,
            stop=deployment.stop,
            start=deployment.start,
            pseudonym=pseudonym,
        )
    finally:
        store.close()
    return Scenario(backend, clients, duration, load.users, result, injected, probed, stored, restart)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per backend")
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--redis-down", type=float, default=2.0, help="seconds redis-server stays down")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wf-bench-soak")
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    parser.add_argument("--no-faults", action="store_true", help="the load alone (its own section)")
    args = parser.parse_args(argv)

    import ray

    from benchmarks._report import write_section
    from benchmarks._soak_report import render
    from benchmarks.serving import ENV, ensure_bundle
    from jobs._ray import init_ray
    from tests._redis import RedisServer

    for name, value in ENV.items():
        os.environ.setdefault(name, value)
    args.workdir.mkdir(parents=True, exist_ok=True)
    bundle, _ = ensure_bundle(args.workdir)
    load_start = os.getloadavg()[0]
    temp_dir = tempfile.mkdtemp(prefix="wf-ray-", dir="/tmp")
    redis_dir = Path(tempfile.mkdtemp(prefix="wf-soak-redis-"))
    runs = []
    init_ray(num_cpus=2, temp_dir=temp_dir)
    server = None
    try:
        for backend in args.backends.split(","):
            if backend == "redis":
                binary = shutil.which("redis-server")
                if binary is None:
                    raise SystemExit("redis-server is not installed (apt-get install redis-server)")
                server = RedisServer(binary, redis_dir)
                server.start()
                store_url = f"{server.url}?prefix=soak-{uuid.uuid4().hex[:6]}:&require_fsync=true"
            else:
                db = args.workdir / "soak.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                store_url = f"sqlite:///{db}"
            path: Literal["gateway", "updater"] = (
                "gateway" if args.no_faults else "updater"
            )  # no faults: the default
            deployment = Deployment(bundle=bundle, store_url=store_url, port=free_port(), event_path=path)
            try:
                scenario = run_scenario(
                    deployment,
                    backend=backend,
                    clients=args.clients,
                    duration=args.duration,
                    redis_server=server,
                    redis_down_s=args.redis_down,
                    faults=not args.no_faults,
                )
            finally:
                deployment.stop()
            runs.append(scenario.summary())
            log(f"{backend}: {json.dumps(runs[-1])}")
    finally:
        if server is not None:
            server.stop()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(redis_dir, ignore_errors=True)
    results = {
        "clients": args.clients,
        "duration_s": args.duration,
        "redis_down_s": args.redis_down,
        "faults": not args.no_faults,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_start": load_start,
            "load_end": os.getloadavg()[0],
        },
        "runs": runs,
    }
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    name = "soak-clean" if args.no_faults else "soak"
    (REPO / "benchmarks" / "results" / f"{name}.json").write_text(json.dumps(results, indent=1))
    text = render(results)
    print(text)
    if not args.no_write:
        write_section(name, text)


if __name__ == "__main__":
    main()
