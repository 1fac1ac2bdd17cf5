"""The serving core, free of Ray: a bundle of models (:mod:`recsys.engine.bundle`) and the
per-replica :class:`~recsys.engine.core.Engine` that applies events and ranks pages over a store."""

from recsys.engine.bundle import BundleParts, load_bundle, train_bundle
from recsys.engine.core import Ack, Engine, IncomingEvent, Page

__all__ = ["Ack", "BundleParts", "Engine", "IncomingEvent", "Page", "load_bundle", "train_bundle"]
