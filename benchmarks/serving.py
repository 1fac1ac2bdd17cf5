"""Serving latency over HTTP against a trivial Ray Serve app, read-your-writes, in-process costs.

Protocol of docs/benchmarks.md section 3, in one run on one local Ray cluster (2 CPUs):

1. A serving bundle fitted on ml-latest-small (the pipeline's defaults), cached in ``--workdir``.
2. The in-process cost of the engine without HTTP: ``Engine.ingest`` (one event, SQLite store),
   ``Engine.recommend`` (k=10), the served-page write, the per-call sync, and the pure
   ``EmbeddingUpdater.apply`` / ``Ranker.recommend`` without any store.
3. Ray Serve on a free loopback port, access log off, with three applications: the floor (one
   FastAPI deployment, ``GET /floor/ping`` and ``POST /floor/echo``, :mod:`benchmarks._trivial_app`),
   Wayfinder (SQLite store
   in the workdir; events applied in the gateway) and the same app at ``/hop`` with
   ``event_path="updater"`` (events through the handle hop to the EmbeddingUpdater, its own store),
   so both shapes of the event path are measured side by side. A load generator in a separate
   process (asyncio + aiohttp, one keep-alive connection per client) sends a fixed number of
   requests per cell: trivial GET and POST, GET recommendations (k=10, a pool of 200 users, half with 20
   events each), POST one event (both shapes), at 1, 16 and 64 concurrent clients, after a
   discarded warm-up. Each concurrency runs in :data:`ROUNDS` rounds of every endpoint (the order
   rotated per round) and pools them, so each ratio compares measurements taken moments apart.
4. Read-your-writes: a like for a fresh user, then at once GET recommendations: the state version
   must have advanced and the liked item must be gone.

Writes the ``serving`` section of BENCHMARKS.md.

    python -m benchmarks.serving [--workdir /tmp/wf-bench-serving]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ML_SMALL = REPO / "data" / "ml-latest-small"

CONCURRENCY = (1, 16, 64)
PER_CLIENT = {1: 600, 16: 160, 64: 80}
"""Requests per client over all rounds: 600 sequential, 16 x 160 = 2,560, 64 x 80 = 5,120. A round
needs several requests per client to reach a steady queue: with 3 (64 x 15 in 5 rounds) the first
burst of 64 weighed on every round's p50, and one round's ratio ranged from 1.0x to 2.0x."""
ROUNDS = 10
"""Each concurrency runs every endpoint this many times, the order rotated per round, and pools
the requests: a drift in the shared machine's load falls on the floor and on Wayfinder alike. One
round's ratio still ranges over +-0.2 on this shared machine; with 5 rounds the pooled ratio of one
code moved by +-0.08 from run to run; 10 rounds of the same length pool twice the requests, which
should halve that variance where rounds vary independently (the measured spread is in the README)."""
REPLICAS = 1
"""Ingress replicas of each application (the floor's and each Wayfinder Gateway; ``--replicas``).
One by default: on these 2 shared cores, two of each were no better in runs alternated with one
(README, Serving latency)."""
WARMUP = 20
"""Discarded requests before each round of each endpoint (at least one per client)."""
POOL = 200
"""GET users: ``u000``..``u199``; the first half get :data:`SEED_EVENTS` events before the load."""
SEED_EVENTS = 20
RYW_TRIALS = 50
IN_PROCESS_CALLS = 2_000
TARGET_RATIO = 1.5
LOADGEN_TIMEOUT_S = 900
FLOOR = "trivial GET /floor/ping"
FLOOR_POST = "trivial POST /floor/echo (1 event body)"
GET = "GET /v1/users/{u}/recommendations?k=10"
POST = "POST /v1/events (1 event)"
HOP = "POST /hop/v1/events (1 event, via the updater)"
ENDPOINTS = (FLOOR, FLOOR_POST, GET, POST, HOP)
FLOORS = {GET: FLOOR, POST: FLOOR_POST, HOP: FLOOR_POST}
"""Each endpoint's floor: the trivial request of the same method (see :mod:`benchmarks._trivial_app`)."""
THREE_READS = "Store: the three reads it replaces"
BATCH = 16
"""Events per call of the in-process batched ``Engine.ingest`` (one user each, one commit)."""
SEED_TYPES = ("view",) * 10 + ("click",) * 5 + ("like",) * 5
POST_TYPES = ("view", "click", "like")


ENV = {
    "OPENBLAS_NUM_THREADS": "1",  # one-thread BLAS (docs/ray-guide.md); set before numpy is imported
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "RAY_DEDUP_LOGS": "1",
    "RAY_SERVE_LOG_TO_STDERR": "0",
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ bundle
def ensure_bundle(workdir: Path) -> tuple[Path, float | None]:
    """ml-latest-small preprocessed and fitted into a serving bundle (once per workdir)."""
    from recsys.data.runner import SerialExecutor, preprocess
    from recsys.data.sources import parse_source
    from recsys.data.storage import Location
    from recsys.engine import train_bundle

    data, bundle = workdir / "data", workdir / "bundle"
    if not (data / "quality.json").exists():
        log("preprocessing ml-latest-small")
        preprocess(
            parse_source(f"movielens:{ML_SMALL}"), Location.parse(str(data)), executor=SerialExecutor()
        )
    if (bundle / "bundle.json").exists():
        return bundle, None
    log("training the serving bundle (the pipeline's defaults)")
    started = time.perf_counter()
    train_bundle(data, bundle)
    return bundle, time.perf_counter() - started


def catalogue(bundle: Path) -> list[str]:
    from recsys.data.ids import IdIndex

    return [str(item) for item in IdIndex.load(bundle / "ids" / "items.parquet").ids]


def fresh_db(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------------ in-process
def _stats_us(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "median_us": ordered[len(ordered) // 2] / 1e3,
        "p99_us": ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] / 1e3,
        "calls": len(ordered),
    }


def _timed(fn: Callable[[int], object], calls: int, *, warmup: int = 20) -> dict[str, float]:
    for i in range(warmup):
        fn(i)
    samples = []
    for i in range(calls):
        started = time.perf_counter_ns()
        fn(i)
        samples.append(time.perf_counter_ns() - started)
    return _stats_us(samples)


def measure_in_process(bundle: Path, workdir: Path, calls: int) -> dict[str, dict[str, float]]:
    """Microseconds per engine call on the bundle (SQLite store in the workdir), and without a store."""
    from recsys.embeddings import EmbeddingUpdater, UpdaterConfig, UserState
    from recsys.embeddings import Event as UpdateEvent
    from recsys.engine import Engine, IncomingEvent, load_bundle
    from recsys.ranking import Filters, Ranker, RankerConfig, RequestContext
    from recsys.store import open_store

    rng = random.Random(1)
    parts = load_bundle(bundle)
    store = open_store(f"sqlite:///{fresh_db(workdir / 'inprocess.db')}")
    engine = Engine(
        space=parts.space,
        item_ids=parts.item_ids,
        store=store,
        scorers=parts.scorers,
        featurizer=parts.featurizer,
        updater_config=UpdaterConfig(),
        ranker_config=RankerConfig(),
    )
    items = catalogue(bundle)
    users = [f"u{n:03d}" for n in range(POOL)]
    warm = users[: POOL // 2]
    now = time.time()
    results: dict[str, dict[str, float]] = {}

    # Engine.ingest: one event per call, spread over the warm half (this also seeds their states).
    total = calls + 20
    events = [
        IncomingEvent(
            user_id=warm[i % len(warm)],
            item_id=rng.choice(items),
            event_type=rng.choice(SEED_TYPES),
            timestamp=now + i * 1e-3,
            event_id=f"inproc-{i}",
        )
        for i in range(total)
    ]
    log(f"in-process: Engine.ingest x {calls}")
    results["Engine.ingest"] = _timed(lambda i: engine.ingest([events[i]]), calls, warmup=0)
    events = events[calls:]
    for event in events:
        engine.ingest([event])
    batches = [
        [
            IncomingEvent(
                user_id=warm[(i * BATCH + j) % len(warm)],
                item_id=rng.choice(items),
                event_type=rng.choice(SEED_TYPES),
                timestamp=now + 100 + i * 1e-3,
                event_id=f"inproc-batch-{i}-{j}",
            )
            for j in range(BATCH)
        ]
        for i in range(calls // BATCH + 1)
    ]
    log(f"in-process: Engine.ingest of {BATCH} events x {calls // BATCH}")
    results[f"Engine.ingest x{BATCH}"] = _timed(lambda i: engine.ingest(batches[i]), calls // BATCH, warmup=0)

    log(f"in-process: Engine.recommend x {calls}")
    pages = []
    results["Engine.recommend"] = _timed(
        lambda i: pages.append(engine.recommend(users[rng.randrange(POOL)], 10)), calls
    )
    log("in-process: record_served, sync, state codec")
    served = pages[-calls:]
    results["Engine.record_served"] = _timed(lambda i: engine.record_served(served[i]), calls, warmup=0)
    results["Engine.sync"] = _timed(lambda i: engine.sync(), calls)
    results["Store.read_for_ranking"] = _timed(lambda i: store.read_for_ranking(users[i % POOL]), calls)
    results[THREE_READS] = _timed(
        lambda i: (
            store.catalogue_revision(),
            store.get_state(users[i % POOL]),
            store.served_counts(users[i % POOL]),
        ),
        calls,
    )
    states = {user: engine.state(user)[0] for user in users}
    blobs = [states[users[n % POOL]].to_bytes() for n in range(POOL)]
    results["UserState.from_bytes"] = _timed(lambda i: UserState.from_bytes(blobs[i % POOL]), calls)
    results["UserState.to_bytes"] = _timed(lambda i: states[users[i % POOL]].to_bytes(), calls)

    log(f"in-process: pure EmbeddingUpdater.apply and Ranker.recommend x {calls}")
    updater = EmbeddingUpdater(parts.space, UpdaterConfig())
    ranker = Ranker(parts.space, parts.scorers, RankerConfig())
    context = RequestContext(now=now)
    results["Ranker.recommend"] = _timed(
        lambda i: ranker.recommend(states[users[rng.randrange(POOL)]], 10, Filters(), context), calls
    )
    # Each update goes to its own copy of a warm user's state, so every call sees a 20-event history.
    item_index = {item: n for n, item in enumerate(items)}
    warm_blobs = [states[user].to_bytes() for user in warm]
    updates = [
        (
            UserState.from_bytes(warm_blobs[i % len(warm_blobs)]),
            UpdateEvent(
                item_index[rng.choice(items)], rng.choice(SEED_TYPES), now + 10 + i * 1e-3, None, f"pure-{i}"
            ),
        )
        for i in range(calls + 20)
    ]
    results["EmbeddingUpdater.apply"] = _timed(lambda i: updater.apply(*updates[i]), calls)
    return results


# ------------------------------------------------------------------------------------------ serving
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def requests_per_client(quick: bool, clients: list[int]) -> dict[int, int]:
    """:data:`PER_CLIENT` for ``clients`` (a tenth with ``quick``, at least one per round)."""
    return {c: max(ROUNDS, PER_CLIENT[c] // 10) if quick else PER_CLIENT[c] for c in clients}


def measure_http(
    bundle: Path, workdir: Path, per_client: dict[int, int], ryw_trials: int, replicas: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """Start Ray and Serve, deploy the floor and Wayfinder, run the load generator; shut all down."""
    import ray
    from ray import serve

    from benchmarks._trivial_app import Ping
    from jobs._ray import init_ray
    from serving.app import ServingArgs, build_app

    temp_dir = tempfile.mkdtemp(prefix="wf-ray-", dir="/tmp")
    lifecycle: dict[str, float] = {}
    try:
        started = time.perf_counter()
        init_ray(num_cpus=2, temp_dir=temp_dir)
        lifecycle["ray.init"] = time.perf_counter() - started
        port = free_port()
        started = time.perf_counter()
        # serve.start's logging_config covers the controller and the proxy; each application's
        # replicas take theirs from serve.run (without it they write an access line per request).
        quiet = {"enable_access_log": False, "log_level": "WARNING"}
        serve.start(
            http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 30}, logging_config=quiet
        )
        floor = Ping.options(num_replicas=replicas).bind()  # type: ignore[attr-defined]
        serve.run(floor, name="floor", route_prefix="/floor", logging_config=quiet)
        lifecycle["serve.start + floor app"] = time.perf_counter() - started
        started = time.perf_counter()
        store = fresh_db(workdir / "serving.db")
        serve.run(
            build_app(
                ServingArgs(bundle=str(bundle), store_url=f"sqlite:///{store}", gateway_replicas=replicas)
            ),
            name="wayfinder",
            route_prefix="/",
            logging_config=quiet,
        )
        lifecycle["Wayfinder app"] = time.perf_counter() - started
        started = time.perf_counter()
        hop_store = fresh_db(workdir / "serving-hop.db")
        hop_args = ServingArgs(
            bundle=str(bundle),
            store_url=f"sqlite:///{hop_store}",
            event_path="updater",
            gateway_replicas=replicas,
        )
        serve.run(build_app(hop_args), name="wayfinder-hop", route_prefix="/hop", logging_config=quiet)
        lifecycle["Wayfinder app (events via the updater)"] = time.perf_counter() - started
        plan = {
            "base": f"http://127.0.0.1:{port}",
            "items": catalogue(bundle),
            "run": uuid.uuid4().hex[:8],
            "concurrency": list(per_client),
            "per_client": {str(c): n for c, n in per_client.items()},
            "rounds": ROUNDS,
            "warmup": WARMUP,
            "ryw_trials": ryw_trials,
        }
        plan_path, result_path = workdir / "loadgen-plan.json", workdir / "loadgen-result.json"
        plan_path.write_text(json.dumps(plan))
        result_path.unlink(missing_ok=True)
        log(f"load generator on {plan['base']} (separate process)")
        command = [sys.executable, "-m", "benchmarks._serving_loadgen", str(plan_path), str(result_path)]
        process = subprocess.Popen(command, cwd=REPO)
        try:
            process.wait(timeout=LOADGEN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"load generator ran past {LOADGEN_TIMEOUT_S} s") from None
        if process.returncode != 0:
            raise RuntimeError(f"load generator failed ({process.returncode})")
        return json.loads(result_path.read_text()), lifecycle
    finally:
        log("shutting down Serve and Ray")
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------ report
def _replicas_text(replicas: int) -> str:
    """How many ingress replicas each application ran, for the report."""
    if replicas == 1:
        return "Each app's ingress (the floor's `Ping`, each `Gateway`) ran one replica."
    return f"Each app's ingress (the floor's `Ping`, each `Gateway`) ran {replicas} replicas."


def render(results: dict[str, Any]) -> str:
    cells = results["http"]["cells"]
    floors: dict[str, str] = FLOORS
    floor = {
        name: {cell["clients"]: cell for cell in cells if cell["endpoint"] == name}
        for name in (FLOOR, FLOOR_POST)
    }
    ryw = results["http"]["read_your_writes"]
    machine = results["machine"]
    per_client = results["per_client"]
    sizes = ", ".join(f"{c} x {n}" if int(c) > 1 else f"{n} sequential" for c, n in per_client.items())
    lines = [
        "## Serving: HTTP latency against a trivial Ray Serve app",
        "",
        f"`python -m benchmarks.serving`, {machine['cpus']} CPUs, {machine['memory_gib']:.0f} GiB, "
        f"Python {machine['python']}, ray {machine['ray']}. Protocol of docs/benchmarks.md section 3. "
        "One local Ray cluster (`num_cpus=2`), Serve on a loopback port with the access log off, three "
        "applications deployed in the same run: the floor (one FastAPI deployment answering `GET /ping` "
        "and `POST /echo`, "
        "same replica options as the Gateway: `num_cpus=0`, `max_ongoing_requests=256`, user code on the "
        "replica's own event loop), Wayfinder "
        f"(bundle: ALS space, {machine['scorers']}, the pipeline's defaults fitted on ml-latest-small, "
        f"{machine['items']:,} items; SQLite "
        "store, WAL, `synchronous=FULL`; the Gateway ranks inline and applies events in its own "
        "replica, `@serve.batch` on events, one durable commit per batch) and, at `/hop`, the same app "
        "with `event_path=updater` (each POST is a handle call to the EmbeddingUpdater deployment: the "
        "other shape of the event path, its own SQLite file). "
        f"{_replicas_text(results.get('replicas', REPLICAS))} "
        "The load generator is a separate process "
        "(asyncio + aiohttp, one keep-alive connection per client) but **shares the same 2 cores** with "
        "Ray's proxy, the replicas and the GCS, so every latency here is an upper bound and throughput a "
        "lower bound. "
        f"Requests per cell: {sizes}, in {results['rounds']} rounds: each round runs every endpoint once "
        "at that concurrency, in an order rotated per round, after a discarded warm-up on the same "
        f"connections (at least {WARMUP} requests and one per client), so a drift in the shared machine's "
        "load falls on the floors and on Wayfinder alike; p50 and p99 are over the pooled requests of "
        "all rounds, and the ratio of each round's own p50s is shown beside them. "
        "GET users come from a pool of 200, half of them with "
        f"{SEED_EVENTS} events; each POST is one event (view/click/like) for a random user of another "
        "pool of 200 and a random catalogue item, with a unique `event_id`. Load average "
        f"{machine['load_start']:.1f} at start, {machine['load_end']:.1f} at end (the machine is shared).",
        "",
        f"**Target:** p50 within {TARGET_RATIO}x of the floor's at the same concurrency, and zero errors. "
        "Each endpoint is compared with the trivial request of its own method: GETs with `GET /ping`, "
        "POSTs with `POST /echo` (a trivial handler that parses the same one-event JSON body). Serve "
        "hands a replica a request without its body; the replica fetches it with a call back to the "
        "proxy before any handler runs, so a trivial POST is already well above a trivial GET (both "
        "are in the table). The last ratio column is every endpoint against the GET floor.",
        "",
        "| endpoint | clients | requests | p50 ms | p99 ms | req/s | errors | p50 vs its floor "
        "| per round | p50 vs GET floor | meets target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for cell in cells:
        own = floors.get(cell["endpoint"])
        ratio = cell["p50_ms"] / floor[own][cell["clients"]]["p50_ms"] if own else 1.0
        per_round = (
            " / ".join(
                f"{mine / theirs:.2f}"
                for mine, theirs in zip(
                    cell["round_p50_ms"], floor[own][cell["clients"]]["round_p50_ms"], strict=True
                )
            )
            if own
            else ""
        )
        ratio_get = cell["p50_ms"] / floor[FLOOR][cell["clients"]]["p50_ms"]
        if own is None:
            verdict = "floor" if cell["errors"] == 0 else "no (errors)"
        else:
            misses = [f"p50 {ratio:.2f}x"] if ratio > TARGET_RATIO else []
            misses += [f"{cell['errors']} errors"] if cell["errors"] else []
            verdict = "yes" if not misses else "**no** (" + ", ".join(misses) + ")"
        lines.append(
            f"| {cell['endpoint']} | {cell['clients']} | {cell['requests']:,} | {cell['p50_ms']:.1f} | "
            f"{cell['p99_ms']:.1f} | {cell['req_per_s']:,.0f} | {cell['errors']} | "
            f"{ratio:.2f}x | {per_round} | {ratio_get:.2f}x | {verdict} |"
        )
    lines += [
        "",
        "**CPU per request by process** (ms; user + system time of each process over the cell's "
        "measured requests, all rounds, divided by its requests; read from /proc by the load "
        "generator). *App* is the replicas of the application that served the endpoint (the floor's "
        "`Ping`; Wayfinder's Gateway and idle updater; for `/hop`, its Gateway and updater). The "
        "proxy and the Ray threads in each replica keep working while requests are in flight, so "
        "their CPU per request grows with latency, not only with the work a request asks for.",
        "",
        "| endpoint | clients | proxy | app | load generator | together |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        cpu = cell["cpu_ms_per_request"]
        lines.append(
            f"| {cell['endpoint']} | {cell['clients']} | {cpu['proxy']:.2f} | {cpu['app']:.2f} | "
            f"{cpu['load generator']:.2f} | {sum(cpu.values()):.2f} |"
        )
    samples = sorted({s for cell in cells for s in cell["error_samples"]})
    if samples:
        lines += ["", "Errors seen: " + "; ".join(f"`{s}`" for s in samples[:5]) + "."]
    lines += [
        "",
        f"**Read-your-writes:** {ryw['trials']} fresh users each POSTed a like for an item of the "
        "zero-history page, then at once GET their recommendations: the page's `state_version` must be at "
        "least the acknowledged one (>= 1) and the liked item must be gone (seen items are filtered). "
        f"**{ryw['failures']} failures** of {ryw['trials']}"
        + (" (meets the target)." if ryw["failures"] == 0 else " (**misses** the target: must be 0).")
        + f" POST + GET pair p50 {ryw['pair_p50_ms']:.1f} ms."
        + (" Failures: " + "; ".join(f"`{s}`" for s in ryw["failure_samples"]) if ryw["failures"] else ""),
        "",
        "**In-process cost** (no HTTP, no Ray; the same bundle, one thread, "
        f"`time.perf_counter_ns` over {results['in_process']['Engine.recommend']['calls']:,} calls each; "
        "SQLite store in the workdir, `synchronous=FULL`; the 200-user pool, half with 20 events):",
        "",
        "| call | what it does | median µs | p99 µs |",
        "|---|---|---:|---:|",
    ]
    what = {
        "Engine.ingest": "one event: state read, update, durable event + state write (fsync)",
        f"Engine.ingest x{BATCH}": f"{BATCH} events of {BATCH} users in one call: one durable commit",
        "Engine.recommend": "k=10: one SQLite read (catalogue revision, state, served counters), rank; "
        "the pool repeats, so "
        "decoded states and blends are mostly reused (as for repeat pages)",
        "Engine.record_served": "the served-page counters a GET queues after answering (no fsync)",
        "Store.read_for_ranking": "catalogue revision, state and served counters in one statement "
        "(what a GET reads)",
        THREE_READS: "`catalogue_revision`, `get_state`, `served_counts`: one statement each",
        "Engine.sync": "runs before every other engine call in a replica (one read of the catalogue "
        "revision; recommend syncs from its own read)",
        "UserState.from_bytes": "state decode (zlib + JSON)",
        "UserState.to_bytes": "state encode (JSON + zlib)",
        "EmbeddingUpdater.apply": "pure update of an in-memory state, no store",
        "Ranker.recommend": "pure ranking of an in-memory state, k=10, no store, the blend computed "
        "every call (zero-history pages are kept by the ranker)",
    }
    for name, row in results["in_process"].items():
        lines.append(f"| `{name}` | {what.get(name, '')} | {row['median_us']:,.0f} | {row['p99_us']:,.0f} |")
    lifecycle = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in results["lifecycle"].items())
    lines += ["", f"Start-up in this run: {lifecycle}."]
    return "\n".join(lines)


def _scorers(bundle: Path) -> str:
    """What the bundle ranks with, from its manifest (e.g. ``EASE + next-items + session-EASE``)."""
    manifest = json.loads((bundle / "bundle.json").read_text())
    parts = [str(manifest["scorer"]["family"]).upper()] if manifest.get("scorer") else []
    if manifest.get("sequence"):
        parts += ["next-items", "session-EASE"]
    prior = "stage prior" if manifest.get("prior") == "stage" else "popularity prior"
    return f"{' + '.join(parts) or 'no'} scorer{'s' if len(parts) != 1 else ''}, {prior}"


def machine_facts(bundle: Path, load_start: float) -> dict[str, Any]:
    import psutil
    import ray

    return {
        "cpus": psutil.cpu_count(),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "python": platform.python_version(),
        "ray": ray.__version__,
        "items": len(catalogue(bundle)),
        "scorers": _scorers(bundle),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default="/tmp/wf-bench-serving")
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests; no BENCHMARKS.md")
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        choices=CONCURRENCY,
        default=list(CONCURRENCY),
        help="only these concurrencies (a partial run does not write BENCHMARKS.md)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=REPLICAS,
        help="ingress replicas of every application: the floor's and each Wayfinder Gateway",
    )
    args = parser.parse_args(argv)
    for name, value in ENV.items():
        os.environ.setdefault(name, value)
    from benchmarks._report import write_section

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    bundle, train_s = ensure_bundle(workdir)
    in_process = measure_in_process(
        bundle, workdir, IN_PROCESS_CALLS // 10 if args.quick else IN_PROCESS_CALLS
    )
    per_client = requests_per_client(args.quick, args.clients)
    http, lifecycle = measure_http(
        bundle, workdir, per_client, 10 if args.quick else RYW_TRIALS, args.replicas
    )
    if train_s is not None:
        lifecycle = {"bundle training": train_s, **lifecycle}
    results = {
        "machine": machine_facts(bundle, load_start),
        "per_client": per_client,
        "rounds": ROUNDS,
        "replicas": args.replicas,
        "in_process": in_process,
        "http": http,
        "lifecycle": lifecycle,
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
    report = render(results)
    if not args.quick and per_client.keys() == set(CONCURRENCY):
        write_section("serving", report)
    print(report)


if __name__ == "__main__":
    main()
