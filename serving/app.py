"""The Ray Serve application: a FastAPI ingress that ranks in-process, and an embedding updater.

Shape, chosen for latency (every handle hop costs 5-9 ms here, see the Ray guide):

* ``Gateway`` is the ingress *and* the ranker: it loads the serving bundle once, reads the user's
  state from the shared store and ranks in the same replica, on Serve's loop (no hop, no thread
  and no batch queue on ``GET .../recommendations``: each cost more than it saved, measured).
* ``POST /v1/events`` is applied in the gateway too (no hop): concurrent requests are batched with
  ``@serve.batch`` and written in one worker-thread call, one durable commit per round of one event
  per user (``Engine.ingest``), before any of them is acknowledged.
* ``EmbeddingUpdater`` stays the handle-based entry for bulk ingestion
  (``handle.ingest.remote(list_of_IncomingEvent)``), over the same store.
* Pages are counted for the journey policy and promotion caps after answering, by a background
  thread every 50 ms, in batches, without an fsync (``Engine.served_later``).

Both read and write the same durable store on every call, so any replica sees every acknowledged
event (read-your-writes across replicas) and a restart loses nothing. Build the app with
:func:`build_app`; ``serve run serving/config.yaml`` does. Its arguments, and the engine and
experiments each replica builds from them, are in :mod:`serving.config`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Path, Query, Response
from pydantic import BaseModel
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from recsys.engine import Ack, Engine, IncomingEvent, Page
from recsys.engine.versions import resolve_serving_bundle
from recsys.ranking import RankedItem
from recsys.registry import code_version
from recsys.store import StoreError
from recsys.store.base import ItemRecord
from serving import schemas as s
from serving.auth import Guard, needs
from serving.config import (
    ModelSwitch,
    ServingArgs,
    make_engine,
    make_experiments,
    replica_options,
    serving_identity,
)
from serving.demo import DemoRoutes
from serving.demo import router as demo_router
from serving.errors import install_error_handlers, to_incoming, within
from serving.experiments import ExperimentRuntime
from serving.logs import log_failure, log_request
from serving.metrics import serving_metrics

REPLICA_HEADER = "X-Wayfinder-Replica"
"""Response header naming the gateway replica that answered."""
logger = logging.getLogger("wayfinder.serving")


async def attribute_fresh(
    experiments: ExperimentRuntime, metrics: Any, incoming: list[IncomingEvent], acks: list[Ack]
) -> None:
    """A/B attribution of durable, first-seen events that name a response's ``request_id``."""
    fresh = [e for e, a in zip(incoming, acks, strict=True) if e.request_id and a.status != "duplicate"]
    if not fresh:
        return
    for counted in await asyncio.to_thread(experiments.attribute, fresh):
        if counted.outcomes:
            metrics.conversion(counted.experiment, counted.variant, counted.event_type)


async def _swapped(
    current: _Locked, args: ServingArgs, user_config: dict[str, Any], **kw: Any
) -> _Locked | None:
    """The engine for the bundle version ``user_config`` names, loaded off the event loop; ``None``
    when it is the one already serving. Requests keep using ``current`` until the caller swaps."""
    wanted = ModelSwitch.model_validate(user_config).model_version
    if wanted is None and current.engine.model_version is None:
        return None
    _, version = await asyncio.to_thread(resolve_serving_bundle, args.bundle, wanted)
    if version == current.engine.model_version:
        return None
    engine = await asyncio.to_thread(make_engine, args.model_copy(update={"model_version": version}), **kw)
    logger.warning("model swap: %s -> %s", current.engine.model_version, version)
    return _Locked(engine)


def _replica() -> str | None:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:
        return None


def _json(model: BaseModel) -> Response:
    """The model as a JSON response, serialised once (FastAPI would validate and encode it again)."""
    return Response(content=model.model_dump_json(), media_type="application/json")


@contextmanager
def store_errors_counted(operation: str) -> Iterator[None]:
    """Count and log (without user data) a :class:`StoreError` raised inside, then re-raise it."""
    try:
        yield
    except StoreError as exc:
        serving_metrics().store_error(operation, exc)
        log_failure(operation, exc)
        raise


