"""Re-ranking: maximal marginal relevance (MMR) with an optional per-region cap.

MMR (Carbonell & Goldstein 1998) picks, one at a time, the candidate maximising::

    lambda * relevance_j - (1 - lambda) * max_{s in page} cos(item_j, item_s)

with relevance min-max scaled to ``[0, 1]`` over the candidates, so ``lambda`` means the same
whatever the score scale.
"""

from __future__ import annotations

import numpy as np

from recsys.errors import ConfigError


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
    cosines: np.ndarray | None = None,
) -> list[int]:
    """Select ``count`` of ``candidates`` (item indices, best first) by MMR.

    ``relevance`` is aligned with ``candidates``; ``unit`` holds unit item vectors. With
    ``max_per_region``, at most that many items of one region are taken while others remain.
    ``groups`` (aligned with ``candidates``) and ``quotas`` (group -> minimum count) guarantee each
    group its quota: once the slots left only cover the unmet quotas, only those groups compete.
    ``cosines``: ``unit[candidates] @ unit[candidates].T``, when the caller has it.

    Examples
    --------
    >>> import numpy as np
    >>> unit = np.array([[1, 0], [1, 0], [0, 1]], dtype="float32")
    >>> mmr(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.5]), unit, 2, 0.5)
    [0, 2]
    """
    if not 0.0 <= mmr_lambda <= 1.0:
        raise ConfigError(f"mmr_lambda must be in [0, 1], got {mmr_lambda!r}")
    if count <= 0 or candidates.size == 0:
        return []
    low = relevance.min()
    span = float(relevance.max() - low)
    scaled = (relevance - low) / span if span > 0 else np.ones_like(relevance, dtype=np.float64)
    if cosines is None:
        vectors = unit[candidates]
        cosines = vectors @ vectors.T
    # ``(1 - lambda) * cos`` of every pair, once: a candidate's penalty is its max over the page (the
    # same numbers as scaling the max, since rounding a product by a non-negative is monotonic).
    weighted = (1.0 - mmr_lambda) * cosines
    # The objective is ``relevance_part - penalty`` with -inf where a candidate may not be picked.
    # Rather than masking it every step, the -inf goes into the relevance part once, when a
    # candidate is taken (``relevance_part``) or its region fills (``capped_part``): -inf minus a
    # finite penalty is -inf, so the objective is the same, element for element.
    relevance_part = mmr_lambda * scaled
    penalty: np.ndarray = np.zeros(candidates.size)  # max weighted similarity to the page (0 while empty)
    available = np.ones(candidates.size, dtype=bool)
    n_available = candidates.size
    # A cap below 1 never applies: every region is full from the start, so no candidate is outside one.
    cap = max_per_region if regions is not None and max_per_region is not None else 0
    if regions is not None and cap > 0:
        region_of = regions[candidates]
        region_list = region_of.tolist()
        per_region: dict[int, int] = {}
        capped_part = relevance_part.copy()  # also -inf in the full regions
        outside_full = candidates.size  # available candidates outside the full regions
    unmet = dict(quotas) if groups is not None and quotas else {}  # group -> picks it still needs
    short = sum(left for left in unmet.values() if left > 0)  # picks all the groups still need
    group_masks: dict[int, np.ndarray] = {}  # group -> its candidates
    candidate_list = candidates.tolist()
    group_list = groups.tolist() if groups is not None else []
    chosen: list[int] = []
    while len(chosen) < count and n_available:
        # The cap applies while some available candidate is outside the full regions.
        use_cap = cap > 0 and outside_full > 0
        objective = (capped_part if use_cap else relevance_part) - penalty
        if short and count - len(chosen) <= short:  # only the slots the quotas need are left
            assert groups is not None
            needed = [g for g, left in unmet.items() if left > 0]
            if needed:
                for group in needed:  # the same as np.isin(groups, needed), without its overhead
                    if group not in group_masks:
                        group_masks[group] = groups == group
                wanted = np.logical_or.reduce([group_masks[g] for g in needed]) & available
                if wanted.any():
                    objective[~wanted] = -np.inf
        best = int(objective.argmax())
        chosen.append(candidate_list[best])
        of = group_list[best] if unmet else None  # the group of the pick, when quotas count it
        if of in unmet:
            short -= unmet[of] > 0
            unmet[of] -= 1
        # ``best`` is a taken candidate only when every objective is -inf (a quota's groups all in full
        # regions): it is appended again, as before, but not counted twice.
        was_available = bool(available[best])
        available[best] = False
        n_available -= was_available
        relevance_part[best] = -np.inf
        if cap > 0:
            capped_part[best] = -np.inf
            region = region_list[best]
            per_region[region] = per_region.get(region, 0) + 1
            if was_available and per_region[region] <= cap:  # its region was not full before
                outside_full -= 1
            if per_region[region] == cap:  # the region fills: block the rest of it
                members = region_of == region
                capped_part[members] = -np.inf
                outside_full -= int(np.count_nonzero(members & available))
        if len(chosen) == 1:
            penalty = weighted[best].copy()
        else:
            np.maximum(penalty, weighted[best], out=penalty)
    return chosen


def mean_pairwise_similarity(items: list[int], unit: np.ndarray) -> float:
    """Average cosine over the distinct pairs of ``items`` (a page's intra-list similarity)."""
    if len(items) < 2:
        return 0.0
    vectors = unit[np.asarray(items)]
    sims = vectors @ vectors.T
    upper = np.triu_indices(len(items), 1)
    return float(sims[upper].mean())
