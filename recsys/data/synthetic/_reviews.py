"""Short review sentences whose polarity follows the rating, in the item's topic vocabulary."""

from __future__ import annotations

import numpy as np

from recsys.data.synthetic._vocab import NEGATIVE_WORDS, NEUTRAL_WORDS, OPENERS, POSITIVE_WORDS
from recsys.data.synthetic._world import World


def review_texts(world: World, items: np.ndarray, ratings: np.ndarray, rng: np.random.Generator) -> list[str]:
    """One review per (item, rating): positive words from 3.5 stars, negative up to 2, else neutral."""
    n = len(items)
    out: list[str] = []
    moods = (NEGATIVE_WORDS, NEUTRAL_WORDS, POSITIVE_WORDS)
    mood = np.where(ratings >= 3.5, 2, np.where(ratings <= 2.0, 0, 1))
    picks = rng.random((n, 5))
    clusters = world.item_cluster[items]
    for row in range(n):
        words = moods[mood[row]]
        topic = world.topics[clusters[row]].words
        u = picks[row]
        opener = OPENERS[int(u[0] * len(OPENERS))].capitalize()
        first, second = words[int(u[1] * len(words))], words[int(u[2] * len(words))]
        noun, other = topic[int(u[3] * len(topic))], topic[int(u[4] * len(topic))]
        out.append(f"{opener} {first} {noun}, and the {other} was {second}.")
    return out
