"""Arrow tables of events, items and users as written to disk.

Item and user attributes are drawn with a counter-based hash of the id, so any chunk renders an
item the same way (a duplicated item row is byte-identical to its original).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data import schema as s
from recsys.data.synthetic._events import BOT_SESSION_BASE, EVENT_TYPES, NULL_TS, Events
from recsys.data.synthetic._strings import (
    hash_below,
    hash_bits,
    hash_chance,
    hash_uniform,
    hex_ids,
    hex_ids_repeated,
)
from recsys.data.synthetic._vocab import GENERIC_TAGS, GENERIC_WORDS
from recsys.data.synthetic._world import DEVICE_NAMES, TAG_ITEMS, World

EVENT_FILE_SCHEMA = pa.schema([f.with_nullable(True) for f in s.EVENT_SCHEMA])
"""The event schema with every field nullable: dirty rows miss required fields on purpose."""
ITEM_FILE_SCHEMA = pa.schema(
    [*s.ITEM_SCHEMA, pa.field("price", pa.float64()), pa.field("year", pa.float64())]
)
USER_FILE_SCHEMA = pa.schema(
    [
        *s.USER_SCHEMA,
        pa.field("age_band", pa.string()),
        pa.field("country", pa.string()),
        pa.field("signup_at", s.TIMESTAMP_TYPE),
    ]
)
EVENT_KEY, SESSION_KEY = 0xE7, 0x5E
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "ES", "IT", "MX", "NG")
_COUNTRY_SHARES = np.array([30, 10, 9, 7, 10, 8, 6, 6, 4, 4, 4, 2], dtype=np.float64)
_YEAR_MS = 365 * 86_400_000

_TYPE_NAMES = pa.array(EVENT_TYPES, pa.string())
_DEVICE_NAMES = pa.array(DEVICE_NAMES, pa.string())


def _codes(values: np.ndarray) -> pa.Array:
    """Integer codes as Arrow indices, negative codes as nulls."""
    return pa.array(values, mask=values < 0)


def events_table(world: World, events: Events) -> pa.Table:
    """The typed events table (nulls where dirt removed a field)."""
    null_ts = events.timestamp == NULL_TS
    texts = pa.array(events.texts, pa.string())
    columns = [
        world.user_ids.take(_codes(events.user)),
        world.item_ids.take(_codes(events.item)),
        _TYPE_NAMES.take(_codes(events.event_type)),
        pa.array(events.value, mask=np.isnan(events.value)),
        pa.array(np.where(null_ts, 0, events.timestamp), type=s.TIMESTAMP_TYPE, mask=null_ts),
        hex_ids("e", events.event_num, EVENT_KEY),
        _DEVICE_NAMES.take(pa.array(events.device)),
        hex_ids_repeated("s", events.session, SESSION_KEY, BOT_SESSION_BASE),
        texts.take(_codes(events.text)),
    ]
    return pa.Table.from_arrays(columns, schema=EVENT_FILE_SCHEMA)


def _ragged(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets, row of each element and position within its row, for rows of ``lengths``."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    row = np.repeat(np.arange(len(lengths)), lengths)
    return offsets, row, np.arange(len(row)) - offsets[row]


def _pick(u: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    return np.minimum((u * n).astype(np.int64), np.asarray(n) - 1)


class ItemRenderer:
    """Renders rows of the items table; an item's row depends only on the item and the seed."""

    def __init__(self, world: World, missing: dict[str, np.ndarray]) -> None:
        """``missing`` maps ``missing_title`` ... ``missing_year`` to a boolean flag per item."""
        self._world = world
        self._missing = missing
        topics = world.topics
        self._topic_words = pa.array([w for t in topics for w in t.words] + list(GENERIC_WORDS))
        self._word_count = np.array([len(t.words) for t in topics])
        self._word_offset = np.concatenate([[0], np.cumsum(self._word_count)[:-1]])
        self._generic_offset = int(self._word_count.sum())
        self._tags = pa.array([tag for t in topics for tag in t.tags] + list(GENERIC_TAGS))
        self._tag_count = np.array([len(t.tags) for t in topics])
        self._tag_offset = np.concatenate([[0], np.cumsum(self._tag_count)[:-1]])
        self._categories = pa.array([t.category for t in topics])
        self._price_level = 5.0 + 95.0 * hash_uniform(np.arange(len(topics)), world.config.seed * 31 + 7)
        self._salt = world.config.seed * 1_000 + TAG_ITEMS

    def _u(self, keys: np.ndarray, salt: int) -> np.ndarray:
        return hash_uniform(keys, self._salt * 64 + salt)

    def _words(self, items: np.ndarray, lo: int, hi: int, p_topic: float, salt: int) -> pa.Array:
        """Space-joined words per item: ``lo..hi`` words, each from its topic with ``p_topic``."""
        length = lo + _pick(self._u(items, salt), hi - lo + 1)
        offsets, row, pos = _ragged(length)
        bits = hash_bits(items[row].astype(np.int64) * 64 + pos, self._salt * 64 + salt + 1)
        cluster = self._world.item_cluster[items][row]
        index = np.where(
            hash_chance(bits, p_topic),
            self._word_offset[cluster] + hash_below(bits, self._word_count[cluster]),
            self._generic_offset + hash_below(bits, len(GENERIC_WORDS)),
        )
        words = pa.ListArray.from_arrays(pa.array(offsets), self._topic_words.take(pa.array(index)))
        return pc.binary_join(words, " ")

    def table(self, items: np.ndarray) -> pa.Table:
        """Rows for ``items`` (item indices, repeats allowed)."""
        world = self._world
        n = len(items)
        cluster = world.item_cluster[items]
        title = pc.utf8_title(self._words(items, 2, 4, 0.85, 1))
        text = self._words(items, 15, 40, 0.7, 4)

        second = self._u(items, 10) < 0.3
        other = (cluster + 1 + _pick(self._u(items, 11), world.n_clusters - 1)) % world.n_clusters
        cat_offsets = np.concatenate([[0], np.cumsum(1 + second)]).astype(np.int32)
        cat_index = np.empty(int(cat_offsets[-1]), dtype=np.int64)
        cat_index[cat_offsets[:-1]] = cluster
        cat_index[cat_offsets[1:][second] - 1] = other[second]
        categories = pa.ListArray.from_arrays(
            pa.array(cat_offsets), self._categories.take(pa.array(cat_index))
        )

        n_topic_tags = 2 + _pick(self._u(items, 12), np.minimum(3, self._tag_count[cluster] - 1))
        generic = self._u(items, 13) < 0.3
        offsets, row, pos = _ragged(n_topic_tags + generic)
        first = _pick(self._u(items, 14), self._tag_count[cluster])
        c = cluster[row]
        tag_index = np.where(
            pos < n_topic_tags[row],
            self._tag_offset[c] + (first[row] + pos) % self._tag_count[c],
            len(self._tags) - len(GENERIC_TAGS) + _pick(self._u(items, 15), len(GENERIC_TAGS))[row],
        )
        tags = pa.ListArray.from_arrays(pa.array(offsets), self._tags.take(pa.array(tag_index)))

        age_ms = (30 * 86_400_000 + self._u(items, 16) * 5 * _YEAR_MS).astype(np.int64)
        created = world.start_ms - age_ms
        z = np.sqrt(-2.0 * np.log1p(-self._u(items, 17))) * np.cos(2.0 * np.pi * self._u(items, 18))
        price = np.round(self._price_level[cluster] * np.exp(0.5 * z), 2)
        created_year = 1970 + created // (_YEAR_MS + 6 * 3_600_000)
        year = (created_year - np.floor(self._u(items, 19) ** 2 * 40)).astype(np.float64)

        miss = {name: flags[items] for name, flags in self._missing.items()}
        columns = [
            world.item_ids.take(pa.array(items)),
            _null_where(title, miss["missing_title"]),
            _null_where(text, miss["missing_text"]),
            categories,
            tags,
            pa.array(created, type=s.TIMESTAMP_TYPE),
            pa.array(price, mask=miss["missing_price"]),
            pa.array(year, mask=miss["missing_year"]),
        ]
        assert len(columns[0]) == n
        return pa.Table.from_arrays(columns, schema=ITEM_FILE_SCHEMA)


