"""Validated configuration of the synthetic data generator."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Format = Literal["parquet", "csv", "jsonl"]

EARLIEST_START = datetime(1996, 1, 1, tzinfo=timezone.utc)
"""Clean timestamps stay after this; ``impossible_timestamp`` dirt is before 1995-01-01."""

BOT_MIN_GAP_S = 0.8
"""Smallest gap between two events of a bot user (bots fire about one event per second)."""


class DirtConfig(BaseModel):
    """How much dirt to inject; every dirty row carries exactly one fault.

    Event-level fields are fractions of ``n_events`` (the exact resulting counts are recorded in the
    manifest); item-level fields are fractions of ``n_items``. Use :meth:`none` for clean data.

    Examples
    --------
    >>> DirtConfig.none().bot_users
    0
    >>> DirtConfig(exact_duplicate=0.01).near_duplicate
    0.002
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    malformed_row: float = Field(default=0.0005, ge=0.0, le=0.1)
    """CSV: a line with the wrong number of fields; JSONL: a line that is not JSON. Not for Parquet."""
    malformed_timestamp: float = Field(default=0.0005, ge=0.0, le=0.1)
    """CSV/JSONL only: timestamp text that is not a date (``not-a-date``)."""
    malformed_value: float = Field(default=0.0005, ge=0.0, le=0.1)
    """CSV/JSONL only: value text that is not a number (``abc``)."""
    missing_user_id: float = Field(default=0.001, ge=0.0, le=0.1)
    missing_item_id: float = Field(default=0.001, ge=0.0, le=0.1)
    missing_event_type: float = Field(default=0.0005, ge=0.0, le=0.1)
    missing_timestamp: float = Field(default=0.0005, ge=0.0, le=0.1)
    unknown_event_type: float = Field(default=0.001, ge=0.0, le=0.1)
    """An event type outside the default set, e.g. ``teleport``."""
    value_out_of_range: float = Field(default=0.0005, ge=0.0, le=0.1)
    """A ``rating`` event whose value is outside [0.5, 5.0]."""
    impossible_timestamp: float = Field(default=0.0005, ge=0.0, le=0.1)
    """Before 1995-01-01, or in the far future (2200 or later, and over a day after ``end``)."""
    exact_duplicate: float = Field(default=0.002, ge=0.0, le=0.1)
    """An identical copy (event_id included) of a clean event."""
    event_id_replay: float = Field(default=0.001, ge=0.0, le=0.1)
    """A copy with the same event_id, user, item and type, 1-3 hours later."""
    near_duplicate: float = Field(default=0.002, ge=0.0, le=0.1)
    """A copy with a new event_id, 1 to ``dedup_window_s - 1`` seconds later."""
    bot_users: int | None = Field(default=None, ge=0)
    """Extra users firing about one event per second; ``None``: one per 2,000 users (at least 1)."""
    bot_events_min: int = Field(default=1000, ge=30)
    bot_events_max: int = Field(default=3000, ge=30)
    item_missing_title: float = Field(default=0.01, ge=0.0, le=0.2)
    item_missing_text: float = Field(default=0.01, ge=0.0, le=0.2)
    item_missing_price: float = Field(default=0.02, ge=0.0, le=0.2)
    item_missing_year: float = Field(default=0.02, ge=0.0, le=0.2)
    item_duplicate: float = Field(default=0.005, ge=0.0, le=0.2)
    """Items written twice (identical rows, same item_id)."""

    @classmethod
    def none(cls) -> DirtConfig:
        """A configuration that injects no dirt at all."""
        zero: dict[str, float] = dict.fromkeys(EVENT_DIRT_KINDS + tuple(ITEM_DIRT_FIELDS.values()), 0.0)
        return cls.model_validate({**zero, "bot_users": 0})

    @model_validator(mode="after")
    def _consistent(self) -> DirtConfig:
        if self.bot_events_min > self.bot_events_max:
            raise ValueError("bot_events_min must not exceed bot_events_max")
        event_total = sum(getattr(self, kind) for kind in EVENT_DIRT_KINDS)
        if event_total > 0.3:
            raise ValueError(f"event dirt fractions sum to {event_total:.3f}; keep the sum <= 0.3")
        item_total = sum(getattr(self, name) for name in ITEM_DIRT_FIELDS.values())
        if item_total > 0.5:
            raise ValueError(f"item dirt fractions sum to {item_total:.3f}; keep the sum <= 0.5")
        return self


EVENT_DIRT_KINDS: tuple[str, ...] = (
    "malformed_row",
    "malformed_timestamp",
    "malformed_value",
    "missing_user_id",
    "missing_item_id",
    "missing_event_type",
    "missing_timestamp",
    "unknown_event_type",
    "value_out_of_range",
    "impossible_timestamp",
    "exact_duplicate",
    "event_id_replay",
    "near_duplicate",
)
"""Row-level dirt kinds, in the order the cleaning step checks them (bots come last)."""

TEXT_ONLY_KINDS: frozenset[str] = frozenset({"malformed_row", "malformed_timestamp", "malformed_value"})

