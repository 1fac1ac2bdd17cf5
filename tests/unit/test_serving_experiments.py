"""The serving side of experiments without Serve: variant engines, exposures, Thompson shares."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from recsys.data.ids import IdIndex
from recsys.embeddings import EmbeddingSpace
from recsys.engine import Engine, IncomingEvent
from recsys.errors import ConfigError
from recsys.experiments import Experiment, Variant
from recsys.ranking import RankerConfig
from recsys.store import SQLiteStore
from serving.experiments import ExperimentRuntime


def engine(store: SQLiteStore, n_items: int = 40, ranker: RankerConfig | None = None) -> Engine:
    rng = np.random.default_rng(0)
    space = EmbeddingSpace.from_vectors(
        rng.normal(size=(n_items, 8)).astype(np.float32),
        np.arange(n_items, 0, -1, dtype=np.float32),
        n_regions=4,
    )
    return Engine(
        space=space, item_ids=IdIndex([f"i{n}" for n in range(n_items)]), store=store, ranker_config=ranker
    )


def experiment(**extra: object) -> Experiment:
    variants = [Variant(name="A", share=0.5), Variant(name="B", share=0.5, ranker={"pool_size": 20})]
    return Experiment.model_validate({"id": "e1", "variants": variants, **extra})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_variant_engines_exposures_and_report(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    built: list[str] = []

    def make(variant: Variant) -> Engine:
        built.append(variant.name)
        return engine(store, ranker=RankerConfig.model_validate(variant.ranker))

    clock = Clock()
    main = engine(store)
    runtime = ExperimentRuntime([experiment()], store, main, make, clock=clock)
    assert built == ["B"] and runtime.engine("A") is main and runtime.engine("B") is not main
    assert not runtime.overrides_updates  # only ranker settings differ
    users = {f"u{n}": runtime.assign(f"u{n}") for n in range(40)}
    assert set(users.values()) == {"A", "B"}
    user, variant = next(iter(users.items()))
    page = runtime.engine(variant).recommend(user, 5)
    items = [main.item_id(r.item) for r in page.items]
    runtime.expose("req-1", user, variant, items)
    clock.now += 10
    events = [
        IncomingEvent(user, items[0], "purchase", clock.now, request_id="req-1"),
        IncomingEvent(user, items[1], "click", clock.now, request_id="req-1"),  # already clicked through
        IncomingEvent(user, items[0], "click", clock.now),  # no request id
    ]
    (counted,) = runtime.attribute(events)
    assert (counted.variant, counted.outcomes) == (variant, ("clicks", "conversions"))
    report = runtime.report("e1")
    assert report is not None and report["running"] and runtime.report("other") is None
    row = next(r for r in report["variants"] if r["variant"] == variant)
    assert (row["exposures"], row["click_through"]["count"], row["conversion"]["count"]) == (1, 1, 1)
    clock.now += 3601  # after the window
    runtime.expose("req-2", user, variant, items)
    clock.now += 3601
    assert runtime.attribute([IncomingEvent(user, items[0], "click", clock.now, request_id="req-2")]) == []
    store.close()


def test_a_bundle_with_other_items_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    models = Experiment(
        id="m", variants=[Variant(name="A", share=0.5), Variant(name="B", share=0.5, bundle="x")]
    )
    with pytest.raises(ConfigError, match="same item ids"):
        ExperimentRuntime([models], store, engine(store), lambda v: engine(store, n_items=30))
    store.close()


def test_thompson_moves_new_users_and_keeps_assigned_ones(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    clock = Clock()
    config = experiment(
        thompson={"enabled": True, "update_every_s": 30, "min_exposures": 50, "min_share": 0.1}
    )
    main = engine(store)
    replica = ExperimentRuntime([config], store, main, lambda v: engine(store), clock=clock)
    early = {f"old{n}": replica.assign(f"old{n}") for n in range(200)}
    assert 70 < Counter(early.values())["B"] < 130  # configured shares until there is data
    for n in range(100):  # B converts far better
        user = f"old{n}"
        replica.expose(f"r{n}", user, early[user], ["i1"])
        if early[user] == "B" or n % 10 == 0:
            runtime_event = IncomingEvent(user, "i1", "purchase", clock.now, request_id=f"r{n}")
            replica.attribute([runtime_event])
    clock.now += 31
    other = ExperimentRuntime([config], store, main, lambda v: engine(store), clock=clock)  # another replica
    assert {u: other.assign(u) for u in early} == early  # assigned users keep their variant
    shares = store.get_allocation("e1")
    assert shares is not None and shares["B"] == pytest.approx(0.9, abs=0.01) and shares["A"] == 0.1
    fresh = Counter(other.assign(f"new{n}") for n in range(500))
    assert fresh["B"] > 400
    report = other.report("e1")
    assert report is not None and report["allocation_source"] == "thompson"
    store.close()
