"""The serving benchmark's load generator, run by :mod:`benchmarks.serving` as its own process.

``python -m benchmarks._serving_loadgen PLAN RESULT``: reads the JSON plan (base URL, catalogue,
concurrencies, requests per client, rounds), seeds half the GET users, drives every cell (asyncio +
aiohttp, one keep-alive connection per client) in interleaved rounds, checks read-your-writes, and
writes the JSON result.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.serving import (
    ENDPOINTS,
    FLOOR,
    FLOOR_POST,
    GET,
    HOP,
    POOL,
    POST,
    POST_TYPES,
    SEED_EVENTS,
    SEED_TYPES,
)

PROCESSES = {
    "proxy": "ray::ProxyActor",
    "floor": "ray::ServeReplica:floor:",
    "wayfinder": "ray::ServeReplica:wayfinder:",
    "hop": "ray::ServeReplica:wayfinder-hop:",
}
"""Process groups whose CPU each cell records, by the title Ray gives the process."""
APP = {FLOOR: "floor", FLOOR_POST: "floor", GET: "wayfinder", POST: "wayfinder", HOP: "hop"}
"""The application (process group) each endpoint is served by."""


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) so far of each :data:`PROCESSES` group."""
    import psutil

    totals = dict.fromkeys(PROCESSES, 0.0)
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        title = " ".join(process.info["cmdline"] or [])
        times = process.info["cpu_times"]
        for group, prefix in PROCESSES.items():
            if times is not None and title.startswith(prefix):
                totals[group] += times.user + times.system
    return totals


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else math.nan


async def _drive(
    session: Any, make: Callable[[], tuple[str, str, Any]], clients: int, per_client: int
) -> dict[str, Any]:
    """``clients`` workers, each sending ``per_client`` requests back to back on its own connection:
    every latency (ms), the error messages and the wall time."""
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        for _ in range(per_client):
            method, path, body = make()
            started = time.perf_counter()
            try:
                async with session.request(method, path, json=body) as response:
                    await response.read()
                    if not 200 <= response.status < 300:
                        errors.append(f"HTTP {response.status}")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            latencies.append((time.perf_counter() - started) * 1e3)

    cpu = _cpu_seconds()
    started, own = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall, own = time.perf_counter() - started, time.process_time() - own
    after = _cpu_seconds()
    return {
        "latencies": latencies,
        "errors": errors,
        "wall_s": wall,
        "cpu_s": {group: after[group] - cpu[group] for group in after} | {"load generator": own},
    }


