"""Provenance and short explanations of ranked items: which signals pulled an item in."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import Interest, UserState
from recsys.ranking._scoring import Blended
from recsys.ranking.config import Campaign, RankedItem

VERBS = {
    "like": "liked",
    "purchase": "bought",
    "rating": "rated",
    "view": "viewed",
    "click": "clicked",
    "add_to_cart": "added to your cart",
    "share": "shared",
}

BEHIND = 2
"""Signal items named per explanation."""


class Explainer:
    """Builds :class:`RankedItem` objects for one request (one scored blend).

    ``exploit``: the page's exploit items, explained by the signals behind them (:func:`signal_sources`),
    which are kept in ``behind`` (e.g. the blend's :class:`~recsys.ranking._scoring.Shortlist`'s,
    so that the next page of the same blend reads them); ``others``: the page's other items. The
    lookups they need are done in one pass (any other item is looked up on demand).
    """

    def __init__(
        self,
        space: EmbeddingSpace,
        state: UserState,
        scored: Blended,
        exploit: Sequence[int],
        others: Sequence[int] = (),
        behind: dict[int, list[int]] | None = None,
    ) -> None:
        self.space = space
        self.state = state
        self.scored = scored
        items = np.fromiter(dict.fromkeys([*exploit, *others]), dtype=np.int64)
        self.interest_index: dict[int, int] = {}
        if state.interests and scored.interest_scores is not None and items.size:
            rows, known = scored.rows(items)
            closest = scored.interest(rows[known]).tolist()
            self.interest_index = dict(zip(items[known].tolist(), closest, strict=True))
        self.pulled_by = behind if behind is not None else {}
        missing = [item for item in dict.fromkeys(exploit) if item not in self.pulled_by]
        if missing:
            self.pulled_by.update(signal_sources(scored, np.asarray(missing, dtype=np.int64)))
        self._verbs: dict[int, str] | None = None  # item -> type of its last positive signal

    def label(self, item: int) -> str:
        return self.space.metadata.label(item) if self.space.metadata is not None else f"item {item}"

    def _signals_behind(self, item: int) -> list[int]:
        """Signal items that pulled ``item`` in: item-item contributions, then interest anchors."""
        behind = list(self.pulled_by.get(item, ()))
        interest = self._interest_of(item)
        if interest is not None:
            for anchor, _ in interest.anchors:
                if len(behind) >= BEHIND:
                    break
                if anchor not in behind and anchor != item:
                    behind.append(anchor)
        return behind

    def _interest_of(self, item: int) -> Interest | None:
        if not self.state.interests:
            return None
        index = self.interest_index.get(item)
        if index is None:
            row = self.scored.row(item)
            if row is None:
                return None
            index = int(self.scored.interest(np.array([row]))[0])
        return self.state.interests[index] if 0 <= index < len(self.state.interests) else None

    def _because_text(self, behind: list[int]) -> str:
        if self._verbs is None:
            self._verbs = {s.item: s.event_type for s in self.state.recent if s.weight > 0}
        verbs = [VERBS.get(self._verbs[i], "engaged with") if i in self._verbs else "liked" for i in behind]
        named = (f"{verb} {self.label(i)}" for verb, i in zip(verbs, behind, strict=True))
        return "Because you " + " and ".join(named)

    def exploit(self, item: int, score: float) -> RankedItem:
        row = self.scored.row(item)
        assert row is not None
        personal, prior = float(self.scored.personal[row]), float(self.scored.prior[row])
        if self.scored.confidence == 0.0 or prior > personal:
            stage = "new users" if self.state.positives < 10 else "everyone"
            return RankedItem(item, score, "popular", f"Popular with {stage} while we learn your taste")
        behind = self._signals_behind(item)
        text = self._because_text(behind) if behind else "Matches your recent activity"
        return RankedItem(item, score, "exploit", text, tuple(behind))

    def explore(self, item: int, score: float) -> RankedItem:
        interest = self._interest_of(item)
        anchors = [a for a, _ in interest.anchors[:1]] if interest is not None else []
        near = f" near {self.label(anchors[0])}" if anchors else ""
        return RankedItem(item, score, "explore", f"Something new{near}, to widen your feed", tuple(anchors))

    def promoted(self, item: int, relevance: float, campaign: Campaign) -> RankedItem:
        interest = self._interest_of(item)
        anchors = [a for a, _ in interest.anchors[:1]] if interest is not None else []
        near = f", close to {self.label(anchors[0])}" if anchors else ""
        return RankedItem(
            item, relevance, "promoted", f"Promoted ({campaign.campaign_id}){near}", tuple(anchors),
            campaign_id=campaign.campaign_id,
        )  # fmt: skip


def signal_sources(scored: Blended, columns: np.ndarray) -> dict[int, list[int]]:
    """The (up to :data:`BEHIND`) signal items with the largest summed positive item-item
    contribution to each of ``columns`` (unique items), over every scorer of the blend.

    A source's contribution to an item is summed over the scorers in blend order (and over a
    source's repeated signals in recency order); ties go to the source that contributed first, in
    that same order (scorer, then signal).
    """
    items = columns.tolist()
    pulled: dict[int, dict[int, float]] = {item: {} for item in items}
    for scorer, rows in scored.signal_rows:
        sources, values = scorer.contributions_from(rows, columns)
        # The positive contributions, item by item and source by source within an item (the order
        # of a loop over the columns, then the sources): the order the sums and dict keys grow in.
        by_item = values.T
        item_at, source_at = np.nonzero(by_item > 0)
        weighted = (scorer.weight * by_item[item_at, source_at]).tolist()
        source_list = sources.tolist()
        for column, row, value in zip(item_at.tolist(), source_at.tolist(), weighted, strict=True):
            sums = pulled[items[column]]
            source = source_list[row]
            sums[source] = sums.get(source, 0.0) + value
    return {item: sorted(sums, key=lambda source: -sums[source])[:BEHIND] for item, sums in pulled.items()}
