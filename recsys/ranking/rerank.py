"""Re-ranking: maximal marginal relevance (MMR) with an optional per-region cap.

MMR (Carbonell & Goldstein 1998) picks, one at a time, the candidate maximising::

    lambda * relevance_j - (1 - lambda) * max_{s in page} cos(item_j, item_s)

with relevance min-max scaled to ``[0, 1]`` over the candidates, so ``lambda`` means the same
whatever the score scale.
"""

from __future__ import annotations

import numpy as np


def mmr(
    candidates: np.ndarray,
    relevance: np.ndarray,
    unit: np.ndarray,
    count: int,
    mmr_lambda: float,
    *,
    regions: np.ndarray | None = None,
    max_per_region: int | None = None,
    groups: np.ndarray | None = None,
    quotas: dict[int, int] | None = None,
) -> list[int]:
    """Select ``count`` of ``candidates`` (item indices, best first) by MMR.

    ``relevance`` is aligned with ``candidates``; ``unit`` holds unit item vectors. With
    ``max_per_region``, at most that many items of one region are taken while others remain.
    ``groups`` (aligned with ``candidates``) and ``quotas`` (group -> minimum count) guarantee each
    group its quota: once the slots left only cover the unmet quotas, only those groups compete.

    Examples
    --------
    >>> import numpy as np
    >>> unit = np.array([[1, 0], [1, 0], [0, 1]], dtype="float32")
    >>> mmr(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.5]), unit, 2, 0.5)
    [0, 2]
    """
    if count <= 0 or candidates.size == 0:
        return []
    span = float(relevance.max() - relevance.min())
    scaled = (relevance - relevance.min()) / span if span > 0 else np.ones_like(relevance, dtype=np.float64)
    vectors = unit[candidates]
    similarity = vectors @ vectors.T
    relevance_part = mmr_lambda * scaled
    diversity = 1.0 - mmr_lambda
    penalty = np.zeros(candidates.size)  # max similarity to the page so far (0 while it is empty)
    available = np.ones(candidates.size, dtype=bool)
    cap = max_per_region if regions is not None and max_per_region is not None else 0
    if regions is not None and cap:
        codes, region_of = np.unique(regions[candidates], return_inverse=True)
        per_region = np.zeros(codes.size, dtype=np.int64)
    chosen: list[int] = []
    chosen_groups: list[int] = []
    while len(chosen) < count and available.any():
        objective = relevance_part - diversity * penalty
        objective[~available] = -np.inf
        if cap:
            full = per_region[region_of] >= cap
            if (available & ~full).any():
                objective[full] = -np.inf
        if groups is not None and quotas:
            unmet = {g: q - chosen_groups.count(g) for g, q in quotas.items()}
            needed = [g for g, left in unmet.items() if left > 0]
            if needed and count - len(chosen) <= sum(unmet[g] for g in needed):
                wanted = np.isin(groups, needed) & available
                if wanted.any():
                    objective[~wanted] = -np.inf
        best = int(np.argmax(objective))
        chosen.append(int(candidates[best]))
        if groups is not None:
            chosen_groups.append(int(groups[best]))
        available[best] = False
        penalty = similarity[best] if len(chosen) == 1 else np.maximum(penalty, similarity[best])
        if cap:
            per_region[region_of[best]] += 1
    return chosen


def mean_pairwise_similarity(items: list[int], unit: np.ndarray) -> float:
    """Average cosine over the distinct pairs of ``items`` (a page's intra-list similarity)."""
    if len(items) < 2:
        return 0.0
    vectors = unit[np.asarray(items)]
    sims = vectors @ vectors.T
    upper = np.triu_indices(len(items), 1)
    return float(sims[upper].mean())
