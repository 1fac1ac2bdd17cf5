"""The soak benchmark's load and faults: clients mixing events and pages against the app, every
request classified and timed (:class:`Load`, :class:`LoadResult`), and the faults injected
mid-load with how the service came back (:class:`Fault`). Used by :mod:`benchmarks.soak` and
``tests/serving/test_reliability.py``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

POST_SHARE = 0.5
"""Share of requests that are events; the rest are recommendation pages."""
USERS_PER_CLIENT = 4
EVENT_TYPES = ("view", "click", "like", "dislike")
REQUEST_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 120.0
RETRY_PAUSE_S = 0.2
"""A client waits this long after a failed request before its next one (no hot retry loop)."""


# ------------------------------------------------------------------------------------------ load
@dataclass(frozen=True)
class Sample:
    """One request: when it started and ended (seconds since the load began), what, and the outcome."""

    start: float
    end: float
    kind: str
    """``event``, ``event-retry`` or ``page``."""
    outcome: str
    """``ok``, ``503``, ``HTTP <status>`` for any other status, or the client-side exception's name."""
    detail: str = ""
    """The start of the answer's body (or the exception's message) when it was not ``ok``."""


@dataclass
class LoadResult:
    """What a :class:`Load` saw."""

    samples: list[Sample] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)
    """Every event id sent at least once."""
    acked: set[str] = field(default_factory=set)
    """Event ids the app acknowledged (applied, duplicate or pending_item)."""
    duplicates_acked: int = 0
    """Retries the app answered ``duplicate``: the first try was stored but its answer was lost."""
    unacked_after_drain: set[str] = field(default_factory=set)
    wall_s: float = 0.0
    drain_s: float = 0.0

    def outcomes(self, *, after: float = -math.inf, before: float = math.inf) -> collections.Counter[str]:
        return collections.Counter(s.outcome for s in self.samples if after <= s.start < before)

    def server_errors(self, faults: Sequence[Fault] = ()) -> list[Sample]:
        """Answers with a 5xx status other than the clean 503 the app gives while its store is away.

        Leaves out the requests in flight on an ingress replica at the moment it was killed (those of
        :meth:`lost_with_ingress`): the app's process is gone, and Serve's proxy answers them 500.
        """
        lost = set(map(id, self.lost_with_ingress(faults)))
        return [s for s in self.samples if s.outcome.startswith("HTTP 5") and id(s) not in lost]

    def lost_with_ingress(self, faults: Sequence[Fault]) -> list[Sample]:
        """500s of requests that were in flight on a killed ingress (gateway) replica when it died."""
        return [
            s
            for s in self.samples
            if s.outcome == "HTTP 500"
            and any(f.ingress and s.start <= f.killed_at and s.end >= f.at for f in faults)
        ]

    def client_errors(self) -> list[Sample]:
        return [
            s for s in self.samples if s.outcome not in {"ok", "503"} and not s.outcome.startswith("HTTP")
        ]

    def summary(self, faults: Sequence[Fault] = ()) -> dict[str, Any]:
        load = [s for s in self.samples if s.start < self.wall_s]
        ok = sorted((s.end - s.start) * 1e3 for s in load if s.outcome == "ok")
        pages = sorted((s.end - s.start) * 1e3 for s in load if s.outcome == "ok" and s.kind == "page")
        events = sorted((s.end - s.start) * 1e3 for s in load if s.outcome == "ok" and s.kind != "page")
        return {
            "requests": len(load),
            "ok": len(ok),
            "req_per_s": len(load) / self.wall_s if self.wall_s else math.nan,
            "ok_per_s": len(ok) / self.wall_s if self.wall_s else math.nan,
            "p50_ms": percentile(ok, 0.50),
            "p99_ms": percentile(ok, 0.99),
            "page_p50_ms": percentile(pages, 0.50),
            "page_p99_ms": percentile(pages, 0.99),
            "event_p50_ms": percentile(events, 0.50),
            "event_p99_ms": percentile(events, 0.99),
            "outcomes": dict(self.outcomes()),
            "server_errors_other_than_503": len(self.server_errors(faults)),
            "lost_with_killed_gateway": len(self.lost_with_ingress(faults)),
            "client_errors": len(self.client_errors()),
            "events_sent": len(self.sent),
            "events_acked": len(self.acked),
            "retries_answered_duplicate": self.duplicates_acked,
            "unacked_after_drain": len(self.unacked_after_drain),
            "wall_s": self.wall_s,
            "drain_s": self.drain_s,
        }


def percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else math.nan


