"""Model families behind the one :class:`~recsys.models.base.Recommender` protocol, and their registry.

Every family is built from a plain dict of hyperparameters, which is what Ray Tune and config files
hand over::

    >>> from recsys.models import build
    >>> model = build("ease", l2=250.0)
    >>> model.get_params()
    {'l2': 250.0}

==================== ======================================= =====================================
family               class                                   optional abilities
==================== ======================================= =====================================
``popularity``       :class:`PopularityRecommender`          scoring
``userknn``          :class:`UserKNNRecommender`             scoring
``itemknn``          :class:`ItemKNNRecommender`             scoring
``ease``             :class:`EASERecommender`                scoring
``puresvd``          :class:`PureSVDRecommender`             scoring, item embeddings
``als``              :class:`ALSRecommender`                 scoring, item embeddings, partial_fit
``bpr``              :class:`BPRRecommender`                 scoring, item embeddings, partial_fit
``biased_mf``        :class:`BiasedMFRecommender`            scoring, item embeddings, predict
``ncf``              :class:`NCFRecommender`                 scoring, item embeddings, partial_fit
``content``          :class:`ContentRecommender`             scoring, item embeddings
``weighted_hybrid``  :class:`WeightedHybrid`                 scoring
``switching_hybrid`` :class:`SwitchingHybrid`                scoring
==================== ======================================= =====================================

:func:`load` reads any saved model, dispatching on the family recorded in its ``model.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError, ConfigError
from recsys.models._common import RecommenderBase, read_metadata
from recsys.models.base import HasItemEmbeddings, Recommender, SupportsPartialFit, SupportsScoring
from recsys.models.biased_mf import BiasedMFRecommender
from recsys.models.content import ContentRecommender
from recsys.models.ease import EASERecommender
from recsys.models.hybrid import SwitchingHybrid, WeightedHybrid
from recsys.models.implicit_mf import ALSRecommender, BPRRecommender
from recsys.models.itemknn import ItemKNNRecommender
from recsys.models.ncf import NCFRecommender
from recsys.models.popularity import PopularityRecommender, windowed_interactions
from recsys.models.puresvd import PureSVDRecommender
from recsys.models.userknn import UserKNNRecommender

FAMILIES: dict[str, type[RecommenderBase]] = {
    cls.family: cls
    for cls in (
        PopularityRecommender,
        UserKNNRecommender,
        ItemKNNRecommender,
        EASERecommender,
        PureSVDRecommender,
        ALSRecommender,
        BPRRecommender,
        BiasedMFRecommender,
        NCFRecommender,
        ContentRecommender,
        WeightedHybrid,
        SwitchingHybrid,
    )
}


def build(family: str, **params: Any) -> Any:
    """Construct an unfitted model of ``family`` from keyword hyperparameters.

    Raises :class:`ConfigError` for an unknown family (listing the known ones) or a parameter the
    family does not take.
    """
    try:
        cls = FAMILIES[family]
    except KeyError:
        raise ConfigError(f"unknown model family {family!r}; known families: {sorted(FAMILIES)}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for model family {family!r}: {exc}") from exc


def load(path: str | Path) -> Any:
    """Load a model saved by any family's ``save``, whatever its family."""
    family = read_metadata(path)["family"]
    if family not in FAMILIES:
        raise ArtifactError(
            f"{Path(path)} holds an unknown model family {family!r}; known: {sorted(FAMILIES)}"
        )
    return FAMILIES[family].load(path)


__all__ = [
    "FAMILIES",
    "ALSRecommender",
    "BPRRecommender",
    "BiasedMFRecommender",
    "ContentRecommender",
    "EASERecommender",
    "HasItemEmbeddings",
    "ItemKNNRecommender",
    "NCFRecommender",
    "PopularityRecommender",
    "PureSVDRecommender",
    "Recommender",
    "SupportsPartialFit",
    "SupportsScoring",
    "SwitchingHybrid",
    "UserKNNRecommender",
    "WeightedHybrid",
    "build",
    "load",
    "windowed_interactions",
]
