"""A/B/n experiments in a serving replica: which variant serves a user, exposures, attribution.

One configured experiment runs at a time (``enabled: true``); disabled ones keep their reports.
A user's variant comes from :class:`recsys.experiments.Assigner` (a hash of experiment and user,
stored on first sight once Thompson sampling may move the shares). A variant that only changes
nothing uses the replica's main engine; one with ``ranker``/``updater`` overrides or its own
``bundle`` gets its own :class:`~recsys.engine.Engine` on the same store. User states are shared
across variants, so a variant's bundle must have the same item ids and embedding dimension (a
retrained version of the same model), which is checked when the replica starts.

Each recommendation response records an exposure (request id, user, variant, items, time) in the
store before it is returned; events that reference the request id are attributed by
:func:`recsys.experiments.attribute`. Under Thompson sampling, a replica recomputes the shares from
the stored counters at most every ``update_every_s`` seconds and stores them, so every replica
splits new users alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from recsys.embeddings import UpdaterConfig
from recsys.engine import Engine, IncomingEvent
from recsys.errors import ConfigError
from recsys.experiments import (
    Assigner,
    Attribution,
    Experiment,
    Touch,
    Variant,
    apply_overrides,
    attribute,
    experiment_report,
    thompson_allocation,
)
from recsys.ranking import RankerConfig
from recsys.store import Exposure, Store

EngineFactory = Callable[[Variant], Engine]
"""Builds the engine of a variant (the base settings with its overrides, or its bundle)."""


def validate_experiments(
    experiments: Sequence[Experiment], ranker: RankerConfig, updater: UpdaterConfig
) -> None:
    """Raise ``ValueError`` naming the problem: duplicate ids, two enabled, bad overrides."""
    ids = [e.id for e in experiments]
    if len(set(ids)) != len(ids):
        raise ValueError(f"experiment ids must be unique, got {ids}")
    enabled = [e.id for e in experiments if e.enabled]
    if len(enabled) > 1:
        raise ValueError(f"at most one experiment may be enabled at a time, got {enabled}")
    for experiment in experiments:
        for variant in experiment.variants:
            for name, base, overrides in (
                ("ranker", ranker, variant.ranker),
                ("updater", updater, variant.updater),
            ):
                try:
                    apply_overrides(base, overrides)
                except ValueError as exc:
                    raise ValueError(
                        f"experiments[{experiment.id}].variants[{variant.name}].{name}: {exc}"
                    ) from exc


def variant_settings(ranker: RankerConfig, updater: UpdaterConfig, variant: Variant) -> dict[str, Any]:
    """The ``ServingArgs`` fields a variant changes (for ``model_copy(update=...)``)."""
    update: dict[str, Any] = {
        "ranker": apply_overrides(ranker, variant.ranker),
        "updater": apply_overrides(updater, variant.updater),
    }
    if variant.bundle is not None:
        update["bundle"] = variant.bundle
    return update


def check_compatible(main: Engine, other: Engine, variant: Variant) -> None:
    """A variant's engine must index the same items in a space of the same dimension."""
    same = main.n_items == other.n_items and main.space.dim == other.space.dim
    if same:
        same = all(main.item_id(i) == other.item_id(i) for i in range(main.n_items))
    if not same:
        raise ConfigError(
            f"variant {variant.name!r} bundle {variant.bundle!r} must have the same item ids and "
            f"embedding dimension as the main bundle (user states are shared): got "
            f"{other.n_items} items x {other.space.dim} vs {main.n_items} x {main.space.dim}"
        )


