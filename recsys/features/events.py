"""Per-event features written beside every clean interaction.

``hour_of_day``, ``day_of_week`` and ``recency_days`` (age at the reference time, which preprocessing
takes as the newest valid event so the same input gives the same output), ``sentiment`` (VADER
compound of the event's review text, NaN without text) and ``weight``, the signed confidence from
:func:`recsys.features.weights.event_weights` (type weight, rating value, sentiment, time decay).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from recsys.data import schema as s
from recsys.features.sentiment import SentimentScorer
from recsys.features.temporal import temporal_features
from recsys.features.weights import WeightConfig, event_weights

EVENT_FEATURE_COLUMNS = ("hour_of_day", "day_of_week", "recency_days", "sentiment", "weight")


def engineer_event_features(
    events: pd.DataFrame,
    *,
    reference_time: datetime,
    config: WeightConfig,
    scorer: SentimentScorer | None = None,
) -> pd.DataFrame:
    """The feature columns of :data:`EVENT_FEATURE_COLUMNS` for typed, valid events."""
    temporal = temporal_features(events[s.TIMESTAMP], now=reference_time)
    sentiment = np.full(len(events), np.nan, dtype=np.float64)
    if s.TEXT in events.columns:
        has_text = events[s.TEXT].notna().to_numpy(dtype=bool)
        if has_text.any():
            texts = events.loc[has_text, s.TEXT].astype(str).tolist()
            sentiment[has_text] = (scorer or SentimentScorer()).score(texts)
    weights = event_weights(
        events[s.EVENT_TYPE].astype(str).to_numpy(dtype=object),
        values=events[s.VALUE].to_numpy(dtype=np.float64, na_value=np.nan),
        sentiments=sentiment,
        ages_days=temporal["recency_days"].to_numpy(),
        config=config,
    )
    return pd.DataFrame(
        {
            "hour_of_day": temporal["hour_of_day"].astype("int8"),
            "day_of_week": temporal["day_of_week"].astype("int8"),
            "recency_days": temporal["recency_days"].astype("float32"),
            "sentiment": sentiment.astype("float32"),
            "weight": weights.astype("float32"),
        },
        index=events.index,
    )