def _cell(endpoint: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One endpoint at one concurrency: percentiles over the pooled requests of every round, each
    round's own p50, and the CPU per request of the proxy, the endpoint's app and this process."""
    ordered = sorted(latency for r in rounds for latency in r["latencies"])
    cpu = {
        name: sum(r["cpu_s"][group] for r in rounds) * 1e3 / len(ordered)
        for name, group in (("proxy", "proxy"), ("app", APP[endpoint]), ("load generator", "load generator"))
    }
    errors = [e for r in rounds for e in r["errors"]]
    wall = sum(r["wall_s"] for r in rounds)
    return {
        "requests": len(ordered),
        "p50_ms": _percentile(ordered, 0.50),
        "p99_ms": _percentile(ordered, 0.99),
        "mean_ms": sum(ordered) / len(ordered),
        "round_p50_ms": [_percentile(sorted(r["latencies"]), 0.50) for r in rounds],
        "req_per_s": len(ordered) / wall,
        "cpu_ms_per_request": cpu,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "wall_s": wall,
    }


async def _loadgen(plan: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    rng = random.Random(0)
    items: list[str] = plan["items"]
    run: str = plan["run"]
    users = [f"u{n:03d}" for n in range(POOL)]
    post_users = [f"p{n:03d}" for n in range(POOL)]
    counter = itertools.count()

    def floor() -> tuple[str, str, Any]:
        return "GET", "/floor/ping", None

    def recommendations() -> tuple[str, str, Any]:
        return "GET", f"/v1/users/{rng.choice(users)}/recommendations?k=10", None

    def event(prefix: str = "") -> tuple[str, str, Any]:
        body = {
            "user_id": rng.choice(post_users),
            "item_id": rng.choice(items),
            "event_type": rng.choice(POST_TYPES),
            "event_id": f"bench-{run}-{next(counter)}",
        }
        return "POST", f"{prefix}/v1/events", body

    def floor_post() -> tuple[str, str, Any]:
        return "POST", "/floor/echo", event()[2]

    makers = {
        FLOOR: floor,
        FLOOR_POST: floor_post,
        GET: recommendations,
        POST: event,
        HOP: lambda: event("/hop"),
    }
    timeout = aiohttp.ClientTimeout(total=30)

    def session(clients: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=clients)
        return aiohttp.ClientSession(plan["base"], connector=connector, timeout=timeout)

    async with session(8) as seeding:  # half the GET pool gets a history
        for user in users[: POOL // 2]:
            batch = [
                {
                    "user_id": user,
                    "item_id": rng.choice(items),
                    "event_type": kind,
                    "event_id": f"seed-{run}-{user}-{n}",
                }
                for n, kind in enumerate(SEED_TYPES[:SEED_EVENTS])
            ]
            async with seeding.post("/v1/events", json={"events": batch}) as response:
                if response.status != 200:
                    raise RuntimeError(f"seeding failed: HTTP {response.status} {await response.text()}")

    cells = []
    rounds: int = plan["rounds"]
    for clients in plan["concurrency"]:
        per_round = int(plan["per_client"][str(clients)]) // rounds
        measured: dict[str, list[dict[str, Any]]] = {endpoint: [] for endpoint in ENDPOINTS}
        for round_ in range(rounds):
            # Each round runs every endpoint once, in an order rotated per round, so a drift in the
            # shared machine's load falls on all endpoints alike.
            for endpoint in ENDPOINTS[round_ % len(ENDPOINTS) :] + ENDPOINTS[: round_ % len(ENDPOINTS)]:
                async with session(clients) as http:
                    # Warm-up (discarded): opens every client's connection and warms the code paths.
                    await _drive(http, makers[endpoint], clients, max(1, math.ceil(plan["warmup"] / clients)))
                    measured[endpoint].append(await _drive(http, makers[endpoint], clients, per_round))
        for endpoint in ENDPOINTS:
            result = _cell(endpoint, measured[endpoint]) | {"endpoint": endpoint, "clients": clients}
            print(
                f"[loadgen] {endpoint} c={clients}: p50 {result['p50_ms']:.1f} ms "
                f"(rounds {', '.join(f'{p:.1f}' for p in result['round_p50_ms'])}), "
                f"p99 {result['p99_ms']:.1f} ms, {result['req_per_s']:.0f} req/s, {result['errors']} errors",
                file=sys.stderr,
                flush=True,
            )
            cells.append(result)

    ryw = await _read_your_writes(session(1), run, int(plan["ryw_trials"]))
    return {"cells": cells, "read_your_writes": ryw}


async def _read_your_writes(http: Any, run: str, trials: int) -> dict[str, Any]:
    """A like for a fresh user, then the very next GET: version advanced and the item gone."""
    failures: list[str] = []
    pair_ms: list[float] = []
    async with http:
        async with http.get(f"/v1/users/ryw-{run}-probe/recommendations?k=10") as response:
            candidates = [item["item_id"] for item in (await response.json())["items"]]
        for trial in range(trials):
            user, liked = f"ryw-{run}-{trial}", candidates[trial % len(candidates)]
            body = {"user_id": user, "item_id": liked, "event_type": "like", "event_id": f"ryw-{run}-{trial}"}
            started = time.perf_counter()
            try:
                async with http.post("/v1/events", json=body) as response:
                    acked = (await response.json())["acks"][0] if response.status == 200 else None
                async with http.get(f"/v1/users/{user}/recommendations?k=10") as response:
                    page = await response.json() if response.status == 200 else None
            except Exception as exc:
                failures.append(f"{user}: {type(exc).__name__}: {exc}"[:200])
                continue
            pair_ms.append((time.perf_counter() - started) * 1e3)
            if acked is None or page is None:
                failures.append(f"{user}: HTTP error")
            elif acked["status"] != "applied" or acked["state_version"] < 1:
                failures.append(f"{user}: ack {acked}")
            elif page["state_version"] < acked["state_version"]:
                failures.append(
                    f"{user}: page version {page['state_version']} < ack {acked['state_version']}"
                )
            elif liked in [item["item_id"] for item in page["items"]]:
                failures.append(f"{user}: liked item {liked} still recommended")
    ordered = sorted(pair_ms)
    return {
        "trials": trials,
        "failures": len(failures),
        "failure_samples": failures[:5],
        "pair_p50_ms": _percentile(ordered, 0.5),
    }


def loadgen_main(plan_path: str, result_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    result = asyncio.run(_loadgen(plan))
    Path(result_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    loadgen_main(*sys.argv[1:3])
