"""Clean events of a block of users: engagements, the funnel, sessions and timestamps.

A user's engagements pick an item by taste cluster times popularity; each engagement runs down the
funnel (view -> click -> like / rating / share / add_to_cart -> purchase) or is one negative event
(dislike, skip), mostly on an item outside the user's clusters. Engagements group into sessions,
sessions are spread over the user's active window. Guarantees the cleaning step relies on:

* consecutive events of a user are at least :data:`MIN_INTRA_GAP_MS` apart (<= 12 per minute);
* a session never repeats an item, and sessions are more than ``2 * dedup_window_s`` apart, so two
  clean events of the same (user, item, type) are always more than ``2 * dedup_window_s`` apart;
* every user gets exactly their planned number of events.
"""

from __future__ import annotations

import numpy as np

from recsys.data.synthetic._events import EVENT_TYPES, Events
from recsys.data.synthetic._reviews import review_texts
from recsys.data.synthetic._world import (
    DEVICE_NAMES,
    DEVICE_SHARES,
    MIN_INTRA_GAP_MS,
    SESSION_GAP_MS,
    World,
)
from recsys.errors import ConfigError

P_PRIMARY, P_SECONDARY = 0.70, 0.20
"""Chance that an engagement picks from the user's primary / secondary cluster (else: any item)."""
P_NEW_SESSION = 0.2
P_OFF_CLUSTER_NEGATIVE = 0.8
MEAN_POSITIVE_EVENTS = 1.55
"""Approximate events per positive engagement (used to size draws and the negative share)."""

# Funnel steps, in time order within an engagement; column 7 is the single negative event.
_STEP_TYPES = np.array(
    [
        EVENT_TYPES.index(t)
        for t in ("view", "click", "like", "rating", "share", "add_to_cart", "purchase", "skip")
    ],
    dtype=np.int8,
)
_DISLIKE, _SKIP = EVENT_TYPES.index("dislike"), EVENT_TYPES.index("skip")
_VIEW, _RATING = EVENT_TYPES.index("view"), EVENT_TYPES.index("rating")
# (in-cluster, off-cluster) probabilities: click, then given a click: like, rating, share, cart;
# purchase given add_to_cart.
_P_CLICK = (0.40, 0.20)
_P_AFTER_CLICK = ((0.25, 0.12, 0.04, 0.15), (0.10, 0.12, 0.02, 0.05))
_P_PURCHASE = 0.5


def block_events(world: World, users: np.ndarray, rng: np.random.Generator) -> Events:
    """All clean events of ``users`` (internal indices), sorted by timestamp; ``event_num`` unset."""
    need = world.user_events[users].copy()
    parts: list[Events] = []
    owners: list[np.ndarray] = []
    pending = np.arange(len(users))
    factor = 1.1
    while len(pending):
        # Users left short (repeats dropped, few events per engagement) get more engagements, in
        # new sessions after their earlier ones.
        events, local, counts = _draw(world, users[pending], need[pending], rng, factor)
        if parts:
            events.session += int(parts[-1].session.max()) + 1
        parts.append(events)
        owners.append(pending[local])
        need[pending] -= counts
        pending = pending[need[pending] > 0]
        factor = 1.5
    events = Events.concat(parts)
    if len(parts) > 1:
        events = events.take(np.argsort(np.concatenate(owners), kind="stable"))
    _place_in_time(world, events, rng)
    events.value[:] = np.nan
    is_view = events.event_type == _VIEW
    events.value[is_view] = np.round(rng.lognormal(np.log(20.0), 0.9, size=int(is_view.sum())) + 0.1, 1)
    _rate(world, events, rng)
    return events.take(np.argsort(events.timestamp, kind="stable"))


