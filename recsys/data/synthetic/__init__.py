"""Seeded synthetic interaction data with real structure and exactly counted dirt.

Users mix two latent taste clusters, items belong to one cluster (their topic, which shapes their
title, text, categories and tags), and a user's choices follow cluster affinity times power-law
popularity. Events come in sessions down a funnel (view, click, like / rating / share /
add_to_cart, purchase) with some negative events (dislike, skip), mostly off-cluster.

:func:`generate` streams the events to ``events/part-NNNNN.<ext>`` in chunks, writes
``items/`` and ``users/`` in the same format and a ``manifest.json`` (:class:`SyntheticManifest`)
with the resolved config and the exact count of every kind of injected dirt. The same config
gives byte-identical files.

Examples
--------
>>> from recsys.data.synthetic import DirtConfig, SyntheticConfig, generate
>>> config = SyntheticConfig(n_events=20_000, seed=1, dirt=DirtConfig.none())
>>> generate(config, "/tmp/wf-synthetic").injected.rows()  # doctest: +SKIP
0
"""

from recsys.data.synthetic._generate import ProgressCallback, generate
from recsys.data.synthetic.config import DirtConfig, SyntheticConfig
from recsys.data.synthetic.manifest import EventDirtCounts, ItemDirtCounts, SyntheticManifest, TableFiles

__all__ = [
    "DirtConfig",
    "EventDirtCounts",
    "ItemDirtCounts",
    "ProgressCallback",
    "SyntheticConfig",
    "SyntheticManifest",
    "TableFiles",
    "generate",
]
