"""The soak benchmark's BENCHMARKS.md section, from the results :mod:`benchmarks.soak` gathers."""

from __future__ import annotations

import math
from typing import Any

from benchmarks._soak_load import USERS_PER_CLIENT


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.0f}"


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    faults = results.get("faults", True)
    plan = (
        "At 25% of the run an `EmbeddingUpdater` replica is "
        "killed (`ray.kill`; Serve replaces it); at 50% the store's process: `redis-server` SIGKILLed "
        f"and restarted on the same port and AOF (`appendfsync always`) after {results['redis_down_s']:g} s, "
        "or for SQLite, whose store lives in the app's process, a gateway replica. "
        if faults
        else "No fault is injected: the load alone. "
    )
    lines = [
        "## Reliability: soak with faults and a restart (`python -m benchmarks.soak`)"
        if faults
        else "## Reliability: soak without faults, then a restart (`python -m benchmarks.soak --no-faults`)",
        "",
        f"{results['clients']} concurrent clients (asyncio + aiohttp, one keep-alive connection each) for "
        f"{results['duration_s']:g} s against the real app (Ray Serve over HTTP on a local Ray cluster, "
        "two gateway replicas, one updater replica, ml-latest-small bundle), half `POST /v1/events` "
        "(one event, a unique `event_id`), half `GET /v1/users/{u}/recommendations?k=10`, "
        f"{USERS_PER_CLIENT} users per client. {plan}A client sends an "
        "unacknowledged event again later with the same `event_id`. Then the whole app is restarted "
        "(`serve.shutdown`, `serve.run`) on the same store.",
        "",
        f"Machine: {machine['cpus']} CPUs shared with other jobs (load average {machine['load_start']:.0f} "
        f"at the start, {machine['load_end']:.0f} at the end), so latencies are upper bounds; the load "
        "generator runs on the same cores.",
        "",
        "| store | requests | ok/s | p50 ms | p99 ms | page p50/p99 ms | event p50/p99 ms | 503 | "
        "500 (in flight on the killed gateway) | other 5xx | client errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        load = run["load"]
        outcomes = load["outcomes"]
        lines.append(
            f"| {run['backend']} | {load['requests']:,} | {load['ok_per_s']:.1f} | {_ms(load['p50_ms'])} | "
            f"{_ms(load['p99_ms'])} | {_ms(load['page_p50_ms'])} / {_ms(load['page_p99_ms'])} | "
            f"{_ms(load['event_p50_ms'])} / {_ms(load['event_p99_ms'])} | {outcomes.get('503', 0)} | "
            f"{load['lost_with_killed_gateway']} | {load['server_errors_other_than_503']} | "
            f"{load['client_errors']} |"
        )
    lines += [
        "",
        "| store | events sent | acknowledged | in the store | acknowledged but missing | stored twice | "
        "retries answered `duplicate` |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        load = run["load"]
        lines.append(
            f"| {run['backend']} | {load['events_sent']:,} | {load['events_acked']:,} | "
            f"{run['stored_events']:,} | {run['acked_missing_from_store']} | "
            f"{run['stored_events'] - run['stored_distinct']} | {load['retries_answered_duplicate']} |"
        )
    if faults:
        lines += [
            "",
            "| store | fault | at s | replaced / answering after s | failed requests | "
            "all requests ok again after s |",
            "|---|---|---|---|---|---|",
        ]
    for run in results["runs"]:
        for fault in run["faults"]:
            failed = ", ".join(f"{n} × {k}" for k, n in sorted(fault["failed"].items())) or "none"
            lines.append(
                f"| {run['backend']} | {fault['fault']} | {fault['at_s']:.1f} | "
                f"{fault['replaced_after_s']} | {failed} | {fault['recovered_after_s']:.1f} |"
            )
    lines += [
        "",
        "| store | users | states identical after restart | pages: old app = engine | "
        "first page after restart = predicted | shutdown s | start s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        r = run["restart"]
        lines.append(
            f"| {run['backend']} | {r['users']} | {r['states_identical']}/{r['users']} | "
            f"{r['old_app_matches_engine']}/{r['pages_checked']} | "
            f"{r['pages_identical_after_restart']}/{r['pages_checked']} | "
            f"{r['shutdown_s']} | {r['start_s']} |"
        )
    lines += [
        "",
        '"All requests ok again after" is the time from the fault to the end of the last request it '
        "failed (failures are counted for the latest fault before they ended), or, when none failed, of "
        "the last request in flight at the fault. A 503 is the app's clean answer while the store or "
        "the updater is away (`StoreError`, the updater replica dying mid-call or not answering within "
        "`updater_timeout_s`); requests in flight on a gateway replica when it is killed die with its "
        "process, and Serve's proxy answers those 500 (counted apart; their events were sent again and "
        'acknowledged). "Pages: old app = engine" checks that an '
        "engine on the same bundle and store in the benchmark's process computes exactly the page the "
        "running app served; it then predicts the first page after the restart from the stored state.",
    ]
    return "\n".join(lines)
