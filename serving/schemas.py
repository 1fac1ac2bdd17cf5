"""Request and response bodies of the HTTP API (``/v1``), validated by pydantic.

Every limit is stated in the field's description, so the OpenAPI docs show it and a 422 names the
field that broke it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_BATCH_EVENTS = 1_000
MAX_K = 200
MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 10_000


def unencodable(value: Any, path: str = "") -> str | None:
    r"""The path (``context.device``, ``tags[2]``) of the first string in ``value``, a key or a value
    at any depth, that has no UTF-8 form; ``None`` when every string has one.

    JSON can spell half of a UTF-16 surrogate pair (``"\ud800"``); Python decodes it to a lone
    surrogate, which pydantic lets through plain ``str`` fields and no store can write.

    >>> unencodable({"context": {"device": "tv", "x": ["ok", "\ud800"]}})
    'context.x[1]'
    >>> print(unencodable({"attributes": {"\udfff": 1.0}}))
    attributes.\udfff
    """
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")  # the path is a message
            where = f"{path}.{name}" if path else name
            if isinstance(key, str) and not (key.isascii() or _encodes(key)):
                return where
            found = unencodable(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found = unencodable(item, f"{path}[{position}]")
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RequestBody(BaseModel):
    """A JSON request body: every string in it, keys included, must have a UTF-8 form (422 naming
    the field otherwise; such a string reached the store and failed there, as a 500)."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = unencodable(data)
        if where is not None:
            raise ValueError(
                f"{where}: a string holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
                "which is not Unicode text; send valid UTF-8"
            )
        return data


class EventIn(RequestBody):
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


class ItemIn(RequestBody):
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


class PromotionIn(RequestBody):
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
