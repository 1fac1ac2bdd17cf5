"""Sentiment of review and comment text, with VADER (lexicon and rules; no model download).

The score is VADER's *compound* score in ``[-1, 1]``: above about 0.05 reads positive, below about
-0.05 negative. It feeds the sentiment multiplier of :func:`recsys.features.weights.event_weights`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from recsys.features._clean import is_missing


class SentimentScorer:
    """Compound sentiment scores of texts, ``0.0`` for missing or blank text.

    Identical texts are scored once: within a call, and across calls through a bounded LRU cache.
    Safe to share between threads.

    Parameters
    ----------
    cache_size:
        Texts remembered across calls (0 disables the cross-call cache).

    Examples
    --------
    >>> scorer = SentimentScorer()
    >>> scores = scorer.score(["I love this film, wonderful!", "Awful. I hated it.", None])
    >>> [bool(scores[0] > 0), bool(scores[1] < 0), float(scores[2])]
    [True, True, 0.0]
    """

    def __init__(self, *, cache_size: int = 100_000) -> None:
        self.cache_size = cache_size
        self._analyzer: Any = None
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _get_analyzer(self) -> Any:
        if self._analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._analyzer = SentimentIntensityAnalyzer()
        return self._analyzer

    def score(self, texts: Sequence[str | None]) -> np.ndarray:
        """Compound scores, float64 in ``[-1, 1]``, one per text."""
        unique: dict[str, float] = {}
        for text in texts:
            if not is_missing(text) and text not in unique and str(text).strip():
                unique[str(text)] = 0.0
        with self._lock:
            for text in unique:
                unique[text] = self._score_one(text)
        out = np.zeros(len(texts), dtype=np.float64)
        for position, text in enumerate(texts):
            if not is_missing(text):
                out[position] = unique.get(str(text), 0.0)
        return out

    def _score_one(self, text: str) -> float:
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            return cached
        value = float(self._get_analyzer().polarity_scores(text)["compound"])
        if self.cache_size > 0:
            self._cache[text] = value
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {"cache_size": self.cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]
