"""API-key authentication, scopes and per-key rate limits for the HTTP API.

Every ``/v1`` route declares the scope it needs (``Security(authorize, scopes=[...])``); the
health routes, ``/docs`` and ``/openapi.json`` stay open. A request sends its key as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and gets:

* **401** with ``WWW-Authenticate`` when the key is missing, malformed, unknown or revoked;
* **429** with ``Retry-After`` (seconds) when the key's token bucket is empty;
* **403** when the key lacks the route's scope (``admin`` implies every scope).

The key is checked before anything about the request is answered, a body that is not JSON included
(FastAPI rejects one before the route's dependencies run; :func:`denial` lets the app's handler of
that error check the key first).

Rate limits are token buckets *per replica*: a key with ``rate_per_s=50, burst=100`` may send
100 requests at once and 50 a second sustained to each gateway replica, so the cluster-wide limit
is that times the number of gateway replicas.

With no keys configured (no keys file, no inline keys) the API is **open**, and :class:`Guard` logs
a warning saying so: that keeps local experiments and tests simple; ``wayfinder serve`` creates an
admin key on first start so a served app is never open by accident.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ConfigDict, Field

from serving.api_keys import ApiKeyRecord, parse_key_id, read_keys

logger = logging.getLogger("wayfinder.serving.auth")
_RELOAD_EVERY_S = 1.0
_REALM = 'Bearer realm="wayfinder"'


class AuthConfig(BaseModel):
    """The ``auth`` section of the serving arguments."""

    model_config = ConfigDict(extra="forbid")

    keys_file: str | None = Field(
        default=None,
        description="JSON keys file (wayfinder keys create writes it); re-read within a second of a change",
    )
    keys: list[ApiKeyRecord] = Field(default_factory=list, description="keys given inline (hashed)")
    snapshot: list[ApiKeyRecord] = Field(
        default_factory=list,
        description="set by build_app: the keys file as read there, for replicas on nodes without it",
    )

    def resolved(self, root: Path) -> AuthConfig:
        """The keys file's path made absolute and its current content snapshotted."""
        if self.keys_file is None:
            return self
        path = Path(self.keys_file)
        path = path if path.is_absolute() else root / path
        return self.model_copy(update={"keys_file": str(path), "snapshot": read_keys(path)})

    @property
    def configured(self) -> bool:
        return bool(self.keys or self.snapshot or self.keys_file)


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each request takes one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._updated = float(burst), now

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


@dataclass(frozen=True)
class Principal:
    """Who made an authorised request."""

    key_id: str
    scopes: tuple[str, ...]


