"""Deterministic, sticky assignment of users to variants.

A user's position ``u = unit_hash(experiment_id, user_id)`` in ``[0, 1)`` (the first 8 bytes of
SHA-256 of ``"<experiment>:<user>"``) never changes, so with fixed shares the variant is a pure
function of the two ids: every replica, every restart, the replay job, agree without storing it.
The variant is the first whose cumulative share exceeds ``u``.

With Thompson sampling the shares move; a pure function would then move users between arms, which
would mix their exposures. So an :class:`Assigner` with an allocation stores each user's first
assignment (``Store.assign_variant``, set-if-absent) and reads it back ever after: users already
in the experiment keep their arm, new users are split by the current shares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

from recsys.experiments.config import Experiment

_SCALE = float(1 << 64)


def unit_hash(experiment_id: str, user_id: str) -> float:
    """The user's fixed position in ``[0, 1)`` for this experiment.

    >>> unit_hash("exp", "u1") == unit_hash("exp", "u1")
    True
    """
    digest = hashlib.sha256(f"{experiment_id}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def pick(shares: Mapping[str, float], position: float) -> str:
    """The variant whose cumulative-share interval holds ``position`` (in insertion order).

    >>> pick({"A": 0.5, "B": 0.5}, 0.25), pick({"A": 0.5, "B": 0.5}, 0.75)
    ('A', 'B')
    """
    if not shares:
        raise ValueError("cannot pick from no variants")
    total = sum(shares.values())
    cumulative = 0.0
    name = ""
    for name, share in shares.items():
        cumulative += share / total
        if position < cumulative:
            return name
    return name  # position within rounding of 1.0


class AssignmentStore(Protocol):
    """The part of :class:`recsys.store.Store` that keeps assignments sticky."""

    def assign_variant(self, experiment: str, user_id: str, variant: str) -> str: ...

    def get_assignment(self, experiment: str, user_id: str) -> str | None: ...


def assign(experiment: Experiment, user_id: str) -> str:
    """The variant of ``user_id`` under the configured shares (pure, no store)."""
    return pick(experiment.shares(), unit_hash(experiment.id, user_id))


class Assigner:
    """Assignment for one experiment; sticky through ``store`` once allocations can move."""

    def __init__(self, experiment: Experiment, store: AssignmentStore | None = None) -> None:
        self.experiment = experiment
        self._store = store

    @property
    def persistent(self) -> bool:
        """Whether assignments are stored (Thompson sampling on and a store given)."""
        return self.experiment.thompson.enabled and self._store is not None

    def assign(self, user_id: str, allocation: Mapping[str, float] | None = None) -> str:
        """The user's variant; a new user is placed by ``allocation`` (default: configured shares)."""
        shares = self.experiment.shares()
        if allocation:  # in the experiment's variant order, so positions map the same way
            shares = {name: float(allocation.get(name, 0.0)) for name in shares}
        proposed = pick(shares, unit_hash(self.experiment.id, user_id))
        if not self.persistent or self._store is None:
            return proposed
        known = self._store.get_assignment(self.experiment.id, user_id)
        if known is not None:
            return known
        return self._store.assign_variant(self.experiment.id, user_id, proposed)
