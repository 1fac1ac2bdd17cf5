"""Structured request logs from the serving replicas, without personal data.

Serve writes each replica's log as one JSON object per line when its ``logging_config`` has
``encoding: JSON`` (``serving/config.yaml`` and ``wayfinder serve`` set it). Records from
:data:`logger` (a child of ``ray.serve``) go through Serve's handlers, so each line carries
``asctime`` (time), ``levelname`` (level), ``name`` (the logger, via ``additional_log_standard_attrs``),
``message``, Serve's request fields (``request_id``, ``route``, ``application``, ``deployment``,
``replica``) and the fields passed here.

User ids never appear raw: :func:`pseudonym` is a keyed hash (HMAC-SHA256, 16 hex digits). The key
comes from ``WAYFINDER_LOG_KEY``; set the same value on every node so one user's lines can be joined
across replicas and restarts. Without it each process draws a random key, and lines cannot be
linked to a user at all.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
from typing import Any

LOG_KEY_ENV = "WAYFINDER_LOG_KEY"
logger = logging.getLogger("ray.serve.wayfinder")


@functools.cache
def _key() -> bytes:
    configured = os.environ.get(LOG_KEY_ENV)
    return configured.encode() if configured else secrets.token_bytes(32)


def pseudonym(user_id: str) -> str:
    """A keyed hash of ``user_id`` for logs: stable under one key, meaningless without it."""
    return hmac.new(_key(), user_id.encode(), hashlib.sha256).hexdigest()[:16]


def log_request(message: str, *, user_id: str | None = None, **fields: Any) -> None:
    """One INFO line with ``fields`` (and the user's pseudonym, never the id) as JSON keys."""
    if not logger.isEnabledFor(logging.INFO):
        return
    extra = {f"wf_{name}": value for name, value in fields.items()}
    if user_id is not None:
        extra["wf_user"] = pseudonym(user_id)
    logger.info(message, extra=extra)


def log_failure(operation: str, error: BaseException, *, user_id: str | None = None) -> None:
    """A WARNING for a failed call: the operation and the error's class, never its message (a
    store error's message may name a user)."""
    extra: dict[str, Any] = {"wf_operation": operation, "wf_error": type(error).__name__}
    if user_id is not None:
        extra["wf_user"] = pseudonym(user_id)
    logger.warning("%s failed: %s", operation, type(error).__name__, extra=extra)