class Load:
    """``clients`` concurrent HTTP clients in a background thread, for ``duration`` seconds.

    Each client owns :data:`USERS_PER_CLIENT` users (``{prefix}-{client}-{n}``) and sends events
    with unique ids and page requests for them. :meth:`start` returns at once; :meth:`join` waits for
    the load and the drain of unacknowledged events, and returns the :class:`LoadResult`.
    """

    def __init__(
        self, base: str, items: Sequence[str], *, clients: int, duration: float, prefix: str, seed: int = 0
    ) -> None:
        self.base = base
        self.items = list(items)
        self.clients = clients
        self.duration = duration
        self.prefix = prefix
        self.seed = seed
        self.result = LoadResult()
        self.started_at = 0.0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def users(self) -> list[str]:
        return [f"{self.prefix}-{c}-{n}" for c in range(self.clients) for n in range(USERS_PER_CLIENT)]

    def now(self) -> float:
        """Seconds since the load began (the time base of every :class:`Sample`)."""
        return time.monotonic() - self.started_at

    def start(self) -> Load:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="soak-load", daemon=True)
        self._thread.start()
        return self

    def join(self) -> LoadResult:
        assert self._thread is not None, "start() first"
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.result

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # re-raised in join()
            self._error = exc

    async def _main(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=self.clients)
        pending: list[dict[str, Any]] = []
        async with aiohttp.ClientSession(self.base, connector=connector, timeout=timeout) as http:
            results = await asyncio.gather(*(self._client(http, c) for c in range(self.clients)))
            self.result.wall_s = self.duration
            for unacked in results:
                pending.extend(unacked)
            drain_started = time.monotonic()
            deadline = drain_started + DRAIN_TIMEOUT_S
            while pending and time.monotonic() < deadline:
                body = pending.pop(0)
                if not await self._post(http, body, "event-retry"):
                    pending.append(body)
                    await asyncio.sleep(RETRY_PAUSE_S)
            self.result.drain_s = time.monotonic() - drain_started
        self.result.unacked_after_drain = {body["event_id"] for body in pending}

    async def _client(self, http: Any, client: int) -> list[dict[str, Any]]:
        """One client's loop; returns the events it could not get acknowledged before the end."""
        rng = random.Random(self.seed * 10_007 + client)
        users = [f"{self.prefix}-{client}-{n}" for n in range(USERS_PER_CLIENT)]
        unacked: list[dict[str, Any]] = []
        counter = 0
        while self.now() < self.duration:
            if unacked and rng.random() < 0.5:
                body, kind = unacked.pop(0), "event-retry"
            elif rng.random() < POST_SHARE:
                counter += 1
                body = {
                    "user_id": rng.choice(users),
                    "item_id": rng.choice(self.items),
                    "event_type": rng.choice(EVENT_TYPES),
                    "event_id": f"{self.prefix}-{client}-e{counter}",
                }
                kind = "event"
            else:
                if not await self._page(http, rng.choice(users)):
                    await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if not await self._post(http, body, kind):
                unacked.append(body)
                await asyncio.sleep(RETRY_PAUSE_S)
        return unacked

    async def _post(self, http: Any, body: dict[str, Any], kind: str) -> bool:
        self.result.sent.add(body["event_id"])
        started = self.now()
        try:
            async with http.post("/v1/events", json=body) as response:
                payload = await response.read()
                status = response.status
        except Exception as exc:
            self.result.samples.append(Sample(started, self.now(), kind, type(exc).__name__, str(exc)[:200]))
            return False
        self.result.samples.append(Sample(started, self.now(), kind, *_outcome(status, payload)))
        if status != 200:
            return False
        (ack,) = json.loads(payload)["acks"]
        self.result.acked.add(ack["event_id"])
        if kind == "event-retry" and ack["status"] == "duplicate":
            self.result.duplicates_acked += 1
        return True

    async def _page(self, http: Any, user: str) -> bool:
        started = self.now()
        try:
            async with http.get(f"/v1/users/{user}/recommendations", params={"k": "10"}) as response:
                payload = await response.read()
                status = response.status
        except Exception as exc:
            self.result.samples.append(
                Sample(started, self.now(), "page", type(exc).__name__, str(exc)[:200])
            )
            return False
        self.result.samples.append(Sample(started, self.now(), "page", *_outcome(status, payload)))
        return status == 200


def _outcome(status: int, body: bytes) -> tuple[str, str]:
    if 200 <= status < 300:
        return "ok", ""
    return ("503" if status == 503 else f"HTTP {status}"), body[:200].decode(errors="replace")


# ------------------------------------------------------------------------------------------ faults
@dataclass
class Fault:
    """One fault injected mid-load and how the service came back (times in load seconds)."""

    name: str
    at: float
    """When the fault was injected (just before the kill)."""
    detail: str = ""
    ingress: bool = False
    """Whether the killed replica was an ingress (gateway) replica, whose in-flight requests die with it."""
    killed_at: float = 0.0
    """When the kill call returned."""
    replaced_after_s: float | None = None
    """Until Serve listed a new replica (replica kills) or the store answered again (store kill)."""
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    failure_details: collections.Counter[str] = field(default_factory=collections.Counter)
    recovered_after_s: float = 0.0
    """From the fault until the end of the last request it failed or held up: the last failure that
    ended after the fault (and started before the next one), or the last request in flight at the
    fault when none failed."""

    def measure(self, result: LoadResult, until: float) -> None:
        """Attribute to this fault the failures that ended after it and before ``until`` (the next one)."""
        failures = [s for s in result.samples if self.at <= s.end < until and s.outcome != "ok"]
        in_flight = [s for s in result.samples if s.start <= self.killed_at and s.end >= self.at]
        self.failed = collections.Counter(s.outcome for s in failures)
        self.failure_details = collections.Counter(f"{s.outcome}: {s.detail[:90]}" for s in failures)
        self.recovered_after_s = max((s.end for s in failures or in_flight), default=self.at) - self.at

    def summary(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "at_s": round(self.at, 2),
            "detail": self.detail,
            "replaced_after_s": self.replaced_after_s,
            "failed": dict(self.failed),
            "failure_details": dict(self.failure_details.most_common(5)),
            "recovered_after_s": round(self.recovered_after_s, 2),
        }
