"""Dirt: how many rows of each kind go into each chunk, the dirty rows, and the bots' rows.

Each dirty row is built from a clean row of its chunk and carries exactly one fault, so the cleaning
step, applying its checks in order, counts exactly what the manifest says. Copies (duplicates,
replays, near-duplicates) are placed after their source in the file and are never earlier in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.synthetic._events import (
    BOT_FAULT,
    BOT_SESSION_BASE,
    EVENT_TYPES,
    N_KNOWN_TYPES,
    NULL_TS,
    Events,
)
from recsys.data.synthetic._world import TAG_BOT, World
from recsys.data.synthetic.config import EVENT_DIRT_KINDS, TEXT_ONLY_KINDS, SyntheticConfig
from recsys.data.synthetic.manifest import EventDirtCounts

KEEPS_EVENT_ID = frozenset({"exact_duplicate", "event_id_replay"})
_RATING, _VIEW, _CLICK = (EVENT_TYPES.index(t) for t in ("rating", "view", "click"))
_OUT_OF_RANGE_VALUES = np.array([7.0, -1.0, 5.5, 10.0, 0.0, 6.5])
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_EPOCH_1995_MS = 788_918_400_000
_YEAR_2200_MS = 7_258_118_400_000


def fault_code(kind: str) -> int:
    return 1 + EVENT_DIRT_KINDS.index(kind)


def dirt_counts(config: SyntheticConfig, bot_events: np.ndarray) -> EventDirtCounts:
    """Exact counts of each kind for a resolved config (text-only kinds are 0 for Parquet)."""
    counts = {
        kind: 0
        if config.format == "parquet" and kind in TEXT_ONLY_KINDS
        else round(getattr(config.dirt, kind) * config.n_events)
        for kind in EVENT_DIRT_KINDS
    }
    return EventDirtCounts(**counts, bot_users=len(bot_events), bot_events=int(bot_events.sum()))


@dataclass(frozen=True)
class ChunkPlan:
    """Rows of one events file: how many clean rows, dirty rows of each kind, and bot rows."""

    index: int
    rows: int
    clean: int
    dirt: dict[str, int]
    bot_rows: tuple[int, int]
    """Global range of bot rows in this chunk (bot rows are numbered bot after bot)."""


def plan_chunks(n_clean: int, counts: EventDirtCounts, chunk_rows: int) -> list[ChunkPlan]:
    """Split all rows into files of ``chunk_rows`` and spread every dirt kind proportionally."""
    per_kind = {kind: getattr(counts, kind) for kind in EVENT_DIRT_KINDS}
    total = n_clean + sum(per_kind.values()) + counts.bot_events
    plans = []
    for index, first in enumerate(range(0, total, chunk_rows)):
        last = min(first + chunk_rows, total)

        def share(count: int, lo: int = first, hi: int = last) -> int:
            return count * hi // total - count * lo // total

        dirt = {kind: share(count) for kind, count in per_kind.items()}
        bot_lo, bot_hi = counts.bot_events * first // total, counts.bot_events * last // total
        clean = last - first - sum(dirt.values()) - (bot_hi - bot_lo)
        plans.append(ChunkPlan(index, last - first, clean, dirt, (bot_lo, bot_hi)))
    return plans


def new_id_count(counts: EventDirtCounts) -> int:
    """How many dirty rows (bots excluded) get a fresh event id."""
    return sum(getattr(counts, kind) for kind in EVENT_DIRT_KINDS if kind not in KEEPS_EVENT_ID)


def dirty_rows(
    world: World, plan: ChunkPlan, pool: Events, next_num: int, bot_num_base: int, rng: np.random.Generator
) -> tuple[Events, np.ndarray, int]:
    """The chunk's row-level dirt, each row's insertion slot (before clean row ``slot``), and the next
    free event number. ``pool`` is the chunk's clean rows (or the previous chunk's if it has none)."""
    parts: list[Events] = []
    slots: list[np.ndarray] = []
    window_s = world.config.dedup_window_s
    for kind in EVENT_DIRT_KINDS:
        d = plan.dirt[kind]
        if d == 0:
            continue
        source = rng.integers(0, len(pool), size=d)
        rows = pool.take(source)
        rows.fault[:] = fault_code(kind)
        if kind not in KEEPS_EVENT_ID:
            rows.event_num[:] = next_num + np.arange(d)
            next_num += d
        if kind == "missing_user_id":
            rows.user[:] = -1
        elif kind == "missing_item_id":
            rows.item[:] = -1
        elif kind == "missing_event_type":
            rows.event_type[:] = -1
        elif kind == "missing_timestamp":
            rows.timestamp[:] = NULL_TS
        elif kind == "unknown_event_type":
            rows.event_type[:] = rng.integers(N_KNOWN_TYPES, len(EVENT_TYPES), size=d)
        elif kind == "value_out_of_range":
            rows.event_type[:] = _RATING
            rows.value[:] = rng.choice(_OUT_OF_RANGE_VALUES, size=d)
        elif kind == "impossible_timestamp":
            past = rng.integers(0, _EPOCH_1995_MS - _DAY_MS, size=d)
            # Far future (from 2200 on): impossible whether "now" is the configured end or today.
            future = max(world.end_ms, _YEAR_2200_MS) + rng.integers(2 * _DAY_MS, 50 * 365 * _DAY_MS, size=d)
            rows.timestamp[:] = np.where(rng.random(d) < 0.5, past, future)
        elif kind == "event_id_replay":
            rows.timestamp[:] += rng.integers(_HOUR_MS, 3 * _HOUR_MS + 1, size=d)
        elif kind == "near_duplicate":
            rows.timestamp[:] += 1000 * rng.integers(1, window_s, size=d)
        parts.append(rows)
        own_chunk = plan.clean > 0
        low = source + 1 if own_chunk else np.zeros(d, dtype=np.int64)
        slots.append(rng.integers(low, plan.clean + 1))
    bots = bot_rows(world, *plan.bot_rows, bot_num_base)
    parts.append(bots)
    slots.append(np.sort(rng.integers(0, plan.clean + 1, size=len(bots))))
    return Events.concat(parts), np.concatenate(slots), next_num


def bot_rows(world: World, first: int, last: int, num_base: int) -> Events:
    """Bot rows ``first..last-1`` of the global bot sequence (bot 0's rows, then bot 1's, ...).

    A bot fires a view or click every 0.8-1.2 s and cycles through enough (item, type) pairs that the
    same pair never comes back within ``2 * dedup_window_s``: its rows are valid and not duplicates.
    Event numbers are ``num_base`` plus the global bot row number.
    """
    if last <= first:
        return Events.empty(0)
    config = world.config
    ends = np.cumsum(world.bot_events)
    starts = ends - world.bot_events
    parts = []
    for bot in range(int(np.searchsorted(ends, first, side="right")), len(ends)):
        if starts[bot] >= last:
            break
        rng = np.random.default_rng([config.seed, TAG_BOT, bot])
        n = int(world.bot_events[bot])
        cycle_items = -(-config.bot_item_cycle() // 2)
        chosen = rng.choice(world.n_items, size=min(world.n_items, max(cycle_items, 100)), replace=False)
        pairs = np.stack([np.tile(chosen, 2), np.repeat([_VIEW, _CLICK], len(chosen))], axis=1)
        pairs = pairs[rng.permutation(len(pairs))]
        events = Events.empty(n)
        events.user[:] = world.n_users + bot
        events.item[:] = pairs[np.arange(n) % len(pairs), 0]
        events.event_type[:] = pairs[np.arange(n) % len(pairs), 1]
        gaps = rng.integers(800, 1201, size=n)
        events.timestamp[:] = world.bot_start_ms[bot] + np.cumsum(gaps) - gaps[0]
        is_view = events.event_type == _VIEW
        events.value[is_view] = np.round(rng.uniform(0.1, 1.0, size=int(is_view.sum())), 1)
        events.device[:] = 1
        events.session[:] = BOT_SESSION_BASE + bot
        events.event_num[:] = num_base + starts[bot] + np.arange(n)
        events.fault[:] = BOT_FAULT
        lo, hi = max(first, int(starts[bot])), min(last, int(ends[bot]))
        parts.append(events.take(slice(lo - int(starts[bot]), hi - int(starts[bot]))))
    return Events.concat(parts)


def merge(clean: Events, dirt: Events, slots: np.ndarray) -> Events:
    """Clean rows in order with each dirty row inserted before clean row ``slot`` (stable)."""
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    n = len(clean) + len(dirt)
    out = Events.empty(n)
    dirt_pos = sorted_slots + np.arange(len(dirt))
    clean_pos = np.arange(len(clean)) + np.searchsorted(sorted_slots, np.arange(len(clean)), side="right")
    out.scatter(clean_pos, clean)
    out.scatter(dirt_pos, dirt.take(order))
    return out
