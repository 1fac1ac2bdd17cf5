"""Redis Stream entries -> engine events, or a reason why an entry cannot be one.

An entry is a flat field/value map in the schema of ``POST /v1/events`` (``user_id``, ``item_id``,
``event_type``, optional ``value``, ``timestamp`` as epoch seconds or ISO-8601, ``event_id``,
``request_id``, ``context`` as a JSON object); any other field goes into the context (``device``,
``session_id``, ...). Alternatively one field ``event`` holds the whole event as a JSON document.

Redelivery must change nothing, so every derived value is deterministic: an entry without
``event_id`` gets ``<stream>:<entry id>``, and one without ``timestamp`` takes the time the stream
gave its id (the milliseconds part of ``<ms>-<seq>``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timezone

from pydantic import ValidationError

from recsys.engine import IncomingEvent
from serving.schemas import EventIn

_FIELDS = frozenset(EventIn.model_fields)


@dataclass(frozen=True)
class Rejected:
    """Why an entry went to the dead-letter stream: a short code and a message naming the field."""

    code: str
    message: str


def entry_time_s(entry_id: str) -> float:
    """Seconds since the epoch at which Redis stamped the entry id ``<ms>-<seq>``."""
    return int(entry_id.split("-", 1)[0]) / 1000.0


def parse_entry(
    stream: str, entry_id: str, fields: Mapping[bytes, bytes], known_types: Collection[str]
) -> IncomingEvent | Rejected:
    """The engine event an entry describes, or why it cannot be applied."""
    try:
        text = {key.decode(): value.decode() for key, value in fields.items()}
    except UnicodeDecodeError as exc:
        return Rejected("bad_encoding", f"a field or value is not UTF-8: {exc}")
    if "event" in text:
        if len(text) > 1:
            return Rejected("malformed_entry", "an entry with an 'event' field must have no other field")
        try:
            document = json.loads(text["event"])
        except json.JSONDecodeError as exc:
            return Rejected("malformed_json", f"field 'event' is not JSON: {exc}")
        if not isinstance(document, dict):
            return Rejected("malformed_json", "field 'event' must be a JSON object")
    else:
        document = _flat_document(text)
        if isinstance(document, Rejected):
            return document
    try:
        event = EventIn.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "entry"
        return Rejected("invalid_field", f"{where}: {first['msg']}")
    if event.event_type not in known_types:
        return Rejected(
            "unknown_event_type", f"event_type: unknown {event.event_type!r}; known: {sorted(known_types)}"
        )
    context = dict(event.context)
    stamp = event.timestamp
    if stamp is None:
        timestamp = entry_time_s(entry_id)
    else:
        timestamp = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    return IncomingEvent(
        user_id=event.user_id,
        item_id=event.item_id,
        event_type=event.event_type,
        timestamp=timestamp,
        value=event.value,
        event_id=event.event_id or f"{stream}:{entry_id}",
        context=context,
        request_id=event.request_id,
    )


def _flat_document(text: dict[str, str]) -> dict[str, object] | Rejected:
    document: dict[str, object] = {k: v for k, v in text.items() if k in _FIELDS and k != "context"}
    context: dict[str, object] = {}
    if "context" in text:
        try:
            parsed = json.loads(text["context"])
        except json.JSONDecodeError as exc:
            return Rejected("malformed_json", f"field 'context' is not JSON: {exc}")
        if not isinstance(parsed, dict):
            return Rejected("malformed_json", "field 'context' must be a JSON object")
        context.update(parsed)
    context.update({k: v for k, v in text.items() if k not in _FIELDS})
    document["context"] = context
    if document.get("value") == "":
        document.pop("value")
    return document
