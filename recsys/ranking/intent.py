"""The intent summary: what a user is after, as a JSON-able dict for AI agents and the HTTP API.

Shape::

    {"user_id": str, "version": int, "confidence": float in [0, 1], "journey_stage": str,
     "n_signals": int, "positives": int,
     "interests": [{"share": float, "categories": [{"name": str, "weight": float}],
                    "tags": [{"name": str, "weight": float}],
                    "items": [{"item": int, "id": str, "title": str, "weight": float}]}],
     "drift": float in [0, 2],        # 1 - cos(last 5 positive signals, whole profile)
     "recent_signals": [{"item": int, "id": str, "event_type": str, "weight": float,
                         "timestamp": float}]}

Category and tag weights of an interest come from its anchor items (their signal weights) and its
ten nearest items (their cosine, halved), normalised to sum to 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.embeddings.space import EmbeddingSpace
from recsys.embeddings.state import Interest, UserState
from recsys.ranking._scoring import confidence
from recsys.ranking.config import RankerConfig
from recsys.ranking.retrieval import top_indices


def _labels(
    space: EmbeddingSpace, weighted: dict[int, float], field: str, limit: int
) -> list[dict[str, Any]]:
    meta = space.metadata
    values = getattr(meta, field) if meta is not None else None
    if values is None:
        return []
    counter: dict[str, float] = {}
    for item, weight in weighted.items():
        for label in values[item]:
            counter[label] = counter.get(label, 0.0) + weight
    total = sum(counter.values())
    return [
        {"name": name, "weight": round(w / total, 4)}
        for name, w in sorted(counter.items(), key=lambda p: -p[1])[:limit]
        if total > 0
    ]


def _item(space: EmbeddingSpace, item: int) -> dict[str, Any]:
    meta = space.metadata
    return {
        "item": item,
        "id": str(meta.item_ids[item]) if meta is not None else str(item),
        "title": meta.label(item) if meta is not None else "",
    }


def _interest(space: EmbeddingSpace, interest: Interest, share: float, limit: int) -> dict[str, Any]:
    weighted = {item: max(weight, 0.0) for item, weight in interest.anchors}
    for item in top_indices((space.unit @ interest.direction).astype(np.float64), 10):
        weighted[int(item)] = weighted.get(int(item), 0.0) + 0.5 * float(
            space.unit[item] @ interest.direction
        )
    return {
        "share": round(float(share), 4),
        "categories": _labels(space, weighted, "categories", limit),
        "tags": _labels(space, weighted, "tags", limit),
        "items": [_item(space, item) | {"weight": round(w, 4)} for item, w in interest.anchors[:3]],
    }


def _drift(space: EmbeddingSpace, state: UserState) -> float:
    profile = state.mixture()
    recent = [s.item for s in state.recent if s.weight > 0][-5:]
    if profile is None or not recent:
        return 0.0
    short = space.unit[recent].sum(axis=0)
    norm = float(np.linalg.norm(short))
    return round(1.0 - float(short @ profile) / norm, 4) if norm > 0 else 0.0


def intent_summary(
    space: EmbeddingSpace, state: UserState, config: RankerConfig | None = None, *, limit: int = 5
) -> dict[str, Any]:
    """The intent summary of ``state`` (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from recsys.embeddings import EmbeddingSpace, UserState
    >>> space = EmbeddingSpace.from_vectors(np.eye(2, dtype="float32"), np.ones(2), n_regions=1)
    >>> sorted(intent_summary(space, UserState("u")))[:4]
    ['confidence', 'drift', 'interests', 'journey_stage']
    """
    config = config if config is not None else RankerConfig()
    shares = state.shares()
    order = np.argsort(-shares, kind="stable")
    return {
        "user_id": state.user_id,
        "version": state.version,
        "confidence": round(confidence(state, config.blend), 4),
        "journey_stage": config.journey.stage(state).name,
        "n_signals": state.n_signals,
        "positives": state.positives,
        "interests": [_interest(space, state.interests[k], shares[k], limit) for k in order],
        "drift": _drift(space, state),
        "recent_signals": [
            _item(space, s.item)
            | {"event_type": s.event_type, "weight": round(s.weight, 4), "timestamp": s.timestamp}
            for s in reversed(state.recent[-10:])
        ],
    }
