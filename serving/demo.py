"""The live demo page (``/demo``) and the read endpoints it needs: catalogue search and the item map.

The page is three static files in ``serving/static/`` (HTML, JS, CSS; no build step, nothing
fetched from elsewhere). It calls the same public API every client uses (``POST /v1/events``,
``GET .../recommendations``, ``GET .../intent``) plus three read endpoints defined here:

* ``GET /v1/items?query=&category=&offset=&limit=``: a page of the catalogue, most popular first.
* ``GET /v1/items/map?max_points=``: a PCA projection of the item vectors to two dimensions.
* ``GET /v1/users/{id}/map``: the user's profile and interests projected with the same PCA.

The routes live on :class:`DemoRoutes`, a mixin of the ingress (``Gateway``), so they run in the
gateway replica over its engine, like every other read. The PCA is fitted once per replica.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path as FilePath
from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from recsys.engine import Engine
from recsys.engine.catalogue import Catalogue
from recsys.engine.item_map import PlanarProjection, map_sample, primary_categories, user_map
from serving import schemas as s
from serving.auth import needs

STATIC = FilePath(__file__).resolve().parent / "static"
ASSETS = {"demo.js": "text/javascript", "demo.css": "text/css"}
MAX_PAGE = 200
MAX_MAP_POINTS = 20_000
DEFAULT_MAP_POINTS = 3_000

router = APIRouter()


class CatalogueItem(BaseModel):
    item_id: str
    title: str
    categories: list[str]


class Facet(BaseModel):
    name: str
    count: int


class CatalogueOut(BaseModel):
    """A page of the catalogue, and how the query's matches spread over categories."""

    total: int = Field(description="items matching the query and category")
    offset: int
    limit: int
    items: list[CatalogueItem]
    facets: list[Facet] = Field(description="categories of the query's matches, largest first")


class ItemMapOut(BaseModel):
    """Items on a plane: parallel arrays, one entry per drawn item."""

    n_items: int = Field(description="items in the catalogue (the map draws at most max_points)")
    explained_variance: list[float] = Field(description="share of the variance along x and y")
    item_ids: list[str]
    x: list[float]
    y: list[float]
    category: list[str] = Field(
        description="the category each item is coloured by: its rarest ('' without any)"
    )
    title: list[str]


class _Runner(Protocol):
    """The gateway's engine wrapper: runs a call on the engine under its lock, in a thread."""

    engine: Engine

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]: ...


class DemoViews:
    """Per-replica caches for the demo: the fitted PCA (kept for the replica's life, so the map does
    not move when items are added) and the catalogue index (rebuilt when the space changes)."""

    def __init__(self) -> None:
        self._projection: PlanarProjection | None = None
        self._projected: object | None = None
        self._catalogue: tuple[str, int, Catalogue] | None = None
        self._maps: dict[tuple[str, int, int], ItemMapOut] = {}  # a page load asks for the same map

    def projection(self, engine: Engine) -> PlanarProjection:
        """Fitted once per space (a hot swap brings a new one)."""
        if self._projection is None or self._projected is not engine.space:
            self._projection = PlanarProjection.fit(engine.space.unit)
            self._projected = engine.space
        return self._projection

    def catalogue(self, engine: Engine) -> Catalogue:
        space = engine.space
        key = (space.fingerprint, space.n_items)
        if self._catalogue is None or self._catalogue[:2] != key:
            ids = [engine.item_id(i) for i in range(space.n_items)]
            self._catalogue = (*key, Catalogue.from_space(space, ids))
        return self._catalogue[2]

    def items(
        self, engine: Engine, query: str, category: str | None, offset: int, limit: int
    ) -> CatalogueOut:
        catalogue = self.catalogue(engine)
        if category is not None and not catalogue.has_category(category):
            known = catalogue.category_names()
            _invalid("category", category, f"unknown category {category!r}; known: {known[:30]}")
        page = catalogue.search(query, category=category, offset=offset, limit=limit)
        return CatalogueOut(
            total=page.total,
            offset=offset,
            limit=limit,
            items=[
                CatalogueItem(
                    item_id=catalogue.item_ids[i],
                    title=catalogue.titles[i],
                    categories=list(catalogue.categories[i]),
                )
                for i in page.items.tolist()
            ],
            facets=[Facet(name=name, count=count) for name, count in page.facets],
        )

    def item_map(self, engine: Engine, max_points: int) -> ItemMapOut:
        space = engine.space
        key = (space.fingerprint, space.n_items, max_points)
        if key not in self._maps:
            if len(self._maps) >= 4:
                self._maps.pop(next(iter(self._maps)))
            self._maps[key] = self._item_map(engine, max_points)
        return self._maps[key]

    def _item_map(self, engine: Engine, max_points: int) -> ItemMapOut:
        space = engine.space
        projection = self.projection(engine)
        chosen = map_sample(space.prior.overall[: space.n_items], max_points)
        chosen = chosen[abs(space.unit[chosen]).sum(axis=1) > 0]  # items without a vector have no place
        points = projection.project(space.unit[chosen]).round(5)
        meta = space.metadata
        return ItemMapOut(
            n_items=space.n_items,
            explained_variance=[round(v, 4) for v in projection.explained],
            item_ids=[engine.item_id(i) for i in chosen.tolist()],
            x=points[:, 0].tolist(),
            y=points[:, 1].tolist(),
            category=primary_categories(space, chosen),
            title=[meta.label(i) if meta is not None else engine.item_id(i) for i in chosen.tolist()],
        )

    def user_map(self, engine: Engine, user_id: str) -> dict[str, Any]:
        state, version = engine.state(user_id)
        found = user_map(engine.space, state, self.projection(engine), engine.item_id)
        return found | {"user_id": user_id, "state_version": version}


