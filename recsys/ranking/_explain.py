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


class Explainer:
    """Builds :class:`RankedItem` objects for one request (one scored blend)."""

    def __init__(
        self,
        space: EmbeddingSpace,
        state: UserState,
        scored: Blended,
        page_items: Sequence[int],
    ) -> None:
        self.space = space
        self.state = state
        self.scored = scored
        self.verb_of = {s.item: VERBS.get(s.event_type, "engaged with") for s in state.recent if s.weight > 0}
        self.pulled: dict[int, dict[int, float]] = {int(item): {} for item in page_items}
        columns = np.asarray(page_items, dtype=np.int64)
        items = columns.tolist()
        # The closest interest of each page item, in one pass (items outside the blend: on demand).
        self.interest_index: dict[int, int] = {}
        if state.interests and scored.interest_scores is not None:
            known = [(item, row) for item, row in ((i, scored.row(i)) for i in items) if row is not None]
            closest = scored.interest(np.array([row for _, row in known], dtype=np.int64)).tolist()
            self.interest_index = {item: index for (item, _), index in zip(known, closest, strict=True)}
        for scorer, rows in scored.signal_rows:
            sources, values = scorer.contributions_from(rows, columns)
            # The positive contributions, item by item and source by source within an item (the order
            # of a loop over the columns, then the sources): the order the sums and dict keys grow in.
            by_item = values.T
            item_at, source_at = np.nonzero(by_item > 0)
            weighted = (scorer.weight * by_item[item_at, source_at]).tolist()
            source_list = sources.tolist()
            for column, row, value in zip(item_at.tolist(), source_at.tolist(), weighted, strict=True):
                pulled = self.pulled[items[column]]
                source = source_list[row]
                pulled[source] = pulled.get(source, 0.0) + value

    def label(self, item: int) -> str:
        return self.space.metadata.label(item) if self.space.metadata is not None else f"item {item}"

    def _signals_behind(self, item: int, limit: int = 2) -> list[int]:
        """Signal items that pulled ``item`` in: item-item contributions, then interest anchors."""
        pulled = self.pulled.get(item, {})
        behind = sorted(pulled, key=lambda source: -pulled[source])[:limit]
        interest = self._interest_of(item)
        if interest is not None:
            for anchor, _ in interest.anchors:
                if len(behind) >= limit:
                    break
                if anchor not in behind and anchor != item:
                    behind.append(anchor)
        return behind[:limit]

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
        parts = [f"{self.verb_of.get(i, 'liked')} {self.label(i)}" for i in behind]
        return "Because you " + " and ".join(parts)

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
