"""The generator's entry point: draws the world, streams event chunks, writes items, users, manifest."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np

from recsys.data.storage import Location
from recsys.data.synthetic._dirt import (
    dirt_counts,
    dirty_rows,
    fault_code,
    merge,
    new_id_count,
    plan_chunks,
)
from recsys.data.synthetic._events import EventQueue, Events
from recsys.data.synthetic._render import FieldOverrides, write_batches, write_table
from recsys.data.synthetic._sessions import block_events
from recsys.data.synthetic._tables import (
    ITEM_FILE_SCHEMA,
    USER_FILE_SCHEMA,
    ItemRenderer,
    events_table,
    users_table,
)
from recsys.data.synthetic._world import TAG_BLOCK, TAG_CHUNK, TAG_ITEMS, World, build_world
from recsys.data.synthetic.config import ITEM_DIRT_FIELDS, SyntheticConfig
from recsys.data.synthetic.manifest import ItemDirtCounts, SyntheticManifest, TableFiles
from recsys.errors import ConfigError

ProgressCallback = Callable[[int, int], None]

BLOCK_EVENTS = 200_000
"""Clean events generated per block of users (independent of ``chunk_rows``)."""
BAD_TIMESTAMPS: tuple[str, ...] = ("not-a-date", "yesterday", "2024-13-45T25:61:00Z", "soon")
BAD_VALUES: tuple[str, ...] = ("abc", "five stars", "--", "1.2.3")
BROKEN_CSV_TEXT = "nice, but slow"
"""An unquoted comma: the line gets one field too many."""
_OUTPUTS = ("events", "items", "users", "manifest.json")
_TABLE_BATCH = 65_536
"""Items and users are rendered this many rows at a time (item texts are the bulk of memory)."""


def generate(
    config: SyntheticConfig,
    out: str,
    *,
    on_progress: ProgressCallback | None = None,
    overwrite: bool = False,
) -> SyntheticManifest:
    """Generate a dataset into ``out`` (a local path or a pyarrow filesystem URI).

    Writes ``events/part-NNNNN.<ext>``, ``items/part-NNNNN.<ext>``, ``users/part-NNNNN.<ext>`` (each
    file at most ``config.chunk_rows`` rows) and ``manifest.json``, and returns the manifest. Memory
    stays O(chunk_rows + n_users + n_items) whatever ``n_events``. ``on_progress(rows_written,
    rows_total)`` is called after each events file.

    Raises
    ------
    ConfigError
        If ``out`` already holds a dataset and ``overwrite`` is false, or the config cannot be met.
    """
    resolved = config.resolved()
    root = Location.parse(out)
    _prepare(root, overwrite)
    world = build_world(resolved)
    counts = dirt_counts(resolved, world.bot_events)
    plans = plan_chunks(resolved.n_events, counts, resolved.chunk_rows)
    ext = resolved.format
    events_dir = root.child("events").mkdir()
    total = sum(plan.rows for plan in plans)
    written = 0
    files: list[str] = []
    blocks = _clean_blocks(world)
    queue = EventQueue()
    previous = Events.empty(0)
    next_num = resolved.n_events
    bot_base = resolved.n_events + new_id_count(counts)
    clean_num = 0
    for plan in plans:
        while len(queue) < plan.clean:
            queue.push(next(blocks))
        clean = queue.pop(plan.clean)
        clean.event_num[:] = clean_num + np.arange(len(clean))
        clean_num += len(clean)
        pool = clean if len(clean) else previous
        rng = np.random.default_rng([resolved.seed, TAG_CHUNK, plan.index])
        dirt, slots, next_num = dirty_rows(world, plan, pool, next_num, bot_base, rng)
        rows = merge(clean, dirt, slots)
        name = f"part-{plan.index:05d}.{ext}"
        overrides, truncate = _broken_text(rows, resolved)
        write_table(
            events_dir.child(name), events_table(world, rows), ext, overrides=overrides, truncate=truncate
        )
        files.append(f"events/{name}")
        written += plan.rows
        previous = clean
        if on_progress is not None:
            on_progress(written, total)
    assert clean_num == resolved.n_events and len(queue) == 0

    items, item_counts = _write_items(world, root)
    users = _write_users(world, root)
    manifest = SyntheticManifest(
        config=resolved,
        clean_events=resolved.n_events,
        clean_users=world.n_users,
        events=TableFiles(rows=total, files=files),
        items=items,
        users=users,
        injected=counts,
        injected_items=item_counts,
        bot_user_ids=world.user_ids[world.n_users :].to_pylist(),
    )
    with root.fs.open_output_stream(root.child("manifest.json").path) as stream:
        stream.write(manifest.model_dump_json(indent=2).encode("utf-8") + b"\n")
    return manifest


def _prepare(root: Location, overwrite: bool) -> None:
    existing = [name for name in _OUTPUTS if root.child(name).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{root.uri} already holds {', '.join(existing)}; "
            "choose an empty directory or pass overwrite=True"
        )
    for name in existing:
        root.child(name).remove()
    root.mkdir()


def _clean_blocks(world: World) -> Iterator[Events]:
    """Clean events, block of users after block; session numbers are global and increasing."""
    cumulative = np.cumsum(world.user_events)
    cuts = np.searchsorted(
        cumulative, np.arange(BLOCK_EVENTS, int(cumulative[-1]), BLOCK_EVENTS), side="left"
    )
    bounds = np.unique(np.concatenate([[0], cuts + 1, [world.n_users]]))
    session_base = 0
    for index, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        rng = np.random.default_rng([world.config.seed, TAG_BLOCK, index])
        events = block_events(world, np.arange(lo, hi), rng)
        events.session += session_base
        session_base = int(events.session.max()) + 1
        yield events


def _broken_text(rows: Events, config: SyntheticConfig) -> tuple[FieldOverrides, np.ndarray | None]:
    """Field texts of the text-only faults (CSV/JSON lines), and the JSON lines to cut in half."""
    if config.format == "parquet":
        return {}, None
    overrides: FieldOverrides = {}
    for kind, column, choices in (
        ("malformed_timestamp", "timestamp", BAD_TIMESTAMPS),
        ("malformed_value", "value", BAD_VALUES),
    ):
        at = np.flatnonzero(rows.fault == fault_code(kind))
        overrides[column] = (at, [f'"{choices[num % len(choices)]}"' for num in rows.event_num[at]])
    broken = np.flatnonzero(rows.fault == fault_code("malformed_row"))
    if config.format == "jsonl":
        return overrides, broken
    overrides["text"] = (broken, [BROKEN_CSV_TEXT] * len(broken))
    return overrides, None


def _chunks(n: int, size: int, offset: int = 0) -> Iterator[tuple[int, int, int]]:
    """``(index, start, stop)`` of consecutive pieces of ``offset .. offset + n``."""
    for index, start in enumerate(range(0, n, size)):
        yield index, offset + start, offset + min(start + size, n)


def _write_items(world: World, root: Location) -> tuple[TableFiles, ItemDirtCounts]:
    """Items in id order; each dirt kind on its own items; duplicates a few rows after the original."""
    config = world.config
    rng = np.random.default_rng([config.seed, TAG_ITEMS])
    n = world.n_items
    sizes = {kind: round(getattr(config.dirt, field) * n) for kind, field in ITEM_DIRT_FIELDS.items()}
    order = rng.permutation(n)
    flags: dict[str, np.ndarray] = {}
    start = 0
    for kind, size in sizes.items():
        flags[kind] = np.zeros(n, dtype=bool)
        flags[kind][order[start : start + size]] = True
        start += size
    duplicated = np.flatnonzero(flags.pop("duplicate"))
    slots = rng.integers(duplicated + 1, np.minimum(duplicated + 50, n) + 1)
    stream = _insert(np.arange(n), duplicated, slots)
    renderer = ItemRenderer(world, flags)
    directory = root.child("items").mkdir()
    files = []
    for index, lo, hi in _chunks(len(stream), config.chunk_rows):
        name = f"part-{index:05d}.{config.format}"
        batches = (renderer.table(stream[a:b]) for _, a, b in _chunks(hi - lo, _TABLE_BATCH, lo))
        write_batches(directory.child(name), batches, ITEM_FILE_SCHEMA, config.format)
        files.append(f"items/{name}")
    return TableFiles(rows=len(stream), files=files), ItemDirtCounts(**sizes)


def _insert(base: np.ndarray, extra: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """``base`` with ``extra[i]`` inserted before position ``slots[i]``."""
    order = np.argsort(slots, kind="stable")
    return np.insert(base, slots[order], extra[order])


def _write_users(world: World, root: Location) -> TableFiles:
    """Clean and bot users, in id order."""
    config = world.config
    users = np.argsort(world.user_number)
    directory = root.child("users").mkdir()
    files = []
    for index, lo, hi in _chunks(len(users), config.chunk_rows):
        name = f"part-{index:05d}.{config.format}"
        batches = (users_table(world, users[a:b]) for _, a, b in _chunks(hi - lo, _TABLE_BATCH, lo))
        write_batches(directory.child(name), batches, USER_FILE_SCHEMA, config.format)
        files.append(f"users/{name}")
    return TableFiles(rows=len(users), files=files)
