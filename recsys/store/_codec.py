"""JSON forms of the store's records, shared by the backends."""

from __future__ import annotations

import json
from typing import Any

from recsys.store.base import Event, Exposure, ItemRecord
from recsys.store.errors import StoreError


def dumps(value: Any) -> str:
    """Compact JSON; raises ``TypeError`` naming the problem when ``value`` is not serialisable."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"store values must be JSON-serialisable (finite numbers, str, list, dict): {exc}"
        ) from exc


def loads(raw: str | bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise StoreError(f"stored {what} is not valid JSON ({exc}); the store is corrupt") from exc


def event_to_dict(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "item_id": event.item_id,
        "event_type": event.event_type,
        "timestamp_ms": event.timestamp_ms,
        "value": event.value,
        "payload": dict(event.payload),
    }


def event_from_dict(raw: dict[str, Any]) -> Event:
    value = raw.get("value")
    return Event(
        event_id=raw["event_id"],
        user_id=raw["user_id"],
        item_id=raw["item_id"],
        event_type=raw["event_type"],
        timestamp_ms=int(raw["timestamp_ms"]),
        value=None if value is None else float(value),
        payload=raw.get("payload") or {},
    )


def item_to_dict(item: ItemRecord) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "title": item.title,
        "categories": list(item.categories),
        "tags": list(item.tags),
        "text": item.text,
        "attributes": dict(item.attributes),
    }


def item_from_dict(raw: dict[str, Any]) -> ItemRecord:
    return ItemRecord(
        item_id=raw["item_id"],
        title=raw.get("title"),
        categories=tuple(raw.get("categories") or ()),
        tags=tuple(raw.get("tags") or ()),
        text=raw.get("text"),
        attributes=raw.get("attributes") or {},
    )


def exposure_to_dict(exposure: Exposure) -> dict[str, Any]:
    return {
        "request_id": exposure.request_id,
        "user_id": exposure.user_id,
        "variant": exposure.variant,
        "item_ids": list(exposure.item_ids),
        "timestamp_ms": exposure.timestamp_ms,
        "experiment": exposure.experiment,
    }


def exposure_from_dict(raw: dict[str, Any]) -> Exposure:
    return Exposure(
        request_id=raw["request_id"],
        user_id=raw["user_id"],
        variant=raw["variant"],
        item_ids=tuple(raw["item_ids"]),
        timestamp_ms=int(raw["timestamp_ms"]),
        experiment=raw.get("experiment") or "",
    )
