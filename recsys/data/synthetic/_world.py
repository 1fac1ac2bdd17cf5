"""The latent world behind a synthetic dataset: clusters, popularity, users' tastes and activity.

Everything here is O(n_users + n_items) and drawn once from the seed; events are then generated in
blocks of users (see :mod:`._sessions`) without ever holding all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from recsys.data.synthetic._strings import decimal_ids
from recsys.data.synthetic._vocab import Topic, build_topics
from recsys.data.synthetic.config import SyntheticConfig
from recsys.errors import ConfigError

MIN_INTRA_GAP_MS = 5_000
"""Smallest gap between two events of one user: at most 12 events in any calendar minute."""
SESSION_GAP_MS = 30 * 60_000
"""Usual smallest gap between two sessions of a user."""
ACTIVITY_CAP_FACTOR = 20
"""No clean user has more than this times the median per-user event count (the bot rule uses 50)."""
DEVICE_NAMES: tuple[str, ...] = ("mobile", "desktop", "tablet", "tv")
DEVICE_SHARES = np.array([0.55, 0.30, 0.10, 0.05])

# Stream tags of the seed sequences, so that each part of the world draws independently.
TAG_WORLD, TAG_BLOCK, TAG_CHUNK, TAG_BOT, TAG_ITEMS = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class World:
    """Latent structure shared by the event, item and user generators (internal user indices:
    ``0..n_users-1`` are clean users, ``n_users..n_users+n_bots-1`` are bots)."""

    config: SyntheticConfig
    topics: list[Topic]
    item_cluster: np.ndarray
    item_weight: np.ndarray
    items_by_cluster: np.ndarray
    cluster_offsets: np.ndarray
    alias_prob: np.ndarray
    alias_index: np.ndarray
    """Walker alias tables over ``items_by_cluster``, one per cluster's slice: O(1) sampling."""
    global_cdf: np.ndarray
    user_primary: np.ndarray
    user_secondary: np.ndarray
    user_events: np.ndarray
    user_device: np.ndarray
    user_number: np.ndarray
    """Id number of each internal user (bots included); ids are a random permutation."""
    bot_events: np.ndarray
    bot_start_ms: np.ndarray
    user_ids: pa.StringArray
    """User id string of each internal user index."""
    item_ids: pa.StringArray
    start_ms: int
    end_ms: int

    @property
    def n_users(self) -> int:
        return len(self.user_primary)

    @property
    def n_bots(self) -> int:
        return len(self.bot_events)

    @property
    def n_items(self) -> int:
        return len(self.item_cluster)

    @property
    def n_clusters(self) -> int:
        return len(self.topics)

    def sample_items(self, clusters: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """Items drawn by popularity within the given clusters (one per entry)."""
        size = self.cluster_offsets[clusters + 1] - self.cluster_offsets[clusters]
        scaled = uniforms * size
        slot = np.minimum(scaled.astype(np.int64), size - 1)
        pos = self.cluster_offsets[clusters] + slot
        pos = np.where(scaled - slot < self.alias_prob[pos], pos, self.alias_index[pos])
        return self.items_by_cluster[pos]

    def sample_popular(self, uniforms: np.ndarray) -> np.ndarray:
        """Items drawn by global popularity."""
        return np.minimum(np.searchsorted(self.global_cdf, uniforms, side="right"), self.n_items - 1)


def build_world(config: SyntheticConfig) -> World:
    """Draw the latent world of a resolved config."""
    assert config.n_users is not None and config.n_items is not None
    assert config.dirt.bot_users is not None
    rng = np.random.default_rng([config.seed, TAG_WORLD])
    k = config.n_clusters
    n_items, n_users, n_bots = config.n_items, config.n_users, config.dirt.bot_users

    # Items: every cluster gets at least two, the rest follow uneven cluster sizes.
    sizes = rng.dirichlet(np.full(k, 3.0))
    item_cluster = np.concatenate(
        [np.repeat(np.arange(k), 2), rng.choice(k, size=n_items - 2 * k, p=sizes)]
    ).astype(np.int64)
    rng.shuffle(item_cluster)
    ranks = rng.permutation(n_items) + 1
    item_weight = ranks.astype(np.float64) ** -config.popularity_exponent
    items_by_cluster = np.argsort(item_cluster, kind="stable")
    cluster_offsets = np.concatenate([[0], np.cumsum(np.bincount(item_cluster, minlength=k))])
    alias_prob, alias_index = _alias_tables(item_weight[items_by_cluster], cluster_offsets)
    global_cdf = np.cumsum(item_weight) / item_weight.sum()

    # Users: a primary and a different secondary taste cluster, a device habit, and an activity.
    user_primary = rng.choice(k, size=n_users, p=rng.dirichlet(np.full(k, 2.0))).astype(np.int64)
    user_secondary = (user_primary + rng.integers(1, k, size=n_users)) % k
    user_device = rng.choice(len(DEVICE_NAMES), size=n_users, p=DEVICE_SHARES).astype(np.int64)
    start_ms = _epoch_ms(config.start)
    end_ms = _epoch_ms(config.end)
    user_events = _activity(rng, config.n_events, n_users, (end_ms - start_ms) // 1000)
    user_number = rng.permutation(n_users + n_bots)

    bot_events = rng.integers(config.dirt.bot_events_min, config.dirt.bot_events_max + 1, size=n_bots)
    burst_ms = bot_events * 1_200
    bot_start_ms = start_ms + (rng.random(n_bots) * (end_ms - start_ms - burst_ms)).astype(np.int64)

    user_width = max(6, len(str(n_users + n_bots - 1)))
    item_width = max(6, len(str(n_items - 1)))
    return World(
        config=config,
        topics=build_topics(k, config.seed),
        item_cluster=item_cluster,
        item_weight=item_weight,
        items_by_cluster=items_by_cluster,
        cluster_offsets=cluster_offsets,
        alias_prob=alias_prob,
        alias_index=alias_index,
        global_cdf=global_cdf,
        user_primary=user_primary,
        user_secondary=user_secondary,
        user_events=user_events,
        user_device=user_device,
        user_number=user_number,
        bot_events=bot_events.astype(np.int64),
        bot_start_ms=bot_start_ms,
        user_ids=decimal_ids("u", user_number, user_width),
        item_ids=decimal_ids("i", np.arange(n_items), item_width),
        start_ms=start_ms,
        end_ms=end_ms,
    )


def _alias_tables(weights: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias tables for each slice ``offsets[c]:offsets[c + 1]`` of ``weights``."""
    prob = np.ones(len(weights))
    alias = np.arange(len(weights))
    for lo, hi in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        scaled = (weights[lo:hi] * ((hi - lo) / weights[lo:hi].sum())).tolist()
        small = [i for i, p in enumerate(scaled) if p < 1.0]
        large = [i for i, p in enumerate(scaled) if p >= 1.0]
        while small and large:
            short, tall = small.pop(), large[-1]
            prob[lo + short] = scaled[short]
            alias[lo + short] = lo + tall
            scaled[tall] -= 1.0 - scaled[short]
            if scaled[tall] < 1.0:
                small.append(large.pop())
    return prob, alias


def _epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _activity(rng: np.random.Generator, n_events: int, n_users: int, range_s: int) -> np.ndarray:
    """Per-user clean event counts: heavy-tailed, at least 1, summing to ``n_events``, capped.

    The cap (``ACTIVITY_CAP_FACTOR`` times the median, and what fits in the time range) keeps every
    clean user clear of the cleaning step's volume rule.
    """
    weights = rng.lognormal(0.0, 1.0, size=n_users)
    extra = n_events - n_users
    share = _water_fill(weights, float(extra), math.inf)
    median = float(np.median(1.0 + share))
    cap = min(ACTIVITY_CAP_FACTOR * median, range_s / 20.0) - 1.0
    if cap * n_users < extra:
        raise ConfigError(
            f"{n_events} events cannot be spread over {n_users} users within the time range without "
            "some user looking like a bot; raise n_users or widen start/end"
        )
    share = _water_fill(weights, float(extra), cap)
    counts = np.floor(share).astype(np.int64)
    remainder = extra - int(counts.sum())
    if remainder > 0:
        fraction = share - counts
        fraction[counts >= math.floor(cap)] = -1.0
        counts[np.argsort(-fraction, kind="stable")[:remainder]] += 1
    return counts + 1


def _water_fill(weights: np.ndarray, total: float, cap: float) -> np.ndarray:
    """Shares of ``total`` proportional to ``weights`` with none above ``cap`` (excess spread on)."""
    share = np.zeros_like(weights)
    free = np.ones(len(weights), dtype=bool)
    left = total
    while left > 1e-9 and free.any():
        proposal = weights[free] / weights[free].sum() * left
        over = proposal > cap
        if not over.any():
            share[free] = proposal
            break
        idx = np.flatnonzero(free)[over]
        share[idx] = cap
        left -= cap * len(idx)
        free[idx] = False
    return share