class Guard:
    """Checks a presented key against the configured keys, its rate limit and the needed scope.

    Parameters
    ----------
    config : the ``auth`` section.
    clock : monotonic seconds (injected so tests control time).
    """

    def __init__(self, config: AuthConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._file_keys: list[ApiKeyRecord] = list(config.snapshot)
        self._file_stamp: tuple[int, int] | None = None
        self._checked_at = -math.inf
        self._keys: dict[str, ApiKeyRecord] = {}
        self._refresh(force=True)
        if not self.open:
            return
        logger.warning(
            "NO API KEYS CONFIGURED: the Wayfinder HTTP API is OPEN to anyone who can reach it. "
            "Create one with `wayfinder keys create --scopes admin --keys-file FILE` and set auth.keys_file."
        )

    @property
    def open(self) -> bool:
        """True when no key is configured: every request is let through."""
        return not self._keys and not self._config.keys_file

    def _refresh(self, *, force: bool = False) -> None:
        """Re-read the keys file when it changed (at most once a second); keep the snapshot if absent."""
        now = self._clock()
        if not force and now - self._checked_at < _RELOAD_EVERY_S:
            return
        self._checked_at = now
        path = self._config.keys_file
        if path is not None:
            try:
                stat = os.stat(path)
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._file_stamp:
                    self._file_keys, self._file_stamp = read_keys(path), stamp
            except FileNotFoundError:
                pass  # a node without the file serves the snapshot taken by build_app
        keys = {k.key_id: k for k in [*self._file_keys, *self._config.keys]}
        for key_id, record in keys.items():
            old = self._keys.get(key_id)
            if old is not None and (old.rate_per_s, old.burst) != (record.rate_per_s, record.burst):
                self._buckets.pop(key_id, None)
        self._keys = keys

    def check(self, presented: str | None, scopes: Sequence[str]) -> Principal | None:
        """The caller, or an HTTPException (401, 403, 429); ``None`` when the API is open."""
        self._refresh()
        if self.open:
            return None
        if not presented:
            raise HTTPException(
                401,
                detail="missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers={"WWW-Authenticate": _REALM},
            )
        key_id = parse_key_id(presented)
        record = self._keys.get(key_id) if key_id is not None else None
        if record is None or not record.matches(presented):
            raise HTTPException(
                401,
                detail="invalid API key (unknown, revoked or mistyped)",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            )
        now = self._clock()
        bucket = self._buckets.get(record.key_id)
        if bucket is None:
            bucket = self._buckets[record.key_id] = TokenBucket(record.rate_per_s, record.burst, now)
        wait = bucket.take(now)
        if wait > 0:
            raise HTTPException(
                429,
                detail=f"rate limit of API key {record.key_id} exceeded ({record.rate_per_s:g}/s, "
                f"burst {record.burst}); retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        missing = [s for s in scopes if not record.allows(s)]
        if missing:
            raise HTTPException(
                403,
                detail=f"API key {record.key_id} lacks scope {missing[0]!r} (it has {list(record.scopes)})",
                headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{missing[0]}"'},
            )
        return Principal(record.key_id, record.scopes)


_BEARER = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer wf_...`")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key, as a header")


class Authorizer:
    """A FastAPI security dependency; use it as ``Security(authorize, scopes=["admin"])``.

    ``guard`` returns the replica's :class:`Guard` at request time. Both schemes are declared, so
    the OpenAPI document lists them (with the scope) on every protected operation. A class at
    module level, not a closure: Serve pickles the FastAPI app, and a pickled closure loses the
    names its annotations refer to.
    """

    def __init__(self, guard: Callable[[], Guard]) -> None:
        self._guard = guard

    async def __call__(
        self,
        security_scopes: SecurityScopes,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
        api_key: Annotated[str | None, Security(_API_KEY)],
    ) -> Principal | None:
        presented = bearer.credentials if bearer is not None else api_key
        return self._guard().check(presented, security_scopes.scopes)

    def denial(self, request: Request, scopes: Sequence[str]) -> HTTPException | None:
        """The 401, 403 or 429 this dependency would give ``request`` for ``scopes``, or ``None``."""
        scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
        bearer = credentials if scheme.lower() == "bearer" and credentials else None
        try:
            self._guard().check(bearer or request.headers.get("X-API-Key") or None, scopes)
        except HTTPException as denied:
            return denied
        return None


def _replica_guard() -> Guard:
    """The :class:`Guard` of the Serve replica handling the request (the ingress holds one)."""
    from ray import serve

    gateway: Any = serve.get_replica_context().servable_object
    guard: Guard = gateway.guard
    return guard


_authorize = Authorizer(_replica_guard)


def denial(request: Request) -> HTTPException | None:
    """The 401, 403 or 429 the API-key dependency of ``request``'s route gives it, or ``None`` (the
    key passes, or the route needs none). For the answers FastAPI gives before it runs a route's
    dependencies (a body that is not JSON), so that the key is checked first all the same. The
    route's dependency is found by type: Serve pickles the app, so it is a copy of ``_authorize``."""
    route = request.scope.get("route")
    for declared in getattr(route, "dependencies", ()):
        authorizer = getattr(declared, "dependency", None)
        if isinstance(authorizer, Authorizer):
            denied = authorizer.denial(request, getattr(declared, "scopes", None) or [])
            if denied is not None:
                return denied
    return None


def needs(scope: str) -> list[Any]:
    """The route dependency that demands an API key with ``scope`` (``admin`` implies all)."""
    return [Security(_authorize, scopes=[scope])]
