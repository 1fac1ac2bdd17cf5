"""The Redis :class:`~recsys.store.base.Store`, for serving from several nodes.

Durability: acknowledged means durable only when the server runs with ``appendonly yes`` and
``appendfsync always`` (Redis then fsyncs the AOF before it replies). ``everysec`` may lose up to a
second of acknowledged writes on a crash of the machine. ``require_fsync=True`` checks the server's
settings at open and refuses anything weaker.

Keys (all under ``prefix``, default ``wf:``): ``seq`` counter; ``ev`` hash seq -> event JSON; ``log``,
``u:<user>``, ``i:<item>`` sorted sets of seqs; ``eid`` hash event id -> seq; ``s:<user>`` state hash
(``v`` version, ``d`` data, ``q`` seq, ``t`` updated at); ``users`` set; ``items``, ``camp``, ``ab``
hashes of JSON documents; ``px:<user>`` promotion counters; ``abu:<user>`` the user's request ids;
``abo:<request>`` set of outcomes attributed to an exposure; ``abc:<experiment>`` hash of counters
(field ``variant \x1f counter``); ``abx:<user>`` hash experiment -> variant; ``aba`` hash experiment
-> allocation JSON; ``j:<user>`` served-page counters (``s`` signals, ``p`` pages).
Multi-key writes are Lua scripts (:mod:`recsys.store._redis_lua`), so a single server (not Redis
Cluster) is required. Snapshot reads (``iter_states``) and ``replace_states`` are not atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from recsys.store import _codec, _redis_lua
from recsys.store.base import (
    AppendResult,
    Event,
    Exposure,
    ForgetResult,
    ItemRecord,
    RankingRead,
    ServedCounts,
    ServedPage,
    StateUpdate,
    StoredEvent,
    UpdateResult,
    VersionedState,
)
from recsys.store.errors import ConflictError, StoreError

_PAGE = 1000


class RedisStore:
    """The store on one Redis server; every replica on every node opens its own.

    Parameters
    ----------
    client:
        A ``redis.Redis`` client with ``decode_responses=False`` (states are bytes).
    prefix:
        Namespace of every key, so several apps can share a server.
    clock:
        Seconds since the epoch, for ``updated_at``.

    Examples
    --------
    >>> store = RedisStore.from_url("redis://127.0.0.1:6379/0", require_fsync=True)  # doctest: +SKIP
    """

    def __init__(
        self, client: redis.Redis, *, prefix: str = "wf:", clock: Callable[[], float] = time.time
    ) -> None:
        self._r: Any = client
        self._p = prefix
        self._clock = clock
        self._closed = False
        kwargs = client.connection_pool.connection_kwargs
        self._where = (
            f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"
        )
        self._apply_script = client.register_script(_redis_lua.APPLY)
        self._put_state_script = client.register_script(_redis_lua.PUT_STATE)
        self._range_script = client.register_script(_redis_lua.RANGE)
        self._forget_script = client.register_script(_redis_lua.FORGET)
        self._exposure_script = client.register_script(_redis_lua.RECORD_EXPOSURE)
        self._outcome_script = client.register_script(_redis_lua.RECORD_OUTCOME)
        self._assign_script = client.register_script(_redis_lua.ASSIGN)
        self._served_script = client.register_script(_redis_lua.SERVED)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "wf:",
        require_fsync: bool = False,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> RedisStore:
        """Connect to ``redis://host:port/db`` (or ``rediss://``, ``unix://``) and check it answers."""
        try:
            client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        except ValueError as exc:
            raise StoreError(f"Redis store URL {url!r} is not valid ({exc})") from exc
        store = cls(client, prefix=prefix, clock=clock)
        store.ping()
        if require_fsync:
            store.check_fsync()
        return store

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self._p!r})"

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        if self._closed:
            raise StoreError(f"Redis store {self._where} is closed; open a new one")
        try:
            yield
        except redis.RedisError as exc:
            raise StoreError(
                f"Redis store {self._where}: {action} failed ({type(exc).__name__}: {exc}); "
                "check that the server is running and reachable"
            ) from exc

    def _k(self, name: str) -> str:
        return self._p + name

    def ping(self) -> None:
        with self._guard("ping"):
            self._r.ping()

    def check_fsync(self) -> None:
        """Raise :class:`StoreError` unless the server fsyncs its AOF before acknowledging a write."""
        with self._guard("reading the durability settings"):
            config = {**self._r.config_get("appendonly"), **self._r.config_get("appendfsync")}
        settings = {_text(k): _text(v) for k, v in config.items()}
        if settings.get("appendonly") != "yes" or settings.get("appendfsync") != "always":
            raise StoreError(
                f"Redis store {self._where} acknowledges writes before they are durable ({settings}); "
                "run it with 'appendonly yes' and 'appendfsync always', or open it without require_fsync"
            )

    def close(self) -> None:
        self._closed = True
        self._r.close()

    # -- event log and states -----------------------------------------------------------------

    def _apply_many(
        self, items: Sequence[tuple[Event, bytes | None, int]]
    ) -> list[UpdateResult | ConflictError]:
        now = repr(self._clock())
        calls: list[tuple[list[str], list[bytes | str | int]]] = []
        for event, data, expected in items:
            keys = [
                self._k("eid"),
                self._k("ev"),
                self._k("log"),
                self._k("seq"),
                self._k("u:" + event.user_id),
                self._k("i:" + event.item_id),
                self._k("s:" + event.user_id),
                self._k("users"),
            ]
            document = _codec.dumps(_codec.event_to_dict(event))
            state: bytes = b"" if data is None else data
            flag = "0" if data is None else "1"
            calls.append((keys, [event.event_id, document, flag, expected, state, now, event.user_id]))
        with self._guard("appending events"):
            if len(calls) == 1:  # one round trip; a pipeline would first ask SCRIPT EXISTS
                replies = [self._apply_script(keys=calls[0][0], args=calls[0][1])]
            else:  # MULTI/EXEC: the batch runs as one unit, and one fsync covers it
                pipe = self._r.pipeline(transaction=True)
                for keys, args in calls:
                    self._apply_script(keys=keys, args=args, client=pipe)
                replies = pipe.execute()
        results: list[UpdateResult | ConflictError] = []
        for (event, _, expected), (status, seq, version) in zip(items, replies, strict=True):
            if status == 2:
                results.append(ConflictError(event.user_id, expected, int(version)))
            else:
                results.append(UpdateResult(sequence=int(seq), duplicate=status == 1, version=int(version)))
        return results

    def append(self, event: Event) -> AppendResult:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[Event]) -> list[AppendResult]:
        results = self._apply_many([(event, None, 0) for event in events])
        return [AppendResult(r.sequence, r.duplicate) for r in results if isinstance(r, UpdateResult)]

    def append_and_update(self, event: Event, data: bytes, expected_version: int) -> UpdateResult:
        result = self._apply_many([(event, data, expected_version)])[0]
        if isinstance(result, ConflictError):
            raise result
        return result

    def append_and_update_many(self, updates: Sequence[StateUpdate]) -> list[UpdateResult | ConflictError]:
        return self._apply_many([(u.event, u.data, u.expected_version) for u in updates])

    def _range(self, index: str, after_seq: int, limit: int | None) -> list[StoredEvent]:
        with self._guard("reading events"):
            flat = self._range_script(
                keys=[index, self._k("ev")], args=[after_seq, -1 if limit is None else limit]
            )
        return [
            StoredEvent(seq=int(flat[i]), event=_codec.event_from_dict(_codec.loads(flat[i + 1], "event")))
            for i in range(0, len(flat), 2)
        ]

    def events_for_user(
        self, user_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        return self._range(self._k("u:" + user_id), after_seq, limit)

    def events_for_item(
        self, item_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        return self._range(self._k("i:" + item_id), after_seq, limit)

    def iter_events(self, *, after_seq: int = 0, batch_size: int = _PAGE) -> Iterator[StoredEvent]:
        while True:
            page = self._range(self._k("log"), after_seq, batch_size)
            yield from page
            if len(page) < batch_size:
                return
            after_seq = page[-1].seq

    def count_events(self, *, user_id: str | None = None, item_id: str | None = None) -> int:
        if user_id is not None and item_id is not None:
            return sum(1 for e in self.events_for_user(user_id) if e.event.item_id == item_id)
        key = "u:" + user_id if user_id is not None else "i:" + item_id if item_id is not None else "log"
        with self._guard("counting events"):
            return int(self._r.zcard(self._k(key)))

    def last_sequence(self) -> int:
        with self._guard("reading the last sequence"):
            return int(self._r.get(self._k("seq")) or 0)

    def _forget(self, user_id: str, everything: bool) -> ForgetResult:
        keys = [
            self._k("u:" + user_id),
            self._k("ev"),
            self._k("log"),
            self._k("eid"),
            self._k("s:" + user_id),
            self._k("users"),
            self._k("px:" + user_id),
            self._k("abu:" + user_id),
            self._k("ab"),
            self._k("abx:" + user_id),
            self._k("j:" + user_id),
        ]
        with self._guard("forgetting a user"):
            events, state = self._forget_script(
                keys=keys, args=[self._p, user_id, "1" if everything else "0"]
            )
        return ForgetResult(events=int(events), state=bool(state))

    def delete_user_events(self, user_id: str) -> int:
        return self._forget(user_id, everything=False).events

    def forget_user(self, user_id: str) -> ForgetResult:
        return self._forget(user_id, everything=True)

    def get_state(self, user_id: str) -> VersionedState | None:
        with self._guard("reading a state"):
            version, data, seq = self._r.hmget(self._k("s:" + user_id), ["v", "d", "q"])
        return None if version is None else VersionedState(int(version), bytes(data), int(seq))

    def put_state(self, user_id: str, data: bytes, expected_version: int, *, seq: int | None = None) -> int:
        keys = [self._k("s:" + user_id), self._k("users")]
        args: list[bytes | str | int] = [
            expected_version,
            data,
            repr(self._clock()),
            "" if seq is None else seq,
            user_id,
        ]
        with self._guard("writing a state"):
            status, version = self._put_state_script(keys=keys, args=args)
        if status == 2:
            raise ConflictError(user_id, expected_version, int(version))
        return int(version)

    def delete_state(self, user_id: str) -> bool:
        with self._guard("deleting a state"):
            deleted, _ = (
                self._r.pipeline(transaction=True)
                .delete(self._k("s:" + user_id))
                .srem(self._k("users"), user_id)
                .execute()
            )
        return bool(deleted)

    def count_states(self) -> int:
        with self._guard("counting states"):
            return int(self._r.scard(self._k("users")))

    def iter_states(self) -> Iterator[tuple[str, VersionedState]]:
        users: list[str] = []
        with self._guard("listing states"):
            users = sorted(_text(u) for u in self._r.sscan_iter(self._k("users"), count=_PAGE))
        for start in range(0, len(users), _PAGE):
            chunk = users[start : start + _PAGE]
            with self._guard("reading states"):
                pipe = self._r.pipeline(transaction=False)
                for user in chunk:
                    pipe.hmget(self._k("s:" + user), ["v", "d", "q"])
                rows = pipe.execute()
            for user, (version, data, seq) in zip(chunk, rows, strict=True):
                if version is not None:
                    yield user, VersionedState(int(version), bytes(data), int(seq))

    def replace_states(self, states: Iterable[tuple[str, VersionedState]]) -> int:
        now = repr(self._clock())
        with self._guard("replacing states"):
            old = [_text(u) for u in self._r.sscan_iter(self._k("users"), count=_PAGE)]
            for start in range(0, len(old), _PAGE):
                self._r.delete(*(self._k("s:" + user) for user in old[start : start + _PAGE]))
            self._r.delete(self._k("users"))
            written = 0
            pipe = self._r.pipeline(transaction=False)
            for user, state in states:
                mapping = {"v": state.version, "d": bytes(state.data), "q": state.seq, "t": now}
                pipe.hset(self._k("s:" + user), mapping=mapping).sadd(self._k("users"), user)
                written += 1
                if written % _PAGE == 0:
                    pipe.execute()
            pipe.execute()
        return written

    # -- documents: items, campaigns, exposures -----------------------------------------------

    def put_item(self, item: ItemRecord) -> bool:
        document = _codec.dumps(_codec.item_to_dict(item))
        return bool(self._catalogue_write("writing an item", "hset", "items", item.item_id, document))

    def get_item(self, item_id: str) -> ItemRecord | None:
        return self.get_items([item_id]).get(item_id)

    def get_items(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return {}
        with self._guard("reading items"):
            documents = self._r.hmget(self._k("items"), ids)
        items = (_codec.item_from_dict(_codec.loads(doc, "item")) for doc in documents if doc is not None)
        return {item.item_id: item for item in items}

    def delete_item(self, item_id: str) -> bool:
        return bool(self._catalogue_write("deleting an item", "hdel", "items", item_id))

    def iter_items(self) -> Iterator[ItemRecord]:
        with self._guard("reading items"):
            documents = [doc for _, doc in self._r.hscan_iter(self._k("items"), count=_PAGE)]
        for doc in documents:
            yield _codec.item_from_dict(_codec.loads(doc, "item"))

    def count_items(self) -> int:
        with self._guard("counting items"):
            return int(self._r.hlen(self._k("items")))

    def catalogue_revision(self) -> int:
        with self._guard("reading the catalogue revision"):
            return int(self._r.get(self._k("rev:catalogue")) or 0)

    def _catalogue_write(self, action: str, command: str, key: str, *args: str) -> int:
        """An item or campaign write and the catalogue revision's bump, in one MULTI/EXEC."""
        with self._guard(action):
            pipe = self._r.pipeline(transaction=True)
            getattr(pipe, command)(self._k(key), *args)
            pipe.incr(self._k("rev:catalogue"))
            result, _ = pipe.execute()
        return int(result)

    def put_campaign(self, campaign_id: str, document: Mapping[str, Any]) -> bool:
        return bool(
            self._catalogue_write(
                "writing a campaign", "hset", "camp", campaign_id, _codec.dumps(dict(document))
            )
        )

    def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        with self._guard("reading a campaign"):
            document = self._r.hget(self._k("camp"), campaign_id)
        return None if document is None else _codec.loads(document, "campaign")

    def delete_campaign(self, campaign_id: str) -> bool:
        return bool(self._catalogue_write("deleting a campaign", "hdel", "camp", campaign_id))

    def list_campaigns(self) -> dict[str, dict[str, Any]]:
        with self._guard("reading campaigns"):
            documents = self._r.hgetall(self._k("camp"))
        return {_text(cid): _codec.loads(doc, "campaign") for cid, doc in sorted(documents.items())}

    def increment_promotion_exposure(self, user_id: str, campaign_id: str, by: int = 1) -> int:
        with self._guard("counting a promotion exposure"):
            return int(self._r.hincrby(self._k("px:" + user_id), campaign_id, int(by)))

    def promotion_exposures(self, user_id: str) -> dict[str, int]:
        with self._guard("reading promotion exposures"):
            counts = self._r.hgetall(self._k("px:" + user_id))
        return {_text(cid): int(count) for cid, count in counts.items()}

    def record_served(self, pages: Sequence[ServedPage]) -> None:
        if not pages:
            return
        with self._guard("counting served pages"):
            pipe = self._r.pipeline(transaction=False)
            for page in pages:
                keys = [self._k("j:" + page.user_id), self._k("px:" + page.user_id)]
                self._served_script(keys=keys, args=[int(page.signals), *page.campaign_ids], client=pipe)
            pipe.execute()

    def served_counts(self, user_id: str) -> ServedCounts:
        with self._guard("reading served-page counters"):
            pipe = self._r.pipeline(transaction=False)
            self._queue_served(pipe, user_id)
            journey, counts = pipe.execute()
        return _served_counts(journey, counts)

    def read_for_ranking(self, user_id: str) -> RankingRead:
        with self._guard("reading a user for ranking"):
            pipe = self._r.pipeline(transaction=True)  # one round trip, one snapshot (MULTI/EXEC)
            pipe.get(self._k("rev:catalogue"))
            pipe.hmget(self._k("s:" + user_id), ["v", "d", "q"])
            self._queue_served(pipe, user_id)
            revision, (version, data, seq), journey, counts = pipe.execute()
        state = None if version is None else VersionedState(int(version), bytes(data), int(seq))
        return RankingRead(int(revision or 0), state, _served_counts(journey, counts))

    def _queue_served(self, pipe: Any, user_id: str) -> None:
        pipe.hmget(self._k("j:" + user_id), ["s", "p"])
        pipe.hgetall(self._k("px:" + user_id))

    def record_exposure(self, exposure: Exposure) -> bool:
        counters = self._k("abc:" + exposure.experiment) if exposure.experiment else ""
        keys = [self._k("ab"), self._k("abu:" + exposure.user_id), counters]
        document = _codec.dumps(_codec.exposure_to_dict(exposure))
        field = f"{exposure.variant}\x1fexposures"
        with self._guard("recording an exposure"):
            return bool(self._exposure_script(keys=keys, args=[exposure.request_id, document, field]))

    def get_exposure(self, request_id: str) -> Exposure | None:
        with self._guard("reading an exposure"):
            document = self._r.hget(self._k("ab"), request_id)
        return None if document is None else _codec.exposure_from_dict(_codec.loads(document, "exposure"))

    def record_outcome(self, request_id: str, outcome: str) -> bool:
        keys = [self._k("ab"), self._k("abo:" + request_id)]
        with self._guard("recording an outcome"):
            return bool(self._outcome_script(keys=keys, args=[self._p, request_id, outcome]))

    def experiment_counts(self, experiment: str) -> dict[str, dict[str, int]]:
        with self._guard("reading experiment counters"):
            raw = self._r.hgetall(self._k("abc:" + experiment))
        counts: dict[str, dict[str, int]] = {}
        for field, count in sorted((_text(f), int(c)) for f, c in raw.items()):
            variant, _, counter = field.rpartition("\x1f")
            counts.setdefault(variant, {})[counter] = count
        return counts

    def assign_variant(self, experiment: str, user_id: str, variant: str) -> str:
        with self._guard("assigning a variant"):
            return _text(self._assign_script(keys=[self._k("abx:" + user_id)], args=[experiment, variant]))

    def get_assignment(self, experiment: str, user_id: str) -> str | None:
        with self._guard("reading an assignment"):
            variant = self._r.hget(self._k("abx:" + user_id), experiment)
        return None if variant is None else _text(variant)

    def put_allocation(self, experiment: str, shares: Mapping[str, float]) -> None:
        with self._guard("writing an allocation"):
            self._r.hset(self._k("aba"), experiment, _codec.dumps(dict(shares)))

    def get_allocation(self, experiment: str) -> dict[str, float] | None:
        with self._guard("reading an allocation"):
            document = self._r.hget(self._k("aba"), experiment)
        if document is None:
            return None
        return {str(k): float(v) for k, v in _codec.loads(document, "allocation").items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _served_counts(journey: Sequence[Any], counts: Mapping[Any, Any]) -> ServedCounts:
    """:class:`ServedCounts` from the journey hash's ``(s, p)`` and the exposures hash."""
    signals, pages = journey
    exposures = {_text(cid): int(count) for cid, count in counts.items()}
    return ServedCounts(int(signals or 0), int(pages or 0), exposures)