ITEM_DIRT_FIELDS: dict[str, str] = {
    "missing_title": "item_missing_title",
    "missing_text": "item_missing_text",
    "missing_price": "item_missing_price",
    "missing_year": "item_missing_year",
    "duplicate": "item_duplicate",
}
"""Item dirt kind (manifest name) -> fraction field of :class:`DirtConfig`."""


class SyntheticConfig(BaseModel):
    """Everything that determines a synthetic dataset; the same config gives the same bytes.

    Parameters
    ----------
    seed:
        Seed of every random draw.
    n_events:
        Number of clean events (dirt rows come on top).
    n_users, n_items:
        Catalogue sizes; ``None`` derives them from ``n_events`` (``n_events / 50`` users and
        ``n_events / 100`` items, bounded).
    n_clusters:
        Latent taste clusters; every item belongs to one (its topic), every user mixes two.
    popularity_exponent:
        Zipf exponent of item popularity (within a cluster).
    negative_fraction:
        Approximate share of clean events that are negative (dislike, skip).
    review_fraction:
        Share of ``rating`` events that carry a review ``text``.
    start, end:
        Time range of clean events (UTC; naive datetimes are taken as UTC).
    format:
        ``parquet``, ``csv`` or ``jsonl``; events, items and users all use it.
    chunk_rows:
        Rows per output file.
    dedup_window_s:
        Window of the cleaning step's near-duplicate rule; clean events of the same
        (user, item, type) are at least twice this apart.
    dirt:
        What dirt to inject.

    Examples
    --------
    >>> config = SyntheticConfig(n_events=20_000, seed=7).resolved()
    >>> (config.n_users, config.n_items)
    (400, 200)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, ge=0)
    n_events: int = Field(default=1_000_000, ge=10_000, le=1_000_000_000)
    n_users: int | None = Field(default=None, ge=50)
    n_items: int | None = Field(default=None, ge=100)
    n_clusters: int = Field(default=20, ge=2, le=500)
    popularity_exponent: float = Field(default=1.1, ge=0.0, le=3.0)
    negative_fraction: float = Field(default=0.05, ge=0.0, le=0.5)
    review_fraction: float = Field(default=0.4, ge=0.0, le=1.0)
    start: datetime = datetime(2024, 1, 1, tzinfo=timezone.utc)
    end: datetime = datetime(2025, 1, 1, tzinfo=timezone.utc)
    format: Format = "parquet"
    chunk_rows: int = Field(default=1_000_000, ge=1_000)
    dedup_window_s: int = Field(default=30, ge=2, le=3600)
    dirt: DirtConfig = Field(default_factory=DirtConfig)

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticConfig:
        if self.start < EARLIEST_START:
            raise ValueError(f"start must be on or after {EARLIEST_START.date()}")
        if self.end.year > 9000:
            raise ValueError("end must be before the year 9000")
        if (self.end - self.start).total_seconds() < 7 * 86_400:
            raise ValueError("the time range from start to end must span at least 7 days")
        if self.n_users is not None and self.n_users > self.n_events:
            raise ValueError("n_users must not exceed n_events (every user has at least one event)")
        items = self.n_items if self.n_items is not None else _derived_items(self.n_events)
        if items < 2 * self.n_clusters:
            raise ValueError(
                f"n_items={items} is too small for {self.n_clusters} clusters (need 2 per cluster)"
            )
        users = self.n_users if self.n_users is not None else _derived_users(self.n_events)
        bots = self.dirt.bot_users if self.dirt.bot_users is not None else _derived_bots(users)
        if bots * self.dirt.bot_events_max > self.n_events:
            raise ValueError(
                f"{bots} bots of up to {self.dirt.bot_events_max} events could outnumber the "
                f"{self.n_events} clean events; use fewer bots or fewer events per bot"
            )
        if 2 * items < self.bot_item_cycle():
            raise ValueError(
                f"dedup_window_s={self.dedup_window_s} needs at least {math.ceil(self.bot_item_cycle() / 2)}"
                " items so that bot events never look like near-duplicates"
            )
        return self

    def bot_item_cycle(self) -> int:
        """How many distinct (item, type) pairs a bot cycles through before repeating one."""
        return math.ceil(2 * self.dedup_window_s / BOT_MIN_GAP_S) + 2

    def resolved(self) -> SyntheticConfig:
        """This config with every ``None`` replaced by its derived value."""
        users = self.n_users if self.n_users is not None else _derived_users(self.n_events)
        items = self.n_items if self.n_items is not None else _derived_items(self.n_events)
        bots = self.dirt.bot_users if self.dirt.bot_users is not None else _derived_bots(users)
        dirt = self.dirt.model_copy(update={"bot_users": bots})
        return self.model_copy(update={"n_users": users, "n_items": items, "dirt": dirt})


def _derived_users(n_events: int) -> int:
    return int(min(max(n_events // 50, 200), 5_000_000))


def _derived_bots(n_users: int) -> int:
    return max(1, n_users // 2000)


def _derived_items(n_events: int) -> int:
    return int(min(max(n_events // 100, 100), 2_000_000))