class ExperimentRuntime:
    """The running experiment of one replica (Gateway or EmbeddingUpdater).

    Parameters
    ----------
    experiments : every configured experiment (reports are served for all of them).
    store : the shared store (its own connection: called from worker threads).
    main : the replica's engine, which serves variants without overrides.
    make_engine : builds a variant's engine; called once per overriding variant at start.
    clock : seconds since the epoch.
    """

    def __init__(
        self,
        experiments: Sequence[Experiment],
        store: Store,
        main: Engine,
        make_engine: EngineFactory,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.experiments = {e.id: e for e in experiments}
        self.active = next((e for e in experiments if e.enabled), None)
        self._store = store
        self._main = main
        self._clock = clock
        self._engines: dict[str, Engine] = {}
        self._assigner = Assigner(self.active, store) if self.active else None
        self._allocation: dict[str, float] | None = None
        self._allocation_at = float("-inf")
        self._lock = threading.Lock()
        if self.active is not None:
            for variant in self.active.variants:
                if not variant.is_default:
                    engine = make_engine(variant)
                    check_compatible(main, engine, variant)
                    self._engines[variant.name] = engine

    @property
    def overrides_updates(self) -> bool:
        """Whether some variant applies events differently (its own updater settings or bundle)."""
        return self.active is not None and any(
            v.updater or v.bundle for v in self.active.variants if v.name in self._engines
        )

    # ------------------------------------------------------------------ assignment
    def allocation(self) -> dict[str, float] | None:
        """The current Thompson shares (recomputed and stored when due), or ``None``."""
        experiment = self.active
        if experiment is None or not experiment.thompson.enabled:
            return None
        now = self._clock()
        with self._lock:
            if now - self._allocation_at < experiment.thompson.update_every_s:
                return self._allocation
            self._allocation_at = now
        shares = thompson_allocation(experiment, self._store.experiment_counts(experiment.id))
        if shares is not None:
            self._store.put_allocation(experiment.id, shares)
        else:
            shares = self._store.get_allocation(experiment.id)
        self._allocation = shares
        return shares

    def assign(self, user_id: str) -> str | None:
        """The user's variant in the running experiment (``None`` when none runs). Blocking."""
        if self._assigner is None:
            return None
        return self._assigner.assign(user_id, self.allocation())

    def engine(self, variant: str | None, *, sync: bool = True) -> Engine:
        """The engine that serves ``variant`` (the main one for ``None`` or a default variant).

        ``sync`` picks up items and promotions other replicas added: call it under the replica's
        engine lock, as the main engine's sync is.
        """
        engine = self._engines.get(variant) if variant is not None else None
        if engine is None:
            return self._main
        if sync:
            engine.sync()
        return engine

    def engine_for_user(self, user_id: str) -> Engine:
        """The engine that applies this user's events (their variant's updater settings)."""
        return self.engine(self.assign(user_id)) if self.overrides_updates else self._main

    # ------------------------------------------------------------------ exposures and outcomes
    def expose(self, request_id: str, user_id: str, variant: str, item_ids: Sequence[str]) -> None:
        """Record the response as an exposure of the running experiment. Blocking (one fsync)."""
        if self.active is None:
            return
        stamp = round(self._clock() * 1000)
        self._store.record_exposure(
            Exposure(request_id, user_id, variant, tuple(item_ids), stamp, self.active.id)
        )

    def attribute(self, events: Sequence[IncomingEvent]) -> list[Attribution]:
        """Attribute events that carry a ``request_id``; what was newly counted. Blocking."""
        found = []
        for event in events:
            if not event.request_id:
                continue
            touch = Touch(event.request_id, event.user_id, event.item_id, event.event_type, event.timestamp)
            result = attribute(self._store, self.experiments, touch)
            if result is not None and result.outcomes:
                found.append(result)
        return found

    def report(self, experiment_id: str) -> dict[str, Any] | None:
        """The experiment's report, or ``None`` when no such experiment is configured. Blocking."""
        experiment = self.experiments.get(experiment_id)
        if experiment is None:
            return None
        counts = self._store.experiment_counts(experiment.id)
        allocation = self._store.get_allocation(experiment.id) if experiment.thompson.enabled else None
        report = experiment_report(experiment, counts, allocation)
        report["running"] = experiment is self.active
        return report
