r"""The real-time update rule: every event moves the user at once, in O(K d + d^2), no retraining.

For an event on item ``i`` (unit vector ``u_i``) at time ``t`` with signed weight
``w = event_weights(type, value, sentiment)`` (:mod:`recsys.features.weights`, the one weighting):

1. **Idempotency.** An ``event_id`` among the last ``max_event_ids`` applied changes nothing.
   Unknown items (not an index of the space) change only ``counts["unknown_item"]``; their
   event id is *not* recorded, so replaying them from the event log once the item exists applies
   them (:meth:`EmbeddingUpdater.apply_many`).
2. **Recency decay.** Before the update every interest decays by
   ``g = 0.5 ** (dt / half_life_seconds) * 0.5 ** (1 / half_life_events)`` (either factor off when
   its half-life is ``None``); ``dt`` is the time since the latest event. An event older than the
   latest one is itself weighted by ``0.5 ** (age / half_life_seconds)``.
3. **Pull (w > 0).** ``k = argmax_k cos(v_k, u_i)`` over the interests. If ``cos >= spawn_threshold``
   (or there is no room and the weakest interest outweighs ``w``) the item joins interest ``k``:
   ``total_k += w u_i``, ``weight_k += w``; otherwise it starts a new interest (``total = w u_i``),
   evicting the weakest one when there are already ``max_interests``. Interests whose directions
   reach ``cos >= merge_threshold`` merge (totals and weights add). ``v_k = total_k / |total_k|``.
4. **Push (w < 0).** For every interest with ``c_k = cos(v_k, u_i) > 0``:
   ``total_k += push_strength * w * c_k * u_i`` and ``weight_k += push_strength * w * c_k``
   (removed when it reaches 0). Dislikes and skips thus turn the user away from the item.
5. **Exact ALS fold-in** (``exact_fold_in`` and an ALS space): the per-item confidence gains
   ``alpha * w`` and the user's least-squares vector ``x = A^-1 b`` follows by a rank-one
   Sherman-Morrison update (:mod:`recsys.embeddings._least_squares`): exactly ALS's own fold-in.
6. **Bookkeeping.** ``evidence`` (confidence of the personal part) decays by time only and gains
   ``w`` for positive events; the signal joins ``recent``, the item ``seen``; ``version`` += 1.

The state is updated in place and returned (no copy: a store holds its own deserialised copy).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recsys.embeddings._least_squares import add_confidence
from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import Interest, Signal, UserState
from recsys.features.weights import WeightConfig, event_weights


class UpdaterConfig(BaseModel):
    """Parameters of the update rule (module docstring).

    Examples
    --------
    >>> UpdaterConfig(max_interests=2).spawn_threshold
    0.3
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: WeightConfig = Field(default_factory=WeightConfig)
    """The event weighting (signed per type; ratings scaled by value). With the default neutral
    rating 3.0 a 3-star rating weighs 0; the cold-start benchmark, where ratings >= 3 are the
    positives, uses ``WeightConfig(rating_neutral=2.0)`` (3 -> 0.5, 4 -> 1.0, 5 -> 1.5)."""
    max_interests: int = Field(default=4, ge=1, le=32)
    spawn_threshold: float = Field(default=0.3, ge=-1.0, le=1.0)
    """A positive signal less similar than this to every interest starts a new one."""
    merge_threshold: float = Field(default=0.75, ge=-1.0, le=1.0)
    """Interests at least this similar merge."""
    push_strength: float = Field(default=1.0, ge=0.0)
    half_life_events: float | None = Field(default=20.0, gt=0.0)
    half_life_seconds: float | None = Field(default=30 * 86400.0, gt=0.0)
    exact_fold_in: bool = True
    """Maintain the exact ALS least-squares vector when the space comes from ALS."""
    refresh_every: int = Field(default=256, ge=1)
    max_recent: int = Field(default=100, ge=1)
    max_seen: int = Field(default=5000, ge=1)
    max_event_ids: int = Field(default=1000, ge=1)
    max_anchors: int = Field(default=8, ge=1)


@dataclass(frozen=True)
class Event:
    """One user event as the updater sees it.

    ``item`` is the item index in the space, or the raw id (any non-int) of an item the space does
    not know yet. ``timestamp`` is in epoch seconds; ``value`` is the rating of ``rating`` events;
    ``sentiment`` (VADER compound, optional) scales the weight as :mod:`recsys.features.weights` says.

    Examples
    --------
    >>> Event(12, "rating", 1.7e9, value=4.5, event_id="evt-1").event_type
    'rating'
    """

    item: int | str | None
    event_type: str
    timestamp: float
    value: float | None = None
    event_id: str | None = None
    sentiment: float | None = None


