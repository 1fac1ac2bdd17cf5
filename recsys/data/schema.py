"""The documented schema of Wayfinder's data: interaction events, items and users.

Interaction events (one row per user action)
--------------------------------------------
==============  =======================  ========  ================================================
column          type                     required  meaning
==============  =======================  ========  ================================================
``user_id``     string                   yes       the acting user, any string id
``item_id``     string                   yes       the item acted on, any string id
``event_type``  string                   yes       one of :class:`EventTypes` (view, click, ...)
``value``       float64                  no        a rating (``rating`` events) or a dwell time
``timestamp``   timestamp[ms, UTC]       yes       when it happened
``event_id``    string                   no        unique id of the event, for idempotency
``device``      string                   no        context: device class (mobile, desktop, tv ...)
``session_id``  string                   no        context: session the event belongs to
``text``        string                   no        review or comment text (feeds sentiment)
==============  =======================  ========  ================================================

Any other column is context and is kept as it is. Columns whose name starts with ``_`` are
reserved for Wayfinder's bookkeeping (``_source_file``, ``_source_row``, ``_reason``, ``_raw``).

Items (the catalogue)
---------------------
``item_id`` (string, required), ``title`` (string), ``text`` (string), ``categories`` (list of
strings), ``tags`` (list of strings), ``created_at`` (timestamp[ms, UTC]) and any numeric
attributes (float64 columns, e.g. ``price``, ``year``).

Users (optional)
----------------
``user_id`` (string, required) plus attributes of any type.

Event types and their weights
-----------------------------
Every event type has a signed default weight, used as the confidence of the interaction: positive
weights pull a user towards an item, negative ones (dislike, skip) push away. ``rating`` events take
their weight from ``value`` instead (see :mod:`recsys.features.weights`). The set and the weights are
configurable through :class:`EventTypes`.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
VALUE = "value"
TIMESTAMP = "timestamp"
EVENT_ID = "event_id"
DEVICE = "device"
SESSION_ID = "session_id"
TEXT = "text"

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP)
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = (VALUE, EVENT_ID, DEVICE, SESSION_ID, TEXT)
EVENT_COLUMNS: tuple[str, ...] = REQUIRED_EVENT_COLUMNS + OPTIONAL_EVENT_COLUMNS

# Bookkeeping columns added by readers and the cleaning steps.
SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"
REASON = "_reason"
RAW = "_raw"

TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")

EVENT_SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.string(), nullable=False),
        pa.field(ITEM_ID, pa.string(), nullable=False),
        pa.field(EVENT_TYPE, pa.string(), nullable=False),
        pa.field(VALUE, pa.float64()),
        pa.field(TIMESTAMP, TIMESTAMP_TYPE, nullable=False),
        pa.field(EVENT_ID, pa.string()),
        pa.field(DEVICE, pa.string()),
        pa.field(SESSION_ID, pa.string()),
        pa.field(TEXT, pa.string()),
    ]
)

ITEM_ID_COL = ITEM_ID
TITLE = "title"
CATEGORIES = "categories"
TAGS = "tags"
CREATED_AT = "created_at"

ITEM_SCHEMA = pa.schema(
    [
        pa.field(ITEM_ID, pa.string(), nullable=False),
        pa.field(TITLE, pa.string()),
        pa.field(TEXT, pa.string()),
        pa.field(CATEGORIES, pa.list_(pa.string())),
        pa.field(TAGS, pa.list_(pa.string())),
        pa.field(CREATED_AT, TIMESTAMP_TYPE),
    ]
)
"""Core item columns; numeric attribute columns (float64) may follow."""

USER_SCHEMA = pa.schema([pa.field(USER_ID, pa.string(), nullable=False)])
"""Core user columns; any attribute columns may follow."""

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 0.5,
    "click": 1.0,
    "like": 3.0,
    "dislike": -3.0,
    "skip": -0.5,
    "add_to_cart": 2.0,
    "purchase": 5.0,
    "rating": 1.0,
    "share": 2.5,
}
"""Signed default weight of each event type. ``rating`` is scaled by its value."""


class EventTypes(BaseModel):
    """The known event types and each type's signed weight.

    Examples
    --------
    >>> types = EventTypes(weights={"view": 0.2, "purchase": 4.0})
    >>> types.weight("purchase")
    4.0
    >>> types.is_known("rating")
    False
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    rating_type: str = "rating"
    """The event type whose ``value`` is an explicit rating."""

    @field_validator("weights")
    @classmethod
    def _non_empty(cls, value: Mapping[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one event type is needed")
        bad = [name for name in value if not name or name != name.strip().lower()]
        if bad:
            raise ValueError(f"event type names must be lower-case and trimmed, got {bad}")
        return dict(value)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.weights)

    def is_known(self, event_type: str) -> bool:
        return event_type in self.weights

    def weight(self, event_type: str) -> float:
        return self.weights[event_type]

    def is_negative(self, event_type: str) -> bool:
        return self.weights.get(event_type, 0.0) < 0.0
