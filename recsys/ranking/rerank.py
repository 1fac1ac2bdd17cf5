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
    closest = np.full(candidates.size, -np.inf)
    available = np.ones(candidates.size, dtype=bool)
    taken_per_region: dict[int, int] = {}
    chosen: list[int] = []
    chosen_groups: list[int] = []
    while len(chosen) < count and available.any():
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        objective = mmr_lambda * scaled - (1.0 - mmr_lambda) * penalty
        objective = np.where(available, objective, -np.inf)
        if regions is not None and max_per_region is not None:
            full = np.array([taken_per_region.get(int(r), 0) >= max_per_region for r in regions[candidates]])
            if (available & ~full).any():
                objective = np.where(full, -np.inf, objective)
        if groups is not None and quotas:
            unmet = {g: q - sum(1 for c in chosen_groups if c == g) for g, q in quotas.items()}
            needed = [g for g, left in unmet.items() if left > 0]
            if needed and count - len(chosen) <= sum(unmet[g] for g in needed):
                wanted = np.isin(groups, needed) & available
                if wanted.any():
                    objective = np.where(wanted, objective, -np.inf)
        best = int(np.argmax(objective))
        chosen.append(int(candidates[best]))
        if groups is not None:
            chosen_groups.append(int(groups[best]))
        available[best] = False
        closest = np.maximum(closest, similarity[best])
        if regions is not None:
            region = int(regions[candidates[best]])
            taken_per_region[region] = taken_per_region.get(region, 0) + 1
    return chosen


def mean_pairwise_similarity(items: list[int], unit: np.ndarray) -> float:
    """Average cosine over the distinct pairs of ``items`` (a page's intra-list similarity)."""
    if len(items) < 2:
        return 0.0
    vectors = unit[np.asarray(items)]
    sims = vectors @ vectors.T
    upper = np.triu_indices(len(items), 1)
    return float(sims[upper].mean())
