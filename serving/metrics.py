"""Wayfinder's custom metrics, recorded through Ray's metrics API and exported on Ray's Prometheus port.

Every Ray node runs a metrics agent that serves ``/metrics`` on its ``--metrics-export-port``; the
replicas of this app record into it through ``ray.serve.metrics`` (Ray's ``ray.util.metrics``
classes, which inside a replica add the ``application``, ``deployment`` and ``replica`` labels).
Ray prefixes each name with ``ray_``, adds ``_total`` to counters, and labels every series with
``WorkerId``, ``NodeAddress`` and ``SessionName`` too; sum them away in queries:
``sum by (event_type) (rate(ray_wayfinder_events_ingested_total[5m]))``.

================================================  =========  ===================================
series (as Prometheus sees it)                    type       labels
================================================  =========  ===================================
``ray_wayfinder_events_ingested_total``           counter    ``event_type``, ``status``
``ray_wayfinder_embedding_update_seconds``        histogram  (one observation per ingest call)
``ray_wayfinder_recommendation_seconds``          histogram  (one per recommendation request)
``ray_wayfinder_recommendations_total``           counter    ``zero_history`` (``true``/``false``)
``ray_wayfinder_exposures_total``                 counter    ``experiment``, ``variant``
``ray_wayfinder_conversions_total``               counter    ``experiment``, ``variant``, ``event_type``
``ray_wayfinder_store_errors_total``              counter    ``operation``, ``error``
``ray_wayfinder_model_info``                      gauge      ``model_version``, ``fingerprint``
================================================  =========  ===================================

The share of zero-history users is ``recommendations_total{zero_history="true"}`` over all
recommendations; a variant's CTR is its conversions over its exposures. ``model_info`` is 1 for the
model a replica serves (0 for one it replaced). ``monitoring/grafana-dashboard.json`` charts them.

Labels are checked, not trusted: an empty, non-string or over-long value raises ``ValueError``
(label values become Prometheus series, so they must come from configuration, never from users).

Examples
--------
>>> metrics = serving_metrics()
>>> metrics.recommendation(0.012, zero_history=True)
>>> observe_exposure("homepage-2026", "B")
>>> observe_conversion("homepage-2026", "B", "click")
>>> observe_exposure("homepage-2026", "")
Traceback (most recent call last):
...
ValueError: metric label 'variant' must be a non-empty string of at most 64 characters, got ''
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ray.serve.metrics import Counter, Gauge, Histogram

LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
"""Histogram bucket bounds in seconds: fine below 100 ms, where the serving targets are."""

MAX_LABEL_LENGTH = 64


def _keys(*names: str) -> Any:
    """Tag keys; ``ray.serve.metrics`` annotates them as a one-element tuple but takes any number."""
    return names


def _label(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"metric label {name!r} must be a non-empty string of at most {MAX_LABEL_LENGTH} "
            f"characters, got {value!r}"
        )
    return value


def model_identity(bundle_dir: str | Path) -> tuple[str, str]:
    """``(model_version, fingerprint)`` of a serving bundle.

    The version is the manifest's ``version`` when it has one, else the bundle directory's name; the
    fingerprint is the first 12 hex digits of a SHA-256 over ``bundle.json`` and the model files
    (``space/``, ``scorer.npz``), so two bundles with the same name but different weights differ.
    """
    root = Path(bundle_dir)
    manifest_path = root / "bundle.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    version = str(manifest.get("version") or root.resolve().name)[:MAX_LABEL_LENGTH]
    digest = hashlib.sha256()
    model_files = [manifest_path, root / "scorer.npz", *sorted((root / "space").rglob("*"))]
    for path in model_files:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return version, digest.hexdigest()[:12]


class ServingMetrics:
    """The app's metrics in one process (a Serve replica); get it with :func:`serving_metrics`."""

    def __init__(self) -> None:
        self._events = Counter(
            "wayfinder_events_ingested",
            "Events acknowledged by the embedding updater, by event type and outcome.",
            tag_keys=_keys("event_type", "status"),
        )
        self._update_seconds = Histogram(
            "wayfinder_embedding_update_seconds",
            "Seconds to apply one ingest call (a batch of events) durably in the embedding updater.",
            boundaries=LATENCY_BUCKETS_S,
        )
        self._recommend_seconds = Histogram(
            "wayfinder_recommendation_seconds",
            "Seconds to answer one recommendation request in the gateway.",
            boundaries=LATENCY_BUCKETS_S,
        )
        self._recommendations = Counter(
            "wayfinder_recommendations",
            "Recommendation requests, by whether the user had no history (zero_history=true).",
            tag_keys=_keys("zero_history"),
        )
        self._exposures = Counter(
            "wayfinder_exposures",
            "Recommendation pages shown per experiment variant.",
            tag_keys=_keys("experiment", "variant"),
        )
        self._conversions = Counter(
            "wayfinder_conversions",
            "Events attributed to an exposure, per experiment variant and event type.",
            tag_keys=_keys("experiment", "variant", "event_type"),
        )
        self._store_errors = Counter(
            "wayfinder_store_errors",
            "StoreError raised by the state store, by engine operation and error class.",
            tag_keys=_keys("operation", "error"),
        )
        self._model = Gauge(
            "wayfinder_model_info",
            "1 for the model version a replica serves, 0 for one it replaced.",
            tag_keys=_keys("model_version", "fingerprint"),
        )
        self._current_model: dict[str, str] | None = None

    def events_ingested(self, outcomes: Iterable[tuple[str, str]]) -> None:
        """Count ``(event_type, status)`` pairs, one per acknowledged event."""
        counts: dict[tuple[str, str], int] = {}
        for event_type, status in outcomes:
            key = (_label("event_type", event_type), _label("status", status))
            counts[key] = counts.get(key, 0) + 1
        for (event_type, status), count in counts.items():
            self._events.inc(count, tags={"event_type": event_type, "status": status})

    def embedding_update(self, seconds: float) -> None:
        self._update_seconds.observe(max(float(seconds), 0.0))

    def recommendation(self, seconds: float, *, zero_history: bool) -> None:
        self._recommend_seconds.observe(max(float(seconds), 0.0))
        self._recommendations.inc(1, tags={"zero_history": "true" if zero_history else "false"})

    def exposure(self, experiment: str, variant: str) -> None:
        tags = {"experiment": _label("experiment", experiment), "variant": _label("variant", variant)}
        self._exposures.inc(1, tags=tags)

    def conversion(self, experiment: str, variant: str, event_type: str) -> None:
        tags = {
            "experiment": _label("experiment", experiment),
            "variant": _label("variant", variant),
            "event_type": _label("event_type", event_type),
        }
        self._conversions.inc(1, tags=tags)

    def store_error(self, operation: str, error: BaseException) -> None:
        tags = {"operation": _label("operation", operation), "error": type(error).__name__}
        self._store_errors.inc(1, tags=tags)

    def model_loaded(self, model_version: str, fingerprint: str) -> None:
        """Mark this model as served (1) and the one it replaces, if any, as not (0)."""
        tags = {
            "model_version": _label("model_version", model_version),
            "fingerprint": _label("fingerprint", fingerprint),
        }
        if self._current_model is not None and self._current_model != tags:
            self._model.set(0, tags=self._current_model)
        self._model.set(1, tags=tags)
        self._current_model = tags


@functools.cache
def serving_metrics() -> ServingMetrics:
    """This process's :class:`ServingMetrics`, created on first use.

    One per process, like Ray's own metric registry it records into: a replica's gateway, its
    background tasks and the A/B code all count into the same series.
    """
    return ServingMetrics()


def observe_exposure(experiment: str, variant: str) -> None:
    """Count one recommendation page shown under ``experiment``'s ``variant``."""
    serving_metrics().exposure(experiment, variant)


def observe_conversion(experiment: str, variant: str, event_type: str) -> None:
    """Count one event (a click, like, purchase...) attributed to an exposure of ``variant``."""
    serving_metrics().conversion(experiment, variant, event_type)