def _invalid(field: str, value: object, message: str) -> None:
    """A 422 in FastAPI's own shape, naming the query parameter."""
    raise RequestValidationError(
        [{"loc": ("query", field), "msg": message, "type": "value_error", "input": value}]
    )


class DemoRoutes:
    """Mixed into the ingress; ``self.engine`` is the gateway's locked engine."""

    engine: _Runner
    pseudonym: Callable[[str], str]
    _demo_views: DemoViews | None = None

    def _views(self) -> DemoViews:
        if self._demo_views is None:
            self._demo_views = DemoViews()
        return self._demo_views

    @router.get("/demo", include_in_schema=False)
    async def demo_page(self) -> FileResponse:
        """The demo page (open it in a browser)."""
        return FileResponse(STATIC / "demo.html", media_type="text/html")

    @router.get("/demo/{asset}", include_in_schema=False)
    async def demo_asset(self, asset: str) -> FileResponse:
        if asset not in ASSETS:
            raise HTTPException(404, detail=f"no demo asset {asset!r}")
        return FileResponse(STATIC / asset, media_type=ASSETS[asset])

    @router.get(
        "/v1/items", response_model=CatalogueOut, tags=["items"], dependencies=needs("recommendations:read")
    )
    async def catalogue(
        self,
        query: str = Query(
            "", max_length=200, description="words that must all occur in title, id, categories or tags"
        ),
        category: str | None = Query(None, max_length=200, description="only items of this category"),
        offset: int = Query(0, ge=0, le=10_000_000, description="index of the first match to return"),
        limit: int = Query(24, ge=1, le=MAX_PAGE, description=f"page size, 1 to {MAX_PAGE}"),
    ) -> CatalogueOut:
        """Browse or search the catalogue, most popular first, with category facets."""
        views = self._views()
        result: CatalogueOut = await self.engine(
            views.items, self.engine.engine, query, category or None, offset, limit
        )
        return result

    @router.get(
        "/v1/items/map", response_model=ItemMapOut, tags=["items"], dependencies=needs("recommendations:read")
    )
    async def item_map(
        self,
        max_points: int = Query(
            DEFAULT_MAP_POINTS, ge=1, le=MAX_MAP_POINTS, description=f"items drawn, 1 to {MAX_MAP_POINTS}"
        ),
    ) -> ItemMapOut:
        """The most popular items projected on the two principal axes of the item vectors."""
        views = self._views()
        result: ItemMapOut = await self.engine(views.item_map, self.engine.engine, max_points)
        return result

    @router.get(
        "/v1/users/{user_id}/map", tags=["recommendations"], dependencies=needs("recommendations:read")
    )
    async def user_map(self, user_id: str = Path(min_length=1, max_length=s.MAX_ID_LENGTH)) -> dict[str, Any]:
        """The user's profile (``position``), interests and recent signals on the item map; ``position``
        is null until an event gave them an interest."""
        views = self._views()
        found: dict[str, Any] = await self.engine(views.user_map, self.engine.engine, self.pseudonym(user_id))
        return found | {"user_id": user_id}  # the store knows the pseudonym; the client its own id
