"""The Ray Serve application: a FastAPI ingress that ranks in-process, and an embedding updater.

Shape, chosen for latency (every handle hop costs 5-9 ms here, see the Ray guide):

* ``Gateway`` is the ingress *and* the ranker: it loads the serving bundle once, reads the user's
  state from the shared store and ranks in the same replica (no hop on ``GET .../recommendations``),
  batching concurrent ranking calls with ``@serve.batch``.
* ``EmbeddingUpdater`` applies events (``POST /v1/events``, one hop): it writes each event and the
  user's new state to the store atomically before the gateway acknowledges.

Both read and write the same durable store on every call, so any replica sees every acknowledged
event (read-your-writes across replicas) and a restart loses nothing. Build the app with
:func:`build_app`; ``serve run serving/config.yaml`` does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import uuid
from pathlib import Path as FilePath
from typing import Any

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from recsys.embeddings import UpdaterConfig
from recsys.engine import Ack, Engine, IncomingEvent, Page, load_bundle
from recsys.ranking import RankedItem, RankerConfig
from recsys.store import open_store
from recsys.store.base import ItemRecord
from serving import schemas as s
from serving.demo import DemoRoutes
from serving.demo import router as demo_router
from serving.errors import install_error_handlers, to_incoming, within

PROJECT_ROOT = FilePath(__file__).resolve().parents[1]
logger = logging.getLogger("wayfinder.serving")


class ServingArgs(BaseModel):
    """Arguments of :func:`build_app` (the ``args`` of the Serve config's application)."""

    model_config = ConfigDict(extra="forbid")

    bundle: str = Field(description="serving bundle directory (wayfinder pipeline writes out/bundle)")
    store_url: str = Field(
        default="sqlite:///out/store.db",
        description="sqlite:///relative.db, sqlite:////absolute.db or redis://host:port/db",
    )
    gateway_replicas: int = Field(default=1, ge=1)
    updater_replicas: int = Field(default=1, ge=1)
    updater_timeout_s: float = Field(
        default=15.0, gt=0, description="answer 503 when the updater has not acknowledged events by then"
    )
    updater: UpdaterConfig = Field(default_factory=UpdaterConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)

    def resolved(self) -> ServingArgs:
        """Relative paths taken from the project root, so every replica finds the same files."""
        bundle = FilePath(self.bundle)
        url = self.store_url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str(PROJECT_ROOT / url.removeprefix("sqlite:///"))
        absolute = bundle if bundle.is_absolute() else PROJECT_ROOT / bundle
        return self.model_copy(update={"bundle": str(absolute), "store_url": url})


def make_engine(args: ServingArgs, *, with_scorers: bool = True) -> Engine:
    """One replica's engine over the bundle and the shared store."""
    if args.store_url.startswith("sqlite:///"):
        FilePath(args.store_url.removeprefix("sqlite:///").split("?")[0]).parent.mkdir(
            parents=True, exist_ok=True
        )
    parts = load_bundle(args.bundle)
    return Engine(
        space=parts.space,
        item_ids=parts.item_ids,
        store=open_store(args.store_url),
        scorers=parts.scorers if with_scorers else (),
        featurizer=parts.featurizer,
        updater_config=args.updater,
        ranker_config=args.ranker,
    )


class _Locked:
    """Runs engine calls in a worker thread, one at a time (the engine is not thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.engine.sync()
            return fn(*args, **kwargs)

    async def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._call, fn, *args, **kwargs)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256, health_check_period_s=10)
class EmbeddingUpdater:
    """Applies events: each is durable (event + new state, atomically) before the call returns."""

    def __init__(self, args: dict[str, Any]) -> None:
        config = ServingArgs.model_validate(args)
        self._engine = _Locked(make_engine(config, with_scorers=False))

    async def ingest(self, events: list[IncomingEvent]) -> list[Ack]:
        return await self._engine(self._engine.engine.ingest, events)

    def check_health(self) -> None:
        self._engine.engine.space.n_items  # noqa: B018 - raises if the engine was never built


api = FastAPI(
    title="Wayfinder",
    version="1",
    description="Real-time personalization: events in, recommendations out, every event moves the user.",
)
install_error_handlers(api)
api.include_router(demo_router)  # GET /demo, /v1/items, /v1/items/map, /v1/users/{id}/map


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256, health_check_period_s=10)
@serve.ingress(api)
class Gateway(DemoRoutes):
    """The HTTP API (``/v1``); ranks in this replica and forwards events to the updater."""

    def __init__(self, updater: DeploymentHandle, args: dict[str, Any]) -> None:
        self.config = ServingArgs.model_validate(args)
        self.updater = updater
        self.engine = _Locked(make_engine(self.config))
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ events
    @api.post("/v1/events", response_model=s.EventsAck, tags=["events"])
    async def post_events(self, body: s.EventIn | s.EventBatchIn) -> s.EventsAck:
        """One event or a batch; acknowledged only once durable. Answers with each state version."""
        events = body.events if isinstance(body, s.EventBatchIn) else [body]
        incoming = [
            to_incoming(event, position, self.engine.engine.known_event_types)
            for position, event in enumerate(events)
        ]
        acks: list[Ack] = await within(
            self.updater.ingest.remote(incoming), self.config.updater_timeout_s, "the embedding updater"
        )
        return s.EventsAck(
            acks=[
                s.EventAck(
                    user_id=a.user_id, event_id=a.event_id, status=a.status, state_version=a.state_version
                )
                for a in acks
            ]
        )

    # ------------------------------------------------------------------ recommendations
    @api.get(
        "/v1/users/{user_id}/recommendations", response_model=s.Recommendations, tags=["recommendations"]
    )
    async def recommendations(
        self,
        user_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH),
        k: int = Query(10, ge=1, le=s.MAX_K, description=f"page size, 1 to {s.MAX_K}"),
        category: list[str] | None = Query(None, description="only items in one of these categories"),
        exclude: str | None = Query(
            None, max_length=20_000, description="comma-separated item ids to leave out"
        ),
    ) -> s.Recommendations:
        """The user's next page: score, provenance and explanation per item. Unknown users get the
        zero-history page; an acknowledged event shows in the very next call."""
        excluded = [x for x in (exclude or "").split(",") if x]
        page: Page = await self.rank((user_id, k, category, excluded))
        self.served_later(page)
        return s.Recommendations(
            user_id=user_id,
            request_id=uuid.uuid4().hex,
            state_version=page.state_version,
            items=[self.item_out(r) for r in page.items],
        )

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)  # batch what queued; never wait
    async def rank(self, requests: list[tuple[str, int, list[str] | None, list[str]]]) -> list[Page]:
        """Rank a batch of concurrent requests in one worker-thread call."""

        def pages() -> list[Page]:
            engine = self.engine.engine
            return [
                engine.recommend(user, k, include_categories=categories, exclude_item_ids=exclude)
                for user, k, categories, exclude in requests
            ]

        result: list[Page] = await self.engine(pages)
        return result

    def served_later(self, page: Page) -> None:
        """Count the page for the journey policy and promotion caps after responding."""
        # Not under the engine lock: this write (an fsync) must not hold up the next page.
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self.engine.engine.record_served, page)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def item_out(self, ranked: RankedItem) -> s.RecommendedItem:
        engine = self.engine.engine
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

    @api.get("/v1/items/{item_id}/similar", response_model=s.SimilarItems, tags=["items"])
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

    @api.get("/v1/users/{user_id}/intent", tags=["recommendations"])
    async def intent(self, user_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)) -> dict[str, Any]:
        """Top interests (categories, tags, representative items, weights), confidence, drift and
        recent signals, as JSON for an AI agent's context."""
        summary: dict[str, Any] = await self.engine(self.engine.engine.intent, user_id)
        return summary

    # ------------------------------------------------------------------ catalogue and users
    @api.put("/v1/items/{item_id}", response_model=s.ItemOut, tags=["items"])
    async def put_item(
        self, body: s.ItemIn, item_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)
    ) -> s.ItemOut:
        """Add or update an item; its content is projected into the space, recommendable at once."""
        record = ItemRecord(
            item_id, body.title, tuple(body.categories), tuple(body.tags), body.text, dict(body.attributes)
        )
        created = await self.engine(self.engine.engine.put_item, record)
        return s.ItemOut(item_id=item_id, created=created, item_count=self.engine.engine.n_items)

    @api.delete("/v1/users/{user_id}", tags=["users"])
    async def forget_user(
        self, user_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)
    ) -> dict[str, Any]:
        """Forget a user: their state and every event they sent."""
        result = await self.engine(self.engine.engine.forget, user_id)
        return {"user_id": user_id, "events_deleted": result.events, "state_deleted": result.state}

    # ------------------------------------------------------------------ promotions
    @api.post("/v1/promotions", response_model=s.PromotionOut, status_code=201, tags=["promotions"])
    async def create_promotion(self, body: s.PromotionIn) -> s.PromotionOut:
        """Create or replace a campaign; shown only to users it is relevant enough to."""
        promotion_id = body.promotion_id or uuid.uuid4().hex[:12]
        document = body.model_dump(mode="json") | {"promotion_id": promotion_id}
        document["starts_at"] = body.starts_at.timestamp() if body.starts_at else None
        document["ends_at"] = body.ends_at.timestamp() if body.ends_at else None
        await self.engine(self.engine.engine.put_promotion, promotion_id, document)
        return s.PromotionOut.model_validate(body.model_dump() | {"promotion_id": promotion_id})

    @api.get("/v1/promotions", tags=["promotions"])
    async def list_promotions(self) -> dict[str, Any]:
        promotions = await self.engine(self.engine.engine.list_promotions)
        return {"promotions": list(promotions.values())}

    @api.delete("/v1/promotions/{promotion_id}", tags=["promotions"])
    async def delete_promotion(
        self, promotion_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)
    ) -> dict[str, Any]:
        if not await self.engine(self.engine.engine.delete_promotion, promotion_id):
            raise HTTPException(404, detail=f"promotion_id {promotion_id!r} does not exist")
        return {"promotion_id": promotion_id, "deleted": True}

    # ------------------------------------------------------------------ health
    @api.get("/healthz", response_model=s.Health, tags=["health"])
    async def healthz(self) -> s.Health:
        return s.Health(status="ok")

    @api.get("/readyz", response_model=s.Health, tags=["health"])
    async def readyz(self) -> s.Health:
        """Ready when the model is loaded and the store answers."""
        await self.engine(self.engine.engine.ping)
        return s.Health(status="ok", details={"items": self.engine.engine.n_items})

    def check_health(self) -> None:
        self.engine.engine.space.n_items  # noqa: B018


def build_app(args: dict[str, Any] | ServingArgs) -> Application:
    """The typed application builder: ``serve run serving.app:build_app bundle=...`` or the YAML."""
    config = (args if isinstance(args, ServingArgs) else ServingArgs.model_validate(args)).resolved()
    raw = config.model_dump(mode="json")
    updater = EmbeddingUpdater.options(num_replicas=config.updater_replicas).bind(raw)  # type: ignore[attr-defined]
    gateway = Gateway.options(num_replicas=config.gateway_replicas)  # type: ignore[attr-defined]
    return gateway.bind(updater, raw)