def _null_where(values: pa.Array, mask: np.ndarray) -> pa.Array:
    if not mask.any():
        return values
    return pc.if_else(pa.array(mask), pa.nulls(len(values), values.type), values)


def users_table(world: World, users: np.ndarray) -> pa.Table:
    """Rows for internal user indices (bots included: they are accounts too)."""
    seed = world.config.seed
    k = world.n_clusters
    affinity = np.random.default_rng([seed, TAG_ITEMS, 1]).dirichlet(np.full(len(AGE_BANDS), 1.5), k)
    keys = world.user_number[users]
    is_bot = users >= world.n_users
    clean_users = np.where(is_bot, 0, users)
    cluster = np.where(is_bot, _pick(hash_uniform(keys, seed * 8 + 1), k), world.user_primary[clean_users])
    cumulative = np.cumsum(affinity, axis=1)[cluster]
    age = np.minimum((hash_uniform(keys, seed * 8 + 2)[:, None] > cumulative).sum(axis=1), len(AGE_BANDS) - 1)
    shares = np.cumsum(_COUNTRY_SHARES / _COUNTRY_SHARES.sum())
    country = np.minimum(np.searchsorted(shares, hash_uniform(keys, seed * 8 + 3)), len(COUNTRIES) - 1)
    signup = world.start_ms - (86_400_000 + hash_uniform(keys, seed * 8 + 4) * 3 * _YEAR_MS).astype(np.int64)
    columns = [
        world.user_ids.take(pa.array(users)),
        pa.array(AGE_BANDS).take(pa.array(age)),
        pa.array(COUNTRIES).take(pa.array(country)),
        pa.array(signup, type=s.TIMESTAMP_TYPE),
    ]
    return pa.Table.from_arrays(columns, schema=USER_FILE_SCHEMA)