def _draw(
    world: World, users: np.ndarray, targets: np.ndarray, rng: np.random.Generator, factor: float
) -> tuple[Events, np.ndarray, np.ndarray]:
    """Engagements exploded into events truncated to each user's target, each event's index into
    ``users``, and each user's event count."""
    k = world.n_clusters
    f = world.config.negative_fraction
    p_negative = f * MEAN_POSITIVE_EVENTS / (1.0 - f + f * MEAN_POSITIVE_EVENTS)
    n_eng = np.ceil(targets / MEAN_POSITIVE_EVENTS * factor).astype(np.int64) + 2
    local = np.repeat(np.arange(len(users)), n_eng)
    user = users[local]
    n = len(local)

    negative = _uniform(rng, n) < p_negative
    pick = _uniform(rng, n)
    cluster = np.where(pick < P_PRIMARY, world.user_primary[user], world.user_secondary[user])
    off = (world.user_primary[user] + rng.integers(1, k, size=n)) % k
    cluster = np.where(negative & (_uniform(rng, n) < P_OFF_CLUSTER_NEGATIVE), off, cluster)
    popular = ~negative & (pick >= P_PRIMARY + P_SECONDARY)
    uniforms = rng.random(n)
    item = world.sample_items(cluster, uniforms)
    item[popular] = world.sample_popular(uniforms[popular])
    item_cluster = world.item_cluster[item]
    in_cluster = (item_cluster == world.user_primary[user]) | (item_cluster == world.user_secondary[user])

    # Sessions: the first engagement of a user opens one, later ones with P_NEW_SESSION.
    first = np.zeros(n, dtype=bool)
    first[np.cumsum(n_eng) - n_eng] = True
    session = np.cumsum(first | (_uniform(rng, n) < P_NEW_SESSION)) - 1
    repeat = _duplicated(session * world.n_items + item)
    keep = ~repeat
    local, user, item, session, negative, in_cluster = (
        a[keep] for a in (local, user, item, session, negative, in_cluster)
    )
    n = len(local)

    steps = np.zeros((n, 8), dtype=bool)
    side = np.where(in_cluster, 0, 1)
    steps[:, 0] = ~negative
    steps[:, 1] = steps[:, 0] & (_uniform(rng, n) < np.take(_P_CLICK, side))
    clicked = np.flatnonzero(steps[:, 1])
    after = np.asarray(_P_AFTER_CLICK, dtype=np.float32)[side[clicked]]
    steps[clicked, 2:6] = _uniform(rng, (len(clicked), 4)) < after
    carted = clicked[steps[clicked, 5]]
    steps[carted, 6] = _uniform(rng, len(carted)) < _P_PURCHASE
    steps[:, 7] = negative
    eng, step = np.nonzero(steps)
    event_type = _STEP_TYPES[step]
    negative_rows = np.flatnonzero(step == 7)
    event_type[negative_rows] = np.where(_uniform(rng, len(negative_rows)) < 0.4, _DISLIKE, _SKIP)

    ev_local = local[eng]
    starts = np.searchsorted(ev_local, np.arange(len(users)))
    rank = np.arange(len(eng)) - starts[ev_local]
    kept = rank < targets[ev_local]
    counts = np.bincount(ev_local[kept], minlength=len(users))
    eng, ev_local = eng[kept], ev_local[kept]
    events = Events.of(
        user=user[eng],
        item=item[eng],
        event_type=event_type[kept],
        session=session[eng],
        in_cluster=in_cluster[eng],
    )
    return events, ev_local, counts


