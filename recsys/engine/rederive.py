"""Re-deriving user states from the event log, in the space of a given bundle version.

A user's stored state carries the bundle version whose space its vectors live in
(:attr:`~recsys.embeddings.UserState.model_version`). After a model swap the engine finds states of
another version on first touch and rebuilds them from the user's whole history with
:func:`recsys.store.snapshot.replay_user` and the fold below (lazy, per user; compare-and-set, so a
concurrent write is re-folded). The same fold brings states up to date after a snapshot restore::

    replay(store, state_fold(updater, item_index, "v0002"), from_scratch=True)   # every user, eagerly
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from recsys.embeddings import EmbeddingUpdater, UserState
from recsys.embeddings import Event as UpdateEvent
from recsys.store.base import Event, StoredEvent
from recsys.store.snapshot import Fold

__all__ = ["state_fold", "update_event"]


def update_event(event: Event, index: int) -> UpdateEvent:
    """The updater's view of a logged event whose item is row ``index`` of the space."""
    return UpdateEvent(
        index,
        event.event_type,
        event.timestamp_ms / 1000.0,
        event.value,
        event.event_id,
        _sentiment(event.payload),
    )


def state_fold(
    updater: EmbeddingUpdater, item_index: Callable[[str], int | None], model_version: str | None
) -> Fold:
    """A :data:`~recsys.store.snapshot.Fold` applying events with ``updater`` and tagging the state.

    Events for items the space does not know are skipped, as live ingestion leaves them pending.
    """

    def fold(base: bytes | None, events: Sequence[StoredEvent]) -> bytes:
        if base is not None:
            state = UserState.from_bytes(base)
        else:
            state = UserState(events[0].event.user_id if events else "")
        state.model_version = model_version
        for stored in events:
            index = item_index(stored.event.item_id)
            if index is not None:
                updater.apply(state, update_event(stored.event, index))
        return state.to_bytes()

    return fold


def _sentiment(payload: Any) -> float | None:
    value = dict(payload).get("sentiment")
    return float(value) if isinstance(value, int | float) else None