class EmbeddingUpdater:
    """Applies events to :class:`UserState` (pure: no I/O, no clock of its own).

    Examples
    --------
    >>> import numpy as np
    >>> from recsys.embeddings import EmbeddingSpace
    >>> space = EmbeddingSpace.from_vectors(np.eye(3, dtype="float32"), np.ones(3), n_regions=2)
    >>> updater = EmbeddingUpdater(space)
    >>> state, changed = updater.apply(UserState("u"), Event(0, "like", 0.0, event_id="e1"))
    >>> changed, state.version, updater.apply(state, Event(0, "like", 0.0, event_id="e1"))[1]
    (True, 1, False)
    """

    def __init__(self, space: EmbeddingSpace, config: UpdaterConfig | None = None) -> None:
        self.space = space
        self.config = config if config is not None else UpdaterConfig()
        self._weight = functools.lru_cache(maxsize=4096)(self._compute_weight)

    def _compute_weight(self, event_type: str, value: float | None, sentiment: float | None) -> float:
        return float(
            event_weights(
                [event_type],
                values=None if value is None else [value],
                sentiments=None if sentiment is None else [sentiment],
                config=self.config.weights,
            )[0]
        )

    def weight(self, event: Event) -> float:
        """The signed weight of ``event`` under the configured weighting (before recency)."""
        return self._weight(event.event_type, event.value, event.sentiment)

    def is_known(self, item: object) -> bool:
        """Whether ``item`` is an index of the current space."""
        return isinstance(item, int | np.integer) and 0 <= int(item) < self.space.n_items

    # ------------------------------------------------------------------ public API
    def apply(self, state: UserState, event: Event) -> tuple[UserState, bool]:
        """Apply one event; return the (same, updated) state and whether anything changed."""
        config = self.config
        if event.event_id is not None and event.event_id in state.event_ids:
            return state, False
        if not self.is_known(event.item):
            state.counts["unknown_item"] = state.counts.get("unknown_item", 0) + 1
            state.version += 1
            return state, True
        item = int(event.item)  # type: ignore[arg-type]
        weight = self.weight(event) * self._advance_clock(state, float(event.timestamp))
        if weight > 0:
            self._pull(state, item, weight)
            state.evidence += weight
            state.positives += 1
        elif weight < 0:
            self._push(state, item, weight)
        if config.exact_fold_in and self.space.has_exact_fold_in and weight != 0.0:
            add_confidence(state, self.space, item, self.space.alpha * weight, config.refresh_every)
        state.recent.append(Signal(item, weight, float(event.timestamp), state.n_signals, event.event_type))
        del state.recent[: -config.max_recent]
        state.n_signals += 1
        state.remember(state.seen, item, config.max_seen)
        if event.event_id is not None:
            state.remember(state.event_ids, event.event_id, config.max_event_ids)
        state.counts[event.event_type] = state.counts.get(event.event_type, 0) + 1
        state.last_signal_time = float(event.timestamp)
        state.pages_since_signal = 0
        state.version += 1
        return state, True

    def apply_many(self, state: UserState, events: Iterable[Event]) -> tuple[UserState, int]:
        """Apply events in order (e.g. a replay from the event log); return the number applied."""
        changed = 0
        for event in events:
            changed += self.apply(state, event)[1]
        return state, changed

    def forget(self, state: UserState) -> UserState:
        """A blank state for the same user, with a higher version (so stale writes lose)."""
        return UserState(state.user_id, version=state.version + 1)

    # ------------------------------------------------------------------ the rule
    def _advance_clock(self, state: UserState, timestamp: float) -> float:
        """Decay interests and evidence to ``timestamp``; return the event's own recency factor."""
        config = self.config
        gap = 0.0 if state.clock is None else timestamp - state.clock
        time_factor = 1.0
        if config.half_life_seconds is not None and gap != 0.0:
            time_factor = 0.5 ** (abs(gap) / config.half_life_seconds)
        if gap < 0:  # an event older than the latest one: it counts less, the state does not decay
            return time_factor
        state.clock = timestamp
        decay = time_factor
        if config.half_life_events is not None:
            decay *= 0.5 ** (1.0 / config.half_life_events)
        for interest in state.interests:
            interest.total *= np.float32(decay)
            interest.weight *= decay
        state.evidence *= time_factor
        return 1.0

    def _pull(self, state: UserState, item: int, weight: float) -> None:
        config = self.config
        unit = self.space.unit[item]
        interests = state.interests
        if interests:
            sims = np.array([float(i.direction @ unit) for i in interests])
            nearest = int(np.argmax(sims))
            weakest = int(np.argmin([i.weight for i in interests]))
            full = len(interests) >= config.max_interests
            joins = sims[nearest] >= config.spawn_threshold or (full and interests[weakest].weight >= weight)
            if joins:
                target = interests[nearest]
                target.total = target.total + np.float32(weight) * unit
                target.weight += weight
                target.add_anchor(item, weight, config.max_anchors)
                self._merge_close(state, nearest)
                return
            if full:
                interests.pop(weakest)
        fresh = Interest(total=(np.float32(weight) * unit).astype(np.float32), weight=weight)
        fresh.add_anchor(item, weight, config.max_anchors)
        interests.append(fresh)
        self._merge_close(state, len(interests) - 1)

    def _merge_close(self, state: UserState, index: int) -> None:
        interests = state.interests
        changed = interests[index]
        for other in list(interests):
            if other is changed or float(other.direction @ changed.direction) < self.config.merge_threshold:
                continue
            interests.remove(other)
            changed.total = changed.total + other.total
            changed.weight += other.weight
            for anchor, anchor_weight in other.anchors:
                changed.add_anchor(anchor, anchor_weight, self.config.max_anchors)

    def _push(self, state: UserState, item: int, weight: float) -> None:
        unit = self.space.unit[item]
        strength = self.config.push_strength
        kept = []
        for interest in state.interests:
            similarity = float(interest.direction @ unit)
            if similarity > 0:
                interest.total = interest.total + np.float32(strength * weight * similarity) * unit
                interest.weight += strength * weight * similarity
            if interest.weight > 1e-9 and float(np.linalg.norm(interest.total)) > 1e-9:
                kept.append(interest)
        state.interests = kept
