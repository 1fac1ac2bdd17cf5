"""The manifest written next to a synthetic dataset: its config, row counts and exact dirt counts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from recsys.data.synthetic.config import SyntheticConfig


class EventDirtCounts(BaseModel):
    """Exact number of injected event rows of each dirt kind (each row carries one fault).

    Examples
    --------
    >>> EventDirtCounts(missing_user_id=3, bot_users=1, bot_events=1200).rows()
    1203
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    malformed_row: int = 0
    malformed_timestamp: int = 0
    malformed_value: int = 0
    missing_user_id: int = 0
    missing_item_id: int = 0
    missing_event_type: int = 0
    missing_timestamp: int = 0
    unknown_event_type: int = 0
    value_out_of_range: int = 0
    impossible_timestamp: int = 0
    exact_duplicate: int = 0
    event_id_replay: int = 0
    near_duplicate: int = 0
    bot_users: int = 0
    """Number of bot users."""
    bot_events: int = 0
    """Rows of all bot users together."""

    def rows(self) -> int:
        """All injected rows (``bot_users`` counts users, not rows)."""
        return sum(value for name, value in self if name != "bot_users")


class ItemDirtCounts(BaseModel):
    """Exact number of items with each fault; the sets of items are disjoint.

    Examples
    --------
    >>> ItemDirtCounts(missing_title=2).duplicate
    0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    missing_title: int = 0
    missing_text: int = 0
    missing_price: int = 0
    missing_year: int = 0
    duplicate: int = 0
    """Items written twice; each adds one row."""


class TableFiles(BaseModel):
    """Row count and files (relative to the output directory) of one table.

    Examples
    --------
    >>> TableFiles(rows=10, files=["users/part-00000.parquet"]).files[0]
    'users/part-00000.parquet'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int
    files: list[str]


class SyntheticManifest(BaseModel):
    """What :func:`recsys.data.synthetic.generate` wrote, mirrored in ``manifest.json``.

    Examples
    --------
    >>> from recsys.data.synthetic import DirtConfig, SyntheticConfig, generate
    >>> manifest = generate(SyntheticConfig(n_events=10_000, dirt=DirtConfig.none()), "/tmp/wf-doc")
    ... # doctest: +SKIP
    >>> manifest.clean_events  # doctest: +SKIP
    10000
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    generator: str = "wayfinder.synthetic/1"
    config: SyntheticConfig
    """The resolved config (derived sizes filled in)."""
    clean_events: int
    """Clean event rows; the events table has ``clean_events + injected.rows()`` rows."""
    clean_users: int
    """Users with clean events (every one has at least one)."""
    events: TableFiles
    items: TableFiles
    users: TableFiles
    """Clean users and bot users (bots are accounts too)."""
    injected: EventDirtCounts
    injected_items: ItemDirtCounts
    bot_user_ids: list[str]
