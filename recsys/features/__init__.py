"""Feature engineering: item text and attributes, sentiment, time features and event weights.

Everything here is plain Python over pandas/numpy/scipy/scikit-learn; fitted transformers are saved
as JSON + ``.npz`` by :mod:`recsys.features.artifacts`.
"""

from recsys.features.artifacts import FORMAT_VERSION, FeatureArtifacts, load_features, save_features
from recsys.features.items import ItemFeatures, ItemFeaturizer, NumericStats
from recsys.features.sentiment import SentimentScorer
from recsys.features.temporal import cyclical, day_of_week, hour_of_day, recency_days, temporal_features
from recsys.features.text import STOP_WORDS, ItemTextVectorizer, Tokenizer
from recsys.features.weights import WeightConfig, event_weights

__all__ = [
    "FORMAT_VERSION",
    "STOP_WORDS",
    "FeatureArtifacts",
    "ItemFeatures",
    "ItemFeaturizer",
    "ItemTextVectorizer",
    "NumericStats",
    "SentimentScorer",
    "Tokenizer",
    "WeightConfig",
    "cyclical",
    "day_of_week",
    "event_weights",
    "hour_of_day",
    "load_features",
    "recency_days",
    "save_features",
    "temporal_features",
]
