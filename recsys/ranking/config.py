"""Ranker configuration, request filters, campaigns and the returned item type.

The blend (see :mod:`recsys.ranking.ranker`)::

    c       = evidence / (evidence + confidence_half)          # 0 for a new user -> 1
    score_j = c * z(sum_m w_m z(personal_m))_j + (1 - c) * z(log1p prior)_j

``z`` standardises a component over the catalogue (mean 0, std 1) so weights are comparable.
Personal components: the multi-interest cosine (``embedding_weight``), the exact ALS fold-in
vector (``fold_in_weight``) and each :class:`~recsys.ranking.ItemItemScorer` (its ``weight``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.embeddings.state import UserState

Provenance = Literal["exploit", "explore", "promoted", "popular"]


class JourneyStage(BaseModel):
    """One state of the journey policy: how much to explore and diversify on a page."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    min_pages_without_signal: int = Field(default=0, ge=0)
    """The stage applies once this many pages were served since the last signal."""
    explore_share: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of the page's slots given to adjacent (explore) items."""
    mmr_lambda: float = Field(default=1.0, ge=0.0, le=1.0)
    """MMR trade-off: 1 = relevance only, 0 = diversity only."""
    max_per_region: int | None = Field(default=None, ge=1)


class JourneyConfig(BaseModel):
    """Journey policy: ``cold`` before any signal, then the stage by pages since the last signal.

    Right after a signal the focus stage (no exploration, little diversification) applies; every
    page served without a new signal moves the user toward wider exploration.

    Examples
    --------
    >>> config = JourneyConfig()
    >>> [s.name for s in config.stages]
    ['focus', 'browse', 'explore']
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cold: JourneyStage = JourneyStage(name="cold", explore_share=0.0, mmr_lambda=1.0, max_per_region=4)
    stages: tuple[JourneyStage, ...] = (
        JourneyStage(name="focus", min_pages_without_signal=0, explore_share=0.0, mmr_lambda=0.95),
        JourneyStage(name="browse", min_pages_without_signal=2, explore_share=0.2, mmr_lambda=0.8),
        JourneyStage(name="explore", min_pages_without_signal=4, explore_share=0.4, mmr_lambda=0.6),
    )

    @field_validator("stages")
    @classmethod
    def _sorted(cls, value: tuple[JourneyStage, ...]) -> tuple[JourneyStage, ...]:
        if not value or value[0].min_pages_without_signal != 0:
            raise ValueError("the first journey stage must start at min_pages_without_signal=0")
        thresholds = [s.min_pages_without_signal for s in value]
        if thresholds != sorted(set(thresholds)):
            raise ValueError(f"journey stage thresholds must increase strictly, got {thresholds}")
        return value

    def stage(self, state: UserState) -> JourneyStage:
        """The stage that applies to ``state`` now."""
        if not state.has_signal:
            return self.cold
        current = self.stages[0]
        for stage in self.stages:
            if state.pages_since_signal >= stage.min_pages_without_signal:
                current = stage
        return current


class BlendConfig(BaseModel):
    """Weights of the score blend (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embedding_weight: float = Field(default=0.5, ge=0.0)
    fold_in_weight: float = Field(default=0.5, ge=0.0)
    interest_share_bias: float = Field(default=0.0, ge=0.0)
    """Multi-interest score is ``max_k cos(v_k, item) + bias * log(share_k)``."""
    confidence_half: float = Field(default=2.0, gt=0.0)
    """Evidence at which personal and prior count equally (2.0 won on the cold-start validation
    folds against 1.0 and 5.0)."""
    stage_prior: bool = True
    """Use the journey-stage popularity when the space has one (else overall popularity)."""


class RankerConfig(BaseModel):
    """Everything the ranker can be tuned with.

    Examples
    --------
    >>> RankerConfig().pool_size
    100
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    blend: BlendConfig = Field(default_factory=BlendConfig)
    journey: JourneyConfig = Field(default_factory=JourneyConfig)
    pool_size: int = Field(default=100, ge=1)
    """Candidates kept from the blended score before re-ranking."""
    interest_quota: float = Field(default=0.5, ge=0.0, le=1.0)
    """Share of the exploit slots reserved across interests in proportion to their shares, so a
    user with two interests sees both (only interests with at least ``min_interest_share``)."""
    min_interest_share: float = Field(default=0.2, ge=0.0, le=1.0)
    adjacent_min_similarity: float = Field(default=0.2, ge=-1.0, le=1.0)
    """Explore items must be at least this similar (cosine) to one of the user's interests."""
    max_promotions: int = Field(default=1, ge=0)
    exact_search_max_items: int = Field(default=50_000, ge=1)
    """Above this catalogue size candidates come from an IVF index (``ann_probe`` lists)."""
    ann_probe: int = Field(default=16, ge=1)
    """IVF lists probed per query vector (sqrt(n) lists; 16 probes gave recall@10 0.95 on 300k
    clustered d=64 vectors, 32 gave 0.99)."""


@dataclass(frozen=True)
class Filters:
    """Per-request filters: seen items, business rules, allow/deny lists.

    ``include_categories``: keep only items with one of them; ``exclude_categories``: drop items
    with any; ``attribute_ranges``: ``{"price": (None, 20.0)}`` keeps items with price <= 20
    (items with an unknown value are dropped by a range on that attribute).

    Examples
    --------
    >>> Filters(exclude_categories=["horror"], attribute_ranges={"price": (None, 20.0)}).exclude_seen
    True
    """

    exclude_seen: bool = True
    allow: Sequence[int] | None = None
    deny: Sequence[int] = ()
    include_categories: Sequence[str] | None = None
    exclude_categories: Sequence[str] = ()
    attribute_ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Campaign:
    """A promotion: items blended into a user's page only when relevant enough to them.

    ``relevance_floor`` is on the cosine between the item and the user's closest interest;
    ``per_user_cap`` bounds how many pages of a user show this campaign; ``start``/``end`` are
    epoch seconds (``None`` = open); ``slot`` is the 0-based position it takes.

    Examples
    --------
    >>> spring = Campaign("spring", items=(4, 9), relevance_floor=0.4, per_user_cap=2, start=0.0, end=10.0)
    >>> spring.active(5.0), spring.active(10.0)
    (True, False)
    """

    campaign_id: str
    items: tuple[int, ...]
    relevance_floor: float = 0.3
    per_user_cap: int = 3
    start: float | None = None
    end: float | None = None
    slot: int = 2

    def active(self, now: float | None) -> bool:
        """Whether the campaign runs at ``now`` (always, when ``now`` is unknown and open-ended)."""
        if now is None:
            return self.start is None and self.end is None
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)


@dataclass(frozen=True)
class RequestContext:
    """Request-time facts: the current time (epoch seconds) for campaign windows."""

    now: float | None = None


@dataclass(frozen=True)
class RankedItem:
    """One recommended item: index, blended score, provenance and a short explanation.

    ``because`` lists the signal items (indices) that pulled the item in; ``campaign_id`` is set for
    promoted items.

    Examples
    --------
    >>> RankedItem(7, 1.5, "exploit", "Because you liked Heat", (3,)).to_dict()["because"]
    [3]
    """

    item: int
    score: float
    provenance: Provenance
    explanation: str
    because: tuple[int, ...] = ()
    campaign_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return {
            "item": self.item,
            "score": self.score,
            "provenance": self.provenance,
            "explanation": self.explanation,
            "because": list(self.because),
            "campaign_id": self.campaign_id,
        }
