"""Wayfinder's pure library: data, features, models, evaluation, embeddings and ranking.

Nothing in this package imports ray; the Ray entry points live in ``jobs/`` and ``serving/``.
"""

__version__ = "0.1.0"