def _uniform(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """Single-precision uniforms: plenty for coin flips, and half the cost."""
    return rng.random(size, dtype=np.float32)


def _duplicated(keys: np.ndarray) -> np.ndarray:
    """True for every entry equal to an earlier one."""
    order = np.argsort(keys, kind="stable")
    dup_sorted = np.zeros(len(keys), dtype=bool)
    dup_sorted[1:] = keys[order[1:]] == keys[order[:-1]]
    out = np.empty(len(keys), dtype=bool)
    out[order] = dup_sorted
    return out


def _place_in_time(world: World, events: Events, rng: np.random.Generator) -> None:
    """Timestamps: gaps inside sessions, sessions spread over each user's active window.

    ``events`` are grouped by user, in engagement order; sets ``timestamp``, ``device`` and
    ``session`` (renumbered ``0..n_sessions-1`` in order).
    """
    n = len(events)
    if n == 0:
        return
    new_session = np.ones(n, dtype=bool)
    new_session[1:] = (events.session[1:] != events.session[:-1]) | (events.user[1:] != events.user[:-1])
    session_idx = np.cumsum(new_session) - 1
    n_sessions = int(session_idx[-1]) + 1
    jitter = np.minimum(rng.lognormal(np.log(15_000.0), 1.0, size=n), 600_000.0)
    gap = np.where(new_session, 0.0, MIN_INTRA_GAP_MS + np.floor(jitter))

    session_user = events.user[new_session]
    user_first = np.ones(n_sessions, dtype=bool)
    user_first[1:] = session_user[1:] != session_user[:-1]
    user_of_session = np.cumsum(user_first) - 1
    n_users = int(user_of_session[-1]) + 1
    links = np.bincount(user_of_session, minlength=n_users) - 1
    user_of_event = user_of_session[session_idx]
    busy = np.bincount(user_of_event, weights=gap, minlength=n_users)
    floor = np.bincount(user_of_event, weights=~new_session, minlength=n_users) * MIN_INTRA_GAP_MS

    span = float(world.end_ms - world.start_ms - 1)
    min_gap = 2_000.0 * world.config.dedup_window_s + 1_000.0
    window = span * rng.uniform(0.25, 1.0, size=n_users)
    offset = rng.random(n_users) * (span - window)
    too_long = busy + links * SESSION_GAP_MS > window
    window = np.where(too_long, span, window)
    offset = np.where(too_long, 0.0, offset)
    session_gap = np.where(
        busy + links * SESSION_GAP_MS > span,
        np.maximum(min_gap, (span - busy) / np.maximum(links, 1)),
        float(SESSION_GAP_MS),
    )
    # Last resort for very active users in short ranges: shorten the gaps inside sessions.
    room = span - links * session_gap - floor
    squeeze = np.minimum(room / np.maximum(busy - floor, 1.0), 1.0)
    if (squeeze < 0).any():
        raise ConfigError("the time range is too short for the busiest users; widen start/end")
    squeezed = MIN_INTRA_GAP_MS + np.floor((gap - MIN_INTRA_GAP_MS) * squeeze[user_of_event])
    gap = np.where(new_session, 0.0, squeezed)
    duration = np.bincount(session_idx, weights=gap, minlength=n_sessions)
    busy = np.bincount(user_of_session, weights=duration, minlength=n_users)

    # Split the free time of the window at random (Dirichlet): before and between sessions.
    free = np.maximum(window - busy - links * session_gap, 0.0)
    share = rng.exponential(size=n_sessions)
    tail = rng.exponential(size=n_users)
    share_total = np.bincount(user_of_session, weights=share, minlength=n_users) + tail
    pause = free[user_of_session] * share / share_total[user_of_session]
    previous = np.concatenate([[0.0], duration[:-1]]) + session_gap[user_of_session]
    step = pause + np.where(user_first, 0.0, previous)
    cumulative = np.cumsum(step)
    first_of_user = np.flatnonzero(user_first)
    before_user = (cumulative[first_of_user] - step[first_of_user])[user_of_session]
    session_start = np.floor(world.start_ms + offset[user_of_session] + cumulative - before_user)
    within = np.cumsum(gap)
    within -= within[np.flatnonzero(new_session)][session_idx]
    events.timestamp[:] = session_start.astype(np.int64)[session_idx] + within.astype(np.int64)
    # Each session uses one device: mostly the user's habit.
    habit = world.user_device[session_user]
    other = rng.choice(len(DEVICE_NAMES), size=n_sessions, p=DEVICE_SHARES)
    events.device[:] = np.where(rng.random(n_sessions) < 0.8, habit, other)[session_idx]
    events.session[:] = session_idx


def _rate(world: World, events: Events, rng: np.random.Generator) -> None:
    """Half-star ratings (higher inside the user's clusters) and, on some, a review text."""
    rated = np.flatnonzero(events.event_type == _RATING)
    liked = events.in_cluster[rated]
    stars = np.where(liked, rng.normal(4.0, 0.7, len(rated)), rng.normal(2.6, 1.0, len(rated)))
    stars = np.clip(np.round(stars * 2.0) / 2.0, 0.5, 5.0)
    events.value[rated] = stars
    reviewed = rated[rng.random(len(rated)) < world.config.review_fraction]
    events.texts = review_texts(world, events.item[reviewed], events.value[reviewed], rng)
    events.text[reviewed] = np.arange(len(reviewed))