class _Locked:
    """Runs engine calls in a worker thread, one at a time (the engine is not thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock, store_errors_counted(getattr(fn, "__name__", "engine")):
            self.engine.sync()
            return fn(*args, **kwargs)

    async def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._call, fn, *args, **kwargs)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256, health_check_period_s=10)
class EmbeddingUpdater:
    """Applies events: each is durable (event + new state, atomically) before the call returns.

    ``ingest`` takes events whose user ids the gateway already pseudonymised; ``ingest_external``
    (the stream-ingestion job's entry) takes clients' raw ids and pseudonymises them here first.
    """

    def __init__(self, args: dict[str, Any]) -> None:
        config = ServingArgs.model_validate(args)
        self.pseudonym = config.privacy.pseudonymiser()
        self._config = config
        self._engine = _Locked(make_engine(config, with_scorers=False))
        self.experiments = make_experiments(config, self._engine.engine, with_scorers=False)
        self.metrics = serving_metrics()
        self.metrics.model_loaded(*serving_identity(config))

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve the bundle version ``user_config["model_version"]`` names (hot swap, in place)."""
        swapped = await _swapped(self._engine, self._config, user_config, with_scorers=False)
        if swapped is not None:
            config = self._config.model_copy(update={"model_version": swapped.engine.model_version})
            experiments = make_experiments(config, swapped.engine, with_scorers=False)
            self._engine, self.experiments, self._config = swapped, experiments, config
            self.metrics.model_loaded(*serving_identity(config))

    async def ingest(self, events: list[IncomingEvent]) -> list[Ack]:
        started = time.perf_counter()
        if self.experiments.overrides_updates:  # each user's events through their variant's updater
            acks: list[Ack] = await self._engine(
                lambda: [self.experiments.engine_for_user(e.user_id).ingest([e])[0] for e in events]
            )
        else:
            acks = await self._engine(self._engine.engine.ingest, events)
        self.metrics.embedding_update(time.perf_counter() - started)
        self.metrics.events_ingested((e.event_type, a.status) for e, a in zip(events, acks, strict=True))
        return acks

    async def ingest_external(self, events: list[IncomingEvent]) -> list[Ack]:
        """Events with clients' own user ids (e.g. from a stream): pseudonymised, applied, attributed."""
        incoming = [dataclasses.replace(e, user_id=self.pseudonym(e.user_id)) for e in events]
        acks = await self.ingest(incoming)
        await attribute_fresh(self.experiments, self.metrics, incoming, acks)
        return acks

    def check_health(self) -> None:
        self._engine.engine.space.n_items  # noqa: B018 - raises if the engine was never built


api = FastAPI(
    title="Wayfinder",
    version="1",
    description="Real-time personalization: events in, recommendations out, every event moves the user.",
)
install_error_handlers(api)
api.include_router(demo_router)  # GET /demo, /v1/items, /v1/items/map, /v1/users/{id}/map


class _ReplicaHeader:
    """Pure ASGI middleware adding :data:`REPLICA_HEADER` to every response (one replica per process)."""

    replica_id = b""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-wayfinder-replica", self.replica_id)]
            await send(message)

        await self.app(scope, receive, sending if scope["type"] == "http" else send)


api.add_middleware(_ReplicaHeader)


# User code on the replica's own event loop: in a second thread (Serve's default) every CPU-bound
# page fights the loop that talks to the proxy for the GIL (measured in BENCHMARKS.md).
SAME_LOOP = {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}


@serve.deployment(
    ray_actor_options={"num_cpus": 0, "runtime_env": SAME_LOOP},
    max_ongoing_requests=256,
    health_check_period_s=10,
)
@serve.ingress(api)
class Gateway(DemoRoutes):
    """The HTTP API (``/v1``); ranks in this replica and forwards events to the updater."""

    engine: _Locked

    def __init__(self, updater: DeploymentHandle, args: dict[str, Any]) -> None:
        self.config = ServingArgs.model_validate(args)
        self.updater = updater
        self.engine = _Locked(make_engine(self.config))
        self.guard = Guard(self.config.auth)
        self.pseudonym = self.config.privacy.pseudonymiser()  # every user id, before the engine
        self.experiments = make_experiments(self.config, self.engine.engine)
        self.metrics = serving_metrics()
        self.metrics.model_loaded(*serving_identity(self.config))
        _ReplicaHeader.replica_id = serve.get_replica_context().replica_id.unique_id.encode()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve the bundle version ``user_config["model_version"]`` names: loaded in the background
        while this replica keeps answering, then swapped in one assignment; user states follow
        lazily (each is re-derived from its events on first touch, recsys.engine.rederive)."""
        swapped = await _swapped(self.engine, self.config, user_config)
        if swapped is not None:  # the experiments' control engine is the main one: swap them together
            config = self.config.model_copy(update={"model_version": swapped.engine.model_version})
            experiments = make_experiments(config, swapped.engine)
            self.engine, self.experiments, self.config = swapped, experiments, config
            self.metrics.model_loaded(*serving_identity(config))

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.engine.close()  # write the served pages still queued

    # ------------------------------------------------------------------ events
    @api.post("/v1/events", response_model=s.EventsAck, tags=["events"], dependencies=needs("events:write"))
    async def post_events(self, body: s.EventIn | s.EventBatchIn) -> Response:
        """One event or a batch; acknowledged only once durable. Answers with each state version."""
        events = body.events if isinstance(body, s.EventBatchIn) else [body]
        incoming = [
            dataclasses.replace(
                to_incoming(event, position, self.engine.engine.known_event_types),
                user_id=self.pseudonym(event.user_id),
            )
            for position, event in enumerate(events)
        ]
        if self.config.event_path == "updater":
            acks: list[Ack] = await within(
                self.updater.ingest.remote(incoming), self.config.updater_timeout_s, "the embedding updater"
            )
        else:
            acks = await self.ingest(incoming)
        log_request("events", events=len(acks), applied=sum(a.status == "applied" for a in acks))
        await attribute_fresh(self.experiments, self.metrics, incoming, acks)
        return _json(
            s.EventsAck(
                acks=[
                    s.EventAck(
                        user_id=event.user_id,
                        event_id=a.event_id,
                        status=a.status,
                        state_version=a.state_version,
                    )
                    for event, a in zip(events, acks, strict=True)
                ]
            )
        )

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)  # batch what queued; never wait
    async def ingest(self, requests: list[list[IncomingEvent]]) -> list[list[Ack]]:
        """Apply concurrent requests' events in this replica: one worker-thread call (the fsync
        off the event loop), durable before any of them returns."""

        flat = [event for events in requests for event in events]

        def apply() -> list[Ack]:
            with store_errors_counted("ingest"):
                if self.experiments.overrides_updates:  # each user's events through their variant's updater
                    return [self.experiments.engine_for_user(e.user_id).ingest([e])[0] for e in flat]
                engine = self.engine.engine
                engine.sync()
                return engine.ingest(flat)

        started = time.perf_counter()
        acks = await asyncio.to_thread(apply)
        self.metrics.embedding_update(time.perf_counter() - started)
        self.metrics.events_ingested((e.event_type, a.status) for e, a in zip(flat, acks, strict=True))
        out, start = [], 0
        for events in requests:
            out.append(acks[start : start + len(events)])
            start += len(events)
        return out

    # ------------------------------------------------------------------ recommendations
    @api.get(
        "/v1/users/{user_id}/recommendations",
        response_model=s.Recommendations,
        tags=["recommendations"],
        dependencies=needs("recommendations:read"),
    )
    async def recommendations(
        self,
        user_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH),
        k: int = Query(10, ge=1, le=s.MAX_K, description=f"page size, 1 to {s.MAX_K}"),
        category: list[str] | None = Query(None, description="only items in one of these categories"),
        exclude: str | None = Query(
            None, max_length=20_000, description="comma-separated item ids to leave out"
        ),
    ) -> Response:
        """The user's next page: score, provenance and explanation per item. Unknown users get the
        zero-history page; an acknowledged event shows in the very next call."""
        started = time.perf_counter()
        excluded = [x for x in (exclude or "").split(",") if x]
        uid = self.pseudonym(user_id)
        running = self.experiments.active
        variant = await asyncio.to_thread(self.experiments.assign, uid) if running else None
        engine = self.experiments.engine(variant, sync=False)  # recommend syncs it from its one read
        page = self.rank(engine, uid, k, category, excluded)
        engine.served_later(page)  # counted after answering, batched by the engine's thread
        items = [self.item_out(r, engine) for r in page.items]  # ids as the ranking engine knows them
        request_id = uuid.uuid4().hex
        if variant is not None:  # the exposure is durable before the client can act on it
            shown = [i.item_id for i in items]
            await asyncio.to_thread(self.experiments.expose, request_id, uid, variant, shown)
            if running is not None:
                self.metrics.exposure(running.id, variant)
        seconds = time.perf_counter() - started
        self.metrics.recommendation(seconds, zero_history=not page.has_history)
        log_request(
            "recommendations",
            user_id=uid,
            k=k,
            items=len(page.items),
            zero_history=not page.has_history,
            latency_ms=round(seconds * 1000, 3),
        )
        return _json(
            s.Recommendations(
                user_id=user_id,
                request_id=request_id,
                state_version=page.state_version,
                items=items,
                variant=variant,
                experiment=running.id if running and variant else None,
            )
        )

    def rank(
        self, engine: Engine, user: str, k: int, categories: list[str] | None, exclude: list[str]
    ) -> Page:
        """Rank right here, on Serve's user-code loop: ranking is CPU-bound, so neither a worker
        thread nor ``@serve.batch`` helps (measured: the batch queue alone cost 0.2-0.3 ms of CPU
        per call, more than it saved; README, Serving latency)."""
        with store_errors_counted("recommend"):  # recommend syncs the catalogue from its one read
            return engine.recommend(user, k, include_categories=categories, exclude_item_ids=exclude)

    def item_out(self, ranked: RankedItem, engine: Engine | None = None) -> s.RecommendedItem:
        """``ranked`` for the response, its id and content from ``engine`` (the one that ranked it;
        the main engine by default): a variant's engine may have synced items the main one has not."""
        engine = engine if engine is not None else self.engine.engine
        metadata = engine.space.metadata
        title = metadata.label(ranked.item) if metadata is not None else None
        categories = list(metadata.categories[ranked.item]) if metadata and metadata.categories else []
        provenance = "popular-fallback" if ranked.provenance == "popular" else ranked.provenance
        return s.RecommendedItem(
            item_id=engine.item_id(ranked.item),
            score=float(ranked.score) if math.isfinite(ranked.score) else 0.0,
            provenance=provenance,
            explanation=ranked.explanation,
            title=title,
            categories=categories,
        )

    @api.get(
        "/v1/items/{item_id}/similar",
        response_model=s.SimilarItems,
        tags=["items"],
        dependencies=needs("recommendations:read"),
    )
    async def similar(
        self,
        item_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH),
        k: int = Query(10, ge=1, le=s.MAX_K),
    ) -> s.SimilarItems:
        """Items nearest to this one in the embedding space."""
        found = await self.engine(self.engine.engine.similar, item_id, k)
        if found is None:
            raise HTTPException(404, detail=f"item_id {item_id!r} is not known to the model")
        return s.SimilarItems(item_id=item_id, items=[self.item_out(r) for r in found])

    @api.get(
        "/v1/users/{user_id}/intent", tags=["recommendations"], dependencies=needs("recommendations:read")
    )
    async def intent(self, user_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)) -> dict[str, Any]:
        """Top interests (categories, tags, representative items, weights), confidence, drift and
        recent signals, as JSON for an AI agent's context."""
        summary: dict[str, Any] = await self.engine(self.engine.engine.intent, self.pseudonym(user_id))
        return summary | {"user_id": user_id}

    # ------------------------------------------------------------------ catalogue and users
    @api.put("/v1/items/{item_id}", response_model=s.ItemOut, tags=["items"], dependencies=needs("admin"))
    async def put_item(
        self, body: s.ItemIn, item_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)
    ) -> s.ItemOut:
        """Add or update an item; its content is projected into the space, recommendable at once."""
        record = ItemRecord(
            item_id, body.title, tuple(body.categories), tuple(body.tags), body.text, dict(body.attributes)
        )
        created = await self.engine(self.engine.engine.put_item, record)
        return s.ItemOut(item_id=item_id, created=created, item_count=self.engine.engine.n_items)

    @api.delete("/v1/users/{user_id}", tags=["users"], dependencies=needs("admin"))
    async def forget_user(
        self, user_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)
    ) -> dict[str, Any]:
        """Forget a user: their state and every event they sent."""
        result = await self.engine(self.engine.engine.forget, self.pseudonym(user_id))
        return {"user_id": user_id, "events_deleted": result.events, "state_deleted": result.state}

    # ------------------------------------------------------------------ promotions
    @api.post(
        "/v1/promotions",
        response_model=s.PromotionOut,
        status_code=201,
        tags=["promotions"],
        dependencies=needs("admin"),
    )
    async def create_promotion(self, body: s.PromotionIn) -> s.PromotionOut:
        """Create or replace a campaign; shown only to users it is relevant enough to."""
        promotion_id = body.promotion_id or uuid.uuid4().hex[:12]
        document = body.model_dump(mode="json") | {"promotion_id": promotion_id}
        document["starts_at"] = body.starts_at.timestamp() if body.starts_at else None
        document["ends_at"] = body.ends_at.timestamp() if body.ends_at else None
        await self.engine(self.engine.engine.put_promotion, promotion_id, document)
        return s.PromotionOut.model_validate(body.model_dump() | {"promotion_id": promotion_id})

    @api.get("/v1/promotions", tags=["promotions"], dependencies=needs("admin"))
    async def list_promotions(self) -> dict[str, Any]:
        promotions = await self.engine(self.engine.engine.list_promotions)
        return {"promotions": list(promotions.values())}

    @api.delete("/v1/promotions/{promotion_id}", tags=["promotions"], dependencies=needs("admin"))
    async def delete_promotion(
        self, promotion_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)
    ) -> dict[str, Any]:
        if not await self.engine(self.engine.engine.delete_promotion, promotion_id):
            raise HTTPException(404, detail=f"promotion_id {promotion_id!r} does not exist")
        return {"promotion_id": promotion_id, "deleted": True}

    # ------------------------------------------------------------------ experiments
    @api.get("/v1/experiments", tags=["experiments"], dependencies=needs("admin"))
    async def list_experiments(self) -> dict[str, Any]:
        """The configured experiments; ``running`` is the one that assigns users now."""
        active = self.experiments.active
        return {
            "experiments": [
                {"id": e.id, "running": e is active, "variants": [v.name for v in e.variants]}
                for e in self.experiments.experiments.values()
            ]
        }

    @api.get("/v1/experiments/{experiment_id}/report", tags=["experiments"], dependencies=needs("admin"))
    async def experiment_report(
        self, experiment_id: str = Path(min_length=1, max_length=64)
    ) -> dict[str, Any]:
        """Per variant: exposures, click-through and conversion with 95% Wilson intervals, the
        two-proportion z-test against the control (the first variant), and the current allocation."""
        report = await asyncio.to_thread(self.experiments.report, experiment_id)
        if report is None:
            raise HTTPException(404, detail=f"experiment_id {experiment_id!r} is not configured")
        return report

    # ------------------------------------------------------------------ health
    @api.get("/healthz", response_model=s.Health, tags=["health"])
    async def healthz(self) -> s.Health:
        return s.Health(status="ok")

    @api.get("/readyz", response_model=s.Health, tags=["health"])
    async def readyz(self) -> s.Health:
        """Ready when the model is loaded and the store answers."""
        await self.engine(self.engine.engine.ping)
        engine = self.engine.engine
        return s.Health(
            status="ok",
            details={"items": engine.n_items, "model_version": engine.model_version, "replica": _replica()},
        )

    def check_health(self) -> None:
        self.engine.engine.space.n_items  # noqa: B018


