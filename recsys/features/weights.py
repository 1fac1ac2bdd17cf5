r"""The one event-weighting function: how much, and in which direction, an event counts.

Preprocessing, every model family and the real-time updater weight events through
:func:`event_weights` with a :class:`WeightConfig`, so an event means the same everywhere.

The formula, for an event of type ``t`` with value ``v``, sentiment ``s`` and age ``a`` days::

    base  = W[t] * (v - rating_neutral) / rating_scale   if t is the rating type and v is not NaN
          = W[t]                                          otherwise
    mult  = clip(1 + sentiment_alpha * s * sign(base), sentiment_min_multiplier,
                 sentiment_max_multiplier)                if s is not NaN, else 1
    decay = 0.5 ** (max(a, 0) / half_life_days)           if half_life_days is set and a is not NaN,
                                                          else 1
    weight = base * mult * decay                          (float32)

* ``W[t]`` is the signed type weight from :class:`~recsys.data.schema.EventTypes` (defaults:
  ``schema.DEFAULT_EVENT_WEIGHTS``; ``dislike`` and ``skip`` are negative).
* Ratings: with the defaults (neutral 3.0, scale 2.0, ``W[rating]`` 1.0) a 0.5..5 star rating maps to
  ``-1.25 .. +1.0``: 5 -> +1.0, 4 -> +0.5, 3 -> 0.0, 1 -> -1.0. A rating without a value counts as a
  plain interaction of weight ``W[rating]``.
* Sentiment (VADER compound in ``[-1, 1]``, NaN for events without text) scales the *magnitude*:
  sentiment that agrees with the event's direction amplifies it (a glowing review on a like, a
  scathing one on a dislike), disagreeing sentiment damps it. The ``sign(base)`` factor makes this
  hold for negative events too; with the default clip at 0 the sentiment never flips an event's sign.
* Time decay halves the weight every ``half_life_days``; events dated after the reference time
  count as age 0.

Negative events keep negative weights: nothing here drops or zeroes them (only a rating at exactly
the neutral value, or a decay underflow, gives 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.data.schema import EventTypes
from recsys.errors import DataError

ArrayLike = np.ndarray | pd.Series | Sequence[Any]


class WeightConfig(BaseModel):
    """How events are weighted; see the module docstring for the exact formula.

    Examples
    --------
    >>> config = WeightConfig(half_life_days=30.0)
    >>> event_weights(["like", "dislike", "rating"], values=[None, None, 5.0], config=config).tolist()
    [3.0, -3.0, 1.0]
    >>> event_weights(["like"], ages_days=[30.0], config=config).tolist()
    [1.5]
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_types: EventTypes = Field(default_factory=EventTypes)
    """Signed weight of each event type, and which type carries a rating."""
    rating_neutral: float = 3.0
    """The rating that counts as neither liked nor disliked."""
    rating_scale: float = Field(default=2.0, gt=0.0)
    """Rating distance from neutral that counts as one unit of weight."""
    sentiment_alpha: float = Field(default=0.5, ge=0.0)
    """Strength of the sentiment multiplier; 0 switches sentiment off."""
    sentiment_min_multiplier: float = Field(default=0.0, ge=0.0)
    sentiment_max_multiplier: float = Field(default=2.0, ge=0.0)
    half_life_days: float | None = Field(default=None, gt=0.0)
    """Age at which an event counts half; ``None`` disables time decay."""

    @model_validator(mode="after")
    def _ordered_clip(self) -> WeightConfig:
        if self.sentiment_min_multiplier > self.sentiment_max_multiplier:
            raise ValueError(
                "sentiment_min_multiplier must not exceed sentiment_max_multiplier, got "
                f"{self.sentiment_min_multiplier} > {self.sentiment_max_multiplier}"
            )
        return self


def _float_array(values: ArrayLike | None, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array: np.ndarray
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        array = values.astype(np.float64, copy=False)
    else:
        series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
        array = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
    if array.shape != (n,):
        raise ValueError(f"{name} has shape {array.shape}, expected ({n},) like event_types")
    return array


def event_weights(
    event_types: ArrayLike,
    values: ArrayLike | None = None,
    sentiments: ArrayLike | None = None,
    ages_days: ArrayLike | None = None,
    config: WeightConfig | None = None,
) -> np.ndarray:
    """Signed float32 weight of each event (formula in the module docstring).

    Parameters
    ----------
    event_types:
        Event type names (array, list, or Series of any string or categorical dtype).
    values:
        Event values (the rating of ``rating`` events; ignored for other types); ``None`` = absent.
    sentiments:
        Sentiment in ``[-1, 1]`` of each event's text, NaN where it has none; ``None`` = no text.
    ages_days:
        Age of each event in days at the reference time (see
        :func:`recsys.features.temporal.recency_days`); ``None`` = no decay.
    config:
        The weighting; ``None`` uses ``WeightConfig()``.

    Raises
    ------
    DataError
        An event type is unknown to ``config.event_types`` (or missing).
    """
    config = config if config is not None else WeightConfig()
    codes, uniques = pd.factorize(
        event_types if isinstance(event_types, pd.Series | np.ndarray) else np.asarray(event_types, object)
    )
    n = len(codes)
    type_weights = config.event_types.weights
    names = [str(name) for name in uniques]
    unknown = sorted({name for name in names if name not in type_weights})
    if unknown or (codes < 0).any():
        shown = unknown + (["<missing>"] if (codes < 0).any() else [])
        raise DataError(
            f"unknown event types {shown}; known are {sorted(type_weights)}. Quarantine such rows "
            "during preprocessing or add the types to WeightConfig.event_types",
            column="event_type",
        )
    table = np.asarray([type_weights[name] for name in names], dtype=np.float64)
    weights = table[codes] if n else np.zeros(0, dtype=np.float64)

    value_array = _float_array(values, n, "values")
    rating_type = config.event_types.rating_type
    if value_array is not None and rating_type in names:
        is_rating = (codes == names.index(rating_type)) & ~np.isnan(value_array)
        scaled = weights * (value_array - config.rating_neutral) / config.rating_scale
        weights = np.where(is_rating, scaled, weights)

    sentiment_array = _float_array(sentiments, n, "sentiments")
    if sentiment_array is not None and config.sentiment_alpha != 0.0:
        multiplier = np.clip(
            1.0 + config.sentiment_alpha * sentiment_array * np.sign(weights),
            config.sentiment_min_multiplier,
            config.sentiment_max_multiplier,
        )
        weights = weights * np.where(np.isnan(sentiment_array), 1.0, multiplier)

    age_array = _float_array(ages_days, n, "ages_days")
    if age_array is not None and config.half_life_days is not None:
        age = np.where(np.isnan(age_array), 0.0, np.maximum(age_array, 0.0))
        weights = weights * np.exp2(-age / config.half_life_days)

    return weights.astype(np.float32)
