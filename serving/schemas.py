"""Request and response bodies of the HTTP API (``/v1``), validated by pydantic.

Every limit is stated in the field's description, so the OpenAPI docs show it and a 422 names the
field that broke it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_BATCH_EVENTS = 1_000
MAX_K = 200
MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 10_000


class EventIn(BaseModel):
    """One interaction event, in the schema of ``recsys/data/schema.py``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user_id": "alice", "item_id": "1", "event_type": "like", "event_id": "alice-1"},
                {
                    "user_id": "bob",
                    "item_id": "2",
                    "event_type": "rating",
                    "value": 4.5,
                    "context": {"device": "tv"},
                },
            ]
        },
    )

    user_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="the acting user")
    item_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="the item acted on")
    event_type: str = Field(
        min_length=1, max_length=64, description="view, click, like, dislike, skip, add_to_cart, ..."
    )
    value: float | None = Field(default=None, description="a rating (for rating events) or a dwell time")
    timestamp: datetime | None = Field(default=None, description="when it happened (default: now, UTC)")
    event_id: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="unique id; a repeated id changes nothing"
    )
    request_id: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="the recommendation response this acts on"
    )
    context: dict[str, str] = Field(default_factory=dict, description="device, session_id, ...")

    @field_validator("event_type")
    @classmethod
    def _normalise_type(cls, value: str) -> str:
        return value.strip().lower()


class EventBatchIn(BaseModel):
    """A batch of events, applied in order."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(
        min_length=1, max_length=MAX_BATCH_EVENTS, description=f"1 to {MAX_BATCH_EVENTS} events"
    )


class EventAck(BaseModel):
    """What happened to one accepted event: it is durable when this is returned."""

    user_id: str
    event_id: str | None
    status: Literal["applied", "duplicate", "pending_item"]
    """``pending_item``: stored, but the item is not in the model yet; applied once it exists."""
    state_version: int


class EventsAck(BaseModel):
    acks: list[EventAck]


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    provenance: Literal["exploit", "explore", "promoted", "popular-fallback"]
    explanation: str
    title: str | None = None
    categories: list[str] = Field(default_factory=list)


class Recommendations(BaseModel):
    user_id: str
    request_id: str
    state_version: int
    items: list[RecommendedItem]
    variant: str | None = None
    """The A/B variant that served the page (``None`` when no experiment runs)."""
    experiment: str | None = None


class SimilarItems(BaseModel):
    item_id: str
    items: list[RecommendedItem]


class ItemIn(BaseModel):
    """An item's content; projected into the embedding space, so it is recommendable at once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"title": "Trail shoes", "text": "light and grippy", "categories": ["outdoor"]}]
        },
    )

    title: str = Field(default="", max_length=1_000)
    text: str = Field(default="", max_length=MAX_TEXT_LENGTH)
    categories: list[str] = Field(default_factory=list, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=200)
    attributes: dict[str, float] = Field(default_factory=dict, description="numeric attributes")


class ItemOut(BaseModel):
    item_id: str
    created: bool
    item_count: int


class PromotionIn(BaseModel):
    """A campaign: its items are blended into pages only where relevant enough to the user."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"item_ids": ["1", "2"], "relevance_floor": 0.2, "max_per_user": 2}]},
    )

    promotion_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    item_ids: list[str] = Field(min_length=1, max_length=1_000)
    relevance_floor: float = Field(default=0.0, ge=-1.0, le=1.0, description="minimum cosine to the user")
    max_per_user: int = Field(default=3, ge=1, le=1_000, description="exposures per user at most")
    slots: int = Field(default=1, ge=1, le=10, description="promoted slots per page at most")
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class PromotionOut(PromotionIn):
    promotion_id: str


class Health(BaseModel):
    status: Literal["ok"]
    details: dict[str, Any] = Field(default_factory=dict)