def build_app(args: dict[str, Any] | ServingArgs) -> Application:
    """The typed application builder: ``serve run serving.app:build_app bundle=...`` or the YAML."""
    config = (args if isinstance(args, ServingArgs) else ServingArgs.model_validate(args)).with_privacy_key()
    if not config.auth.configured:
        logger.warning(
            "serving WITHOUT API keys: the HTTP API is open (set auth.keys_file; see README Security)"
        )
    raw = config.model_dump(mode="json")
    _, version = resolve_serving_bundle(config.bundle, config.model_version)
    swap = {"user_config": {"model_version": version}, "version": _code_version(raw), "_internal": True}
    updater = EmbeddingUpdater.options(**replica_options(config.updater_replicas), **swap).bind(raw)  # type: ignore[attr-defined]
    gateway = Gateway.options(**replica_options(config.gateway_replicas), **swap)  # type: ignore[attr-defined]
    return gateway.bind(updater, raw)


IN_PLACE_ARGS = frozenset({"model_version", "gateway_replicas", "updater_replicas"})
"""Arguments that a re-deploy applies to the running replicas: the model version (through
``reconfigure``) and the replica counts or autoscaling ranges (Serve adds or removes replicas)."""


def _code_version(raw: dict[str, Any]) -> str:
    """Serve's deployment version: the code and every argument but :data:`IN_PLACE_ARGS`, so that
    re-running the app with only those changed keeps the running replicas (Serve restarts replicas
    whose version changed; otherwise it calls ``reconfigure`` and scales to the new replica
    settings)."""
    fixed = {key: value for key, value in raw.items() if key not in IN_PLACE_ARGS}
    text = json.dumps({"args": fixed, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
