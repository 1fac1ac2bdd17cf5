"""Attributing events to the exposure (the recommendation response) they reference.

An event carrying a ``request_id`` counts for that exposure when it is by the same user, on an item
the response showed, and at most ``attribution_window_s`` after it (events stamped up to
``CLOCK_SKEW_S`` before it count too: client clocks drift). It is a click-through when its type is
in the experiment's ``click_events`` and a conversion when in ``conversion_events``; the store
counts each at most once per exposure (``Store.record_outcome``), so a user who clicks three items
of one page is one click-through, and a retried event changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from recsys.experiments.config import Experiment
from recsys.store.base import Exposure

CLICKS = "clicks"
CONVERSIONS = "conversions"
EXPOSURES = "exposures"
CLOCK_SKEW_S = 60.0


@dataclass(frozen=True)
class Touch:
    """An event as attribution sees it."""

    request_id: str
    user_id: str
    item_id: str
    event_type: str
    timestamp_s: float


def outcomes(experiment: Experiment, exposure: Exposure, touch: Touch) -> tuple[str, ...]:
    """Which outcomes (``clicks``, ``conversions``) ``touch`` earns ``exposure``; ``()`` for none."""
    if exposure.experiment != experiment.id or exposure.request_id != touch.request_id:
        return ()
    if touch.user_id != exposure.user_id or touch.item_id not in exposure.item_ids:
        return ()
    delay = touch.timestamp_s - exposure.timestamp_ms / 1000.0
    if delay < -CLOCK_SKEW_S or delay > experiment.attribution_window_s:
        return ()
    earned = []
    if touch.event_type in experiment.click_events:
        earned.append(CLICKS)
    if touch.event_type in experiment.conversion_events:
        earned.append(CONVERSIONS)
    return tuple(earned)


class OutcomeStore(Protocol):
    """The part of :class:`recsys.store.Store` attribution needs."""

    def get_exposure(self, request_id: str) -> Exposure | None: ...

    def record_outcome(self, request_id: str, outcome: str) -> bool: ...


@dataclass(frozen=True)
class Attribution:
    """What one event added to an experiment's counters (for metrics and logs)."""

    experiment: str
    variant: str
    outcomes: tuple[str, ...]
    """Outcomes newly counted; empty when the exposure already had them."""
    event_type: str = ""


def attribute(store: OutcomeStore, experiments: dict[str, Experiment], touch: Touch) -> Attribution | None:
    """Record what ``touch`` earns its exposure; ``None`` when it earns nothing."""
    exposure = store.get_exposure(touch.request_id)
    if exposure is None or exposure.experiment not in experiments:
        return None
    earned = outcomes(experiments[exposure.experiment], exposure, touch)
    if not earned:
        return None
    counted = tuple(outcome for outcome in earned if store.record_outcome(touch.request_id, outcome))
    return Attribution(exposure.experiment, exposure.variant, counted, touch.event_type)
