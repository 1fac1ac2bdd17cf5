"""State that survives: the event log, user states, live items, promotions and A/B exposures.

Open a store from a URL; every serving replica opens its own and reads it on every call::

    store = open_store("sqlite:////var/lib/wayfinder/store.db")   # the default: one node
    store = open_store("redis://10.0.0.5:6379/0?prefix=wf:&require_fsync=true")   # several nodes

The guarantees (durable acknowledgement, read-your-writes, idempotency by event id, versioned
compare-and-set, atomic event + state) are documented in :mod:`recsys.store.base`; snapshots and
re-deriving states from the log in :mod:`recsys.store.snapshot`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from recsys.errors import ConfigError
from recsys.store._sqlite import SQLiteStore
from recsys.store.base import (
    AppendResult,
    Event,
    EventLog,
    Exposure,
    ExposureStore,
    ForgetResult,
    ItemRecord,
    ItemStore,
    JourneyStore,
    PromotionStore,
    RankingRead,
    ServedCounts,
    ServedPage,
    StateStore,
    StateUpdate,
    Store,
    StoredEvent,
    UpdateResult,
    VersionedState,
)
from recsys.store.errors import ConflictError, StoreError

__all__ = [
    "AppendResult",
    "ConflictError",
    "Event",
    "EventLog",
    "Exposure",
    "ExposureStore",
    "ForgetResult",
    "ItemRecord",
    "ItemStore",
    "JourneyStore",
    "PromotionStore",
    "RankingRead",
    "SQLiteStore",
    "ServedCounts",
    "ServedPage",
    "StateStore",
    "StateUpdate",
    "Store",
    "StoreError",
    "StoredEvent",
    "UpdateResult",
    "VersionedState",
    "open_store",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def open_store(url: str, *, clock: Callable[[], float] = time.time) -> Store:
    """Open the store a URL names.

    Parameters
    ----------
    url:
        ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (as in SQLAlchemy), with
        optional ``?synchronous=FULL|EXTRA|NORMAL&busy_timeout_s=30``; or ``redis://host:port/db``
        (also ``rediss://``, ``unix://``) with optional ``?prefix=wf:&require_fsync=true`` and any
        option redis-py accepts.
    clock:
        Seconds since the epoch, for ``updated_at`` fields.

    Raises
    ------
    ConfigError
        The URL's scheme or an option is not understood.
    StoreError
        The store cannot be opened or reached.

    Examples
    --------
    >>> store = open_store(f"sqlite:///{tmp_path}/wayfinder.db")  # doctest: +SKIP
    """
    parts = urlsplit(url)
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise ConfigError(
                f"sqlite store URL {url!r} must look like sqlite:///relative.db or sqlite:////abs.db"
            )
        unknown = set(options) - {"synchronous", "busy_timeout_s"}
        if unknown:
            raise ConfigError(f"unknown sqlite store options {sorted(unknown)} in {url!r}")
        return SQLiteStore(
            parts.path[1:],
            synchronous=options.get("synchronous", "FULL"),
            busy_timeout_s=_number(options.get("busy_timeout_s", "30"), "busy_timeout_s", url),
            clock=clock,
        )
    if parts.scheme in ("redis", "rediss", "unix"):
        from recsys.store._redis import RedisStore  # the redis client is only needed for this backend

        prefix = options.pop("prefix", "wf:")
        require_fsync = _flag(options.pop("require_fsync", "false"), "require_fsync", url)
        plain = urlunsplit(parts._replace(query=urlencode(options)))
        return RedisStore.from_url(plain, prefix=prefix, require_fsync=require_fsync, clock=clock)
    raise ConfigError(f"store URL {url!r}: scheme must be sqlite, redis, rediss or unix")


def _number(text: str, name: str, url: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"store option {name}={text!r} in {url!r} must be a number") from None


def _flag(text: str, name: str, url: str) -> bool:
    if text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    raise ConfigError(f"store option {name}={text!r} in {url!r} must be true or false")
