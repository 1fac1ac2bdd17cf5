"""The ranker: candidates -> filters -> re-rank -> explain, pure and fast.

1. **Score** every item (or, above ``exact_search_max_items``, the IVF candidates of the user's
   vectors plus the prior's top): the confidence blend of :mod:`recsys.ranking.config`.
2. **Filter**: seen items, category/attribute rules, allow/deny lists (:func:`allowed_items`).
3. **Promote**: each active campaign under its per-user cap offers its most relevant allowed item
   if that item's cosine to the user's closest interest reaches the campaign's floor.
4. **Re-rank** the best ``pool_size`` by MMR with the journey stage's ``lambda``, reserving a share
   of the slots (``interest_quota``) across the user's interests (multi-interest); the stage's
   ``explore_share`` of the slots goes to *adjacent* items: close to an interest
   (``adjacent_min_similarity``) but in a region the user has not touched yet.
5. **Explain**: provenance and the signal items behind each item.

A warm user's blend carries a :class:`~recsys.ranking._scoring.Shortlist`, computed with it: the
rows that every page filtering out only the seen items reads (the pool and its cosines, the
explanations' signal items, the adjacent candidates), so that such a page, the usual one, reads a
few hundred rows and not the whole catalogue while the blend is kept (``Engine``); the pages are
the same as without it.

A user with no signal yet gets the same page for the same inputs (the cold journey stage, the
prior row of their count, no seen items, no campaigns without an interest), so the ranker keeps
those pages, per ``(k, count, categories)``, for its lifetime; a new space or new campaigns come
with a new ranker (:meth:`with_space`, ``Engine.sync``).

:meth:`Ranker.served` records a served page (journey counter, campaign exposures) in the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import UserState
from recsys.errors import ConfigError
from recsys.ranking._explain import Explainer
from recsys.ranking._scoring import Blended, PriorCache, Shortlist, blend, interest_directions
from recsys.ranking.config import Campaign, Filters, RankedItem, RankerConfig, RequestContext
from recsys.ranking.filters import allowed_items
from recsys.ranking.intent import intent_summary
from recsys.ranking.item_item import ItemItemScorer
from recsys.ranking.rerank import mmr
from recsys.ranking.retrieval import IVFIndex, top_indices

NEAREST = 256
"""Adjacent candidates a blend's shortlist keeps in affinity order (a page takes the first
``4 * count`` of them outside the page's regions, and reads all the near rows only when these
hold fewer)."""

MAX_COLD_PAGES = 1024
"""Zero-history pages a ranker keeps (one per ``k``, prior row and category filter asked for)."""


def _cold_key(state: UserState, k: int, filters: Filters) -> tuple[int, int, tuple[str, ...] | None] | None:
    """The cache key of a zero-history page, or ``None`` when the page depends on more than it."""
    if state.has_signal or state.seen or state.interests or state.ls_vector is not None or state.recent:
        return None
    rules = filters.allow is not None or len(filters.deny) or filters.exclude_categories
    if rules or filters.attribute_ranges:
        return None
    categories = None if filters.include_categories is None else tuple(sorted(filters.include_categories))
    return k, state.positives, categories


def _only_seen(filters: Filters) -> bool:
    """Whether ``filters`` drop the seen items and nothing else (the filters of a shortlist)."""
    rules = filters.allow is not None or len(filters.deny) or filters.include_categories is not None
    return filters.exclude_seen and not (rules or filters.exclude_categories or filters.attribute_ranges)


class Ranker:
    """Turns a :class:`UserState` into a page of :class:`RankedItem`.

    Parameters
    ----------
    space : EmbeddingSpace
    scorers : sequence of ItemItemScorer
        Item-item components of the personal score (e.g. the EASE champion, next-items).
    config : RankerConfig
    campaigns : sequence of Campaign

    Examples
    --------
    >>> import numpy as np
    >>> from recsys.embeddings import EmbeddingSpace, EmbeddingUpdater, Event, UserState
    >>> space = EmbeddingSpace.from_vectors(np.eye(4, dtype="float32"), np.arange(4.0), n_regions=2)
    >>> state, _ = EmbeddingUpdater(space).apply(UserState("u"), Event(3, "like", 0.0))
    >>> [r.item for r in Ranker(space).recommend(state, k=2)]
    [2, 1]
    """

    def __init__(
        self,
        space: EmbeddingSpace,
        scorers: Sequence[ItemItemScorer] = (),
        config: RankerConfig | None = None,
        campaigns: Sequence[Campaign] = (),
    ) -> None:
        self.space = space
        self.scorers = tuple(scorers)
        self.config = config if config is not None else RankerConfig()
        self.campaigns = tuple(campaigns)
        self._prior = PriorCache()
        self._index: IVFIndex | None = None
        self._cold_pages: dict[tuple[int, int, tuple[str, ...] | None], tuple[RankedItem, ...]] = {}
        if space.n_items > self.config.exact_search_max_items:
            self._index = IVFIndex.build(space.unit, random_state=0)

    # ------------------------------------------------------------------ public API
    def recommend(
        self,
        state: UserState,
        k: int = 10,
        filters: Filters | None = None,
        request_context: RequestContext | None = None,
        scored: Blended | None = None,
    ) -> list[RankedItem]:
        """The top-``k`` page for ``state`` (fewer when filters leave fewer items).

        ``scored``: :meth:`scores` of this very state from this ranker's space, when the caller
        kept it (the blend does not depend on the journey stage, campaigns or filters).
        """
        if k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        filters = filters if filters is not None else Filters()
        key = _cold_key(state, k, filters)
        if key is None:
            return self._rank(state, k, filters, request_context, scored)
        page = self._cold_pages.get(key)
        if page is None:
            page = tuple(self._rank(state, k, filters, request_context))
            if len(self._cold_pages) < MAX_COLD_PAGES:
                self._cold_pages[key] = page
        return list(page)

    def scores(self, state: UserState) -> Blended:
        """The blended scores :meth:`recommend` ranks ``state`` by (read-only arrays), with the
        :class:`Shortlist` of a page that filters out only the seen items (the usual page: it then
        reads the few rows it needs, not the whole catalogue)."""
        scored = blend(
            self.space, state, self.scorers, self.config.blend, self._ann_candidates(state), self._prior
        )
        scored = replace(scored, shortlist=self._shortlist(state, scored))
        for array in (scored.items, scored.scores, scored.personal, scored.prior, scored.affinity):
            if array is not None:
                array.flags.writeable = False
        return scored

    def _shortlist(self, state: UserState, scored: Blended) -> Shortlist:
        """The blend's :class:`Shortlist`: what :meth:`_rank` would compute for every page that
        filters out only the seen items, computed the same way, once."""
        allowed = self._allowed(Filters(), state, scored)
        top = self._top(scored, allowed, self.config.pool_size + self.config.max_promotions)
        vectors = self.space.unit[scored.items_of(top[: self.config.pool_size])]
        near, touched = self._near(scored, allowed), self._touched(state)
        fresh = near[~touched[self.space.regions[scored.items_of(near)]]]
        listed = Shortlist(
            top=top,
            groups=scored.interest(top),
            cosines=vectors @ vectors.T,
            nearest=fresh[top_indices(scored.affinity[fresh], NEAREST)],  # ties: lower row first
            touched=touched,
        )
        for array in (listed.top, listed.groups, listed.cosines, listed.nearest, listed.touched):
            array.flags.writeable = False
        return listed

    def _rank(
        self,
        state: UserState,
        k: int,
        filters: Filters,
        request_context: RequestContext | None,
        scored: Blended | None = None,
    ) -> list[RankedItem]:
        context = request_context if request_context is not None else RequestContext()
        space = self.space
        stage = self.config.journey.stage(state)
        scored = scored if scored is not None else self.scores(state)
        # Only the seen items filtered out: the blend's shortlist holds what this page reads.
        listed = scored.shortlist if _only_seen(filters) else None
        allowed = self._allowed(filters, state, scored) if listed is None else None

        promoted = self._promotions(state, filters, context)
        taken = {item for item, _, _ in promoted}
        n_explore = round(stage.explore_share * k) if state.has_signal else 0
        n_exploit = max(k - len(promoted) - n_explore, 0)
        pool, groups, cosines = self._pool(scored, listed, allowed, taken)
        pool_items = scored.items_of(pool)
        exploit = mmr(
            pool_items, scored.scores[pool], space.unit, n_exploit, stage.mmr_lambda,
            regions=space.regions, max_per_region=stage.max_per_region,
            groups=groups, quotas=self._quotas(state, n_exploit), cosines=cosines,
        )  # fmt: skip
        explore = self._explore(state, scored, listed, allowed, taken | set(exploit), n_explore)
        if len(exploit) + len(explore) + len(promoted) < k:  # not enough adjacent items: exploit more
            extra = [int(i) for i in pool_items if int(i) not in set(exploit) | set(explore)]
            exploit += extra[: k - len(exploit) - len(explore) - len(promoted)]

        others = explore + [item for item, _, _ in promoted]
        explainer = Explainer(space, state, scored, exploit, others, listed.behind if listed else {})

        def score_of(item: int) -> float:
            row = scored.row(item)
            return float(scored.scores[row]) if row is not None else float("nan")

        page: list[RankedItem] = [explainer.exploit(item, score_of(item)) for item in exploit]
        for offset, item in enumerate(explore):
            slot = min(round((offset + 1) * k / (len(explore) + 1)), len(page))
            page.insert(slot, explainer.explore(item, score_of(item)))
        for item, relevance, campaign in sorted(promoted, key=lambda p: p[2].slot):
            page.insert(min(campaign.slot, len(page)), explainer.promoted(item, relevance, campaign))
        return page[:k]

    def with_space(self, space: EmbeddingSpace) -> Ranker:
        """The same ranker over a new space (after items were added or updated live)."""
        return Ranker(space, self.scorers, self.config, self.campaigns)

    def served(self, state: UserState, page: Sequence[RankedItem]) -> UserState:
        """Record that ``page`` was shown: one more page without a signal, campaign exposures."""
        state.pages_since_signal += 1
        for ranked in page:
            if ranked.campaign_id is not None:
                state.exposures[ranked.campaign_id] = state.exposures.get(ranked.campaign_id, 0) + 1
        state.version += 1
        return state

    def similar_items(self, item: int, k: int = 10) -> list[RankedItem]:
        """Items closest to ``item`` by cosine in the embedding space (the item excluded)."""
        if not 0 <= item < self.space.n_items:
            raise ConfigError(f"item index {item} is outside [0, {self.space.n_items})")
        scores = (self.space.unit @ self.space.unit[item]).astype(np.float64)
        scores[item] = -np.inf
        scores[np.abs(self.space.unit).sum(axis=1) == 0] = -np.inf
        label = self.space.metadata.label(item) if self.space.metadata is not None else f"item {item}"
        return [
            RankedItem(int(j), float(scores[j]), "exploit", f"Similar to {label}", (item,))
            for j in top_indices(scores, k)
        ]

    def intent(self, state: UserState) -> dict[str, object]:
        """JSON-able summary of what the user is after (for AI agents); see :func:`intent_summary`."""
        return intent_summary(self.space, state, self.config)

    # ------------------------------------------------------------------ steps
    def _allowed(self, filters: Filters, state: UserState, scored: Blended) -> np.ndarray:
        """:func:`allowed_items` per row of the scored arrays."""
        mask = allowed_items(filters, state, self.space.n_items, self.space.metadata)
        return mask if scored.items is None else mask[scored.items]

    @staticmethod
    def _top(scored: Blended, allowed: np.ndarray, count: int) -> np.ndarray:
        """The best ``count`` allowed rows by score, best first (ties: lower row first)."""
        return top_indices(np.where(allowed, scored.scores, -np.inf), count)

    def _near(self, scored: Blended, allowed: np.ndarray) -> np.ndarray:
        """The allowed rows (ascending) whose affinity reaches ``adjacent_min_similarity``."""
        return np.flatnonzero(allowed & (scored.affinity >= self.config.adjacent_min_similarity))

    def _pool(
        self, scored: Blended, listed: Shortlist | None, allowed: np.ndarray | None, taken: set[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The exploit pool (rows): the best ``pool_size`` allowed rows not ``taken`` by a promotion;
        their closest interests; their pairwise cosines when the shortlist has them."""
        size = self.config.pool_size + len(taken)
        if listed is not None:  # its first rows are the same as a fresh top_indices'
            pool = listed.top[:size]
            if not taken:
                return pool, listed.groups[: pool.size], listed.cosines
        else:
            assert allowed is not None
            pool = self._top(scored, allowed, size)
        if taken:
            pool = pool[~np.isin(scored.items_of(pool), list(taken))]
        return pool, scored.interest(pool), None

    def _ann_candidates(self, state: UserState) -> np.ndarray | None:
        if self._index is None:
            return None
        directions, _ = interest_directions(state)
        queries = list(directions) + ([state.ls_vector] if state.ls_vector is not None else [])
        found = [self._index.candidates(q, self.config.ann_probe) for q in queries]
        prior = self.space.prior.for_count(state.positives)
        found.append(top_indices(np.asarray(prior, dtype=np.float64), 10 * self.config.pool_size))
        for scorer in self.scorers:
            scores = scorer.scores(state.recent, state.n_signals, self.space.n_items)
            found.append(top_indices(np.where(scores > 0, scores, -np.inf), self.config.pool_size))
        return np.unique(np.concatenate(found))

    def _quotas(self, state: UserState, slots: int) -> dict[int, int]:
        """Exploit slots reserved per interest (index), proportional to the interest shares."""
        shares = state.shares().tolist()
        strong = [k for k, share in enumerate(shares) if share >= self.config.min_interest_share]
        if len(strong) < 2 or self.config.interest_quota == 0:
            return {}
        return {k: max(1, int(self.config.interest_quota * shares[k] * slots)) for k in strong}

    def _promotions(
        self, state: UserState, filters: Filters, context: RequestContext
    ) -> list[tuple[int, float, Campaign]]:
        if not self.campaigns or not state.interests or self.config.max_promotions == 0:
            return []
        mask = allowed_items(filters, state, self.space.n_items, self.space.metadata)
        directions: np.ndarray | None = None  # the interest directions, once a campaign needs them
        chosen: list[tuple[int, float, Campaign]] = []
        for campaign in self.campaigns:
            if len(chosen) >= self.config.max_promotions or not campaign.active(context.now):
                continue
            if state.exposures.get(campaign.campaign_id, 0) >= campaign.per_user_cap:
                continue
            # The campaign's items in the catalogue, allowed and not promoted yet, in campaign order.
            items = np.asarray(campaign.items, dtype=np.int64)
            items = items[(items >= 0) & (items < self.space.n_items)]
            items = items[mask[items]]
            if chosen:
                items = items[~np.isin(items, [c[0] for c in chosen])]
            if not items.size:
                continue
            if directions is None:
                directions, _ = interest_directions(state)
            relevance = (self.space.unit[items] @ directions.T).max(axis=1)
            best = int(np.argmax(relevance))
            if relevance[best] >= campaign.relevance_floor:
                chosen.append((int(items[best]), float(relevance[best]), campaign))
        return chosen

    def _touched(self, state: UserState) -> np.ndarray:
        """The regions of the user's seen items, as a lookup table over region ids: -1 (an item
        without a region) indexes the last slot, which no other region uses."""
        seen = np.fromiter(state.seen, dtype=np.int64, count=len(state.seen))
        touched = np.zeros(self.space.centroids.shape[0] + 1, dtype=bool)
        touched[self.space.regions[seen[seen < self.space.n_items]]] = True
        return touched

    def _explore(
        self,
        state: UserState,
        scored: Blended,
        listed: Shortlist | None,
        allowed: np.ndarray | None,
        taken: set[int],
        count: int,
    ) -> list[int]:
        """``count`` adjacent items: allowed, not ``taken``, close to an interest (affinity at least
        ``adjacent_min_similarity``) and in a region the user has not touched (seen, or taken on this
        page) while there are such items; the closest ``4 * count`` of them, diversified by MMR.
        From the shortlist when the page has one, else from ``allowed``."""
        if count == 0 or not state.interests:
            return []
        space = self.space
        touched = (listed.touched if listed is not None else self._touched(state)).copy()
        taken_items = np.fromiter(taken, dtype=np.int64, count=len(taken))
        touched[space.regions[taken_items]] = True
        blocked = np.zeros(space.n_items, dtype=bool)
        blocked[taken_items] = True

        def usable(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """``rows`` not taken, and those of them in untouched regions (in the same order)."""
            rows = rows[~blocked[scored.items_of(rows)]]
            return rows, rows[~touched[space.regions[scored.items_of(rows)]]]

        wanted = 4 * count
        if listed is not None:
            _, fresh = usable(listed.nearest)
            if fresh.size >= wanted:  # the nearest rows hold the closest fresh ones, in order
                return self._adjacent(scored, fresh[:wanted], count)
            allowed = self._allowed(Filters(), state, scored)  # the shortlist's filters
        assert allowed is not None
        rows, fresh = usable(self._near(scored, allowed))
        candidates = fresh if fresh.size else rows
        return self._adjacent(scored, candidates[top_indices(scored.affinity[candidates], wanted)], count)

    def _adjacent(self, scored: Blended, pool: np.ndarray, count: int) -> list[int]:
        """``count`` of the ``pool`` rows by MMR on affinity, one per region while others remain."""
        return mmr(scored.items_of(pool), scored.affinity[pool], self.space.unit, count, 0.5,
                   regions=self.space.regions, max_per_region=1)  # fmt: skip
