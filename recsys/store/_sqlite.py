"""The SQLite :class:`~recsys.store.base.Store`: the default backend, one WAL-mode file per node.

See :mod:`recsys.store._sqlite_db` for durability (``synchronous``) and concurrency. Appends from
concurrent threads of one process share a transaction and its fsync
(:mod:`recsys.store._group_commit`); each is acknowledged only once that transaction committed.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from recsys.store import _codec
from recsys.store._group_commit import GroupCommit
from recsys.store._sqlite_db import SQLiteDatabase
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
from recsys.store.errors import ConflictError

_EVENT_COLUMNS = "seq, event_id, user_id, item_id, event_type, value, ts, payload"
_PAGE = 1000

_Pending = tuple[Event, tuple[Any, ...], bytes | None, int]
"""An event ready to write: the event, its column values, the new state (or None), expected version."""


class SQLiteStore:
    """The :class:`~recsys.store.base.Store` on one SQLite file in WAL mode.

    Parameters
    ----------
    path:
        The database file; created with its schema when missing. Its directory must exist.
    synchronous:
        ``"FULL"`` (durable on commit, the default), ``"EXTRA"``, or ``"NORMAL"`` (see module doc).
    busy_timeout_s:
        How long a write waits for another process's write lock before raising :class:`StoreError`.
    clock:
        Seconds since the epoch, for ``updated_at`` columns.

    Examples
    --------
    >>> store = SQLiteStore(tmp_path / "wayfinder.db")  # doctest: +SKIP
    >>> store.append_and_update(event, b"state", expected_version=0).version  # doctest: +SKIP
    1
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = SQLiteDatabase(path, synchronous=synchronous, busy_timeout_s=busy_timeout_s)
        self.path = self._db.path
        self._clock = clock
        self._writes: GroupCommit[_Pending, UpdateResult | ConflictError] = GroupCommit(self._apply_group)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self._db.synchronous!r})"

    def ping(self) -> None:
        self._db.read("ping", "SELECT 1")

    def close(self) -> None:
        self._db.close()

    # -- event log and states -----------------------------------------------------------------

    @staticmethod
    def _version(conn: sqlite3.Connection, user_id: str) -> tuple[int, int]:
        row = conn.execute("SELECT version, seq FROM states WHERE user_id = ?", (user_id,)).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def _write_state(
        self, conn: sqlite3.Connection, user_id: str, data: bytes, version: int, seq: int
    ) -> None:
        conn.execute(
            "INSERT INTO states (user_id, version, seq, data, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, seq = excluded.seq, "
            "data = excluded.data, updated_at = excluded.updated_at",
            (user_id, version, seq, bytes(data), self._clock()),
        )

    @staticmethod
    def _prepare(event: Event, data: bytes | None, expected: int) -> _Pending:
        # Serialised here, in the caller's thread: a bad payload must fail its own call only,
        # not the group transaction it would share with other callers.
        row = (
            event.event_id,
            event.user_id,
            event.item_id,
            event.event_type,
            event.value,
            event.timestamp_ms,
            _codec.dumps(dict(event.payload)),
        )
        return event, row, None if data is None else bytes(data), int(expected)

    def _apply_group(self, pending: list[_Pending]) -> list[UpdateResult | ConflictError]:
        with self._db.transaction("appending events") as conn:
            return [self._apply(conn, *item) for item in pending]

    def _apply(
        self, conn: sqlite3.Connection, event: Event, row: tuple[Any, ...], data: bytes | None, expected: int
    ) -> UpdateResult | ConflictError:
        # Under BEGIN IMMEDIATE nobody else can write between this check and the insert; the
        # UNIQUE constraint on event_id backs it up.
        found = conn.execute("SELECT seq FROM events WHERE event_id = ?", (event.event_id,)).fetchone()
        if found is not None:
            return UpdateResult(
                sequence=found[0], duplicate=True, version=self._version(conn, event.user_id)[0]
            )
        current = self._version(conn, event.user_id)[0] if data is not None else 0
        if data is not None and current != expected:
            return ConflictError(event.user_id, expected, current)
        cursor = conn.execute(
            "INSERT INTO events (event_id, user_id, item_id, event_type, value, ts, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        seq = int(cursor.lastrowid or 0)
        if data is None:
            return UpdateResult(sequence=seq, duplicate=False, version=0)
        self._write_state(conn, event.user_id, data, current + 1, seq)
        return UpdateResult(sequence=seq, duplicate=False, version=current + 1)

    def append(self, event: Event) -> AppendResult:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[Event]) -> list[AppendResult]:
        results = self._writes.submit([self._prepare(event, None, 0) for event in events])
        return [AppendResult(r.sequence, r.duplicate) for r in results if isinstance(r, UpdateResult)]

    def append_and_update(self, event: Event, data: bytes, expected_version: int) -> UpdateResult:
        result = self.append_and_update_many([StateUpdate(event, data, expected_version)])[0]
        if isinstance(result, ConflictError):
            raise result
        return result

    def append_and_update_many(self, updates: Sequence[StateUpdate]) -> list[UpdateResult | ConflictError]:
        return self._writes.submit([self._prepare(u.event, u.data, u.expected_version) for u in updates])

    def _events(
        self, where: str, params: Sequence[Any], after_seq: int, limit: int | None
    ) -> list[StoredEvent]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} seq > ? ORDER BY seq"
        args = [*params, after_seq]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_stored_event(row) for row in self._db.read("reading events", sql, args)]

    def events_for_user(
        self, user_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        return self._events("user_id = ? AND", (user_id,), after_seq, limit)

    def events_for_item(
        self, item_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        return self._events("item_id = ? AND", (item_id,), after_seq, limit)

    def iter_events(self, *, after_seq: int = 0, batch_size: int = _PAGE) -> Iterator[StoredEvent]:
        while True:
            page = self._events("", (), after_seq, batch_size)
            yield from page
            if len(page) < batch_size:
                return
            after_seq = page[-1].seq

    def count_events(self, *, user_id: str | None = None, item_id: str | None = None) -> int:
        clauses = [f"{col} = ?" for col, v in (("user_id", user_id), ("item_id", item_id)) if v is not None]
        params = [v for v in (user_id, item_id) if v is not None]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return int(self._db.read("counting events", f"SELECT COUNT(*) FROM events{where}", params)[0][0])

    def last_sequence(self) -> int:
        rows = self._db.read(
            "reading the last sequence", "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
        )
        return int(rows[0][0]) if rows else 0

    def delete_user_events(self, user_id: str) -> int:
        with self._db.transaction("deleting a user's events") as conn:
            return conn.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount

    def get_state(self, user_id: str) -> VersionedState | None:
        rows = self._db.read(
            "reading a state", "SELECT version, data, seq FROM states WHERE user_id = ?", (user_id,)
        )
        return VersionedState(rows[0][0], bytes(rows[0][1]), rows[0][2]) if rows else None

    def put_state(self, user_id: str, data: bytes, expected_version: int, *, seq: int | None = None) -> int:
        with self._db.transaction("writing a state") as conn:
            current, stored_seq = self._version(conn, user_id)
            if current != expected_version:
                raise ConflictError(user_id, expected_version, current)
            self._write_state(conn, user_id, data, current + 1, stored_seq if seq is None else seq)
        return current + 1

    def delete_state(self, user_id: str) -> bool:
        with self._db.transaction("deleting a state") as conn:
            return conn.execute("DELETE FROM states WHERE user_id = ?", (user_id,)).rowcount > 0

    def count_states(self) -> int:
        return int(self._db.read("counting states", "SELECT COUNT(*) FROM states")[0][0])

    def iter_states(self) -> Iterator[tuple[str, VersionedState]]:
        after = ""
        while True:
            rows = self._db.read(
                "reading states",
                "SELECT user_id, version, data, seq FROM states WHERE user_id > ? ORDER BY user_id LIMIT ?",
                (after, _PAGE),
            )
            for user_id, version, data, seq in rows:
                yield user_id, VersionedState(version, bytes(data), seq)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def replace_states(self, states: Iterable[tuple[str, VersionedState]]) -> int:
        now = self._clock()
        with self._db.transaction("replacing states") as conn:
            conn.execute("DELETE FROM states")
            cursor = conn.executemany(
                "INSERT INTO states (user_id, version, seq, data, updated_at) VALUES (?, ?, ?, ?, ?)",
                ((user, s.version, s.seq, bytes(s.data), now) for user, s in states),
            )
            return cursor.rowcount

    def forget_user(self, user_id: str) -> ForgetResult:
        with self._db.transaction("forgetting a user") as conn:
            events = conn.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount
            state = conn.execute("DELETE FROM states WHERE user_id = ?", (user_id,)).rowcount > 0
            conn.execute("DELETE FROM promotion_exposures WHERE user_id = ?", (user_id,))
            conn.execute(
                "DELETE FROM ab_outcomes WHERE request_id IN "
                "(SELECT request_id FROM exposures WHERE user_id = ?)",
                (user_id,),
            )
            conn.execute("DELETE FROM journeys WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM exposures WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM ab_assignments WHERE user_id = ?", (user_id,))
        return ForgetResult(events=events, state=state)

    # -- documents: items, campaigns, exposures -----------------------------------------------

    def _put_document(self, table: str, key: str, key_value: str, document: str) -> bool:
        with self._db.transaction(f"writing {table}") as conn:
            new = conn.execute(f"SELECT 1 FROM {table} WHERE {key} = ?", (key_value,)).fetchone() is None
            conn.execute(
                f"INSERT INTO {table} ({key}, document, updated_at) VALUES (?, ?, ?) ON CONFLICT ({key}) "
                "DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
                (key_value, document, self._clock()),
            )
        return new

    def _delete_document(self, table: str, key: str, key_value: str) -> bool:
        with self._db.transaction(f"deleting from {table}") as conn:
            return conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (key_value,)).rowcount > 0

    def put_item(self, item: ItemRecord) -> bool:
        return self._put_document("items", "item_id", item.item_id, _codec.dumps(_codec.item_to_dict(item)))

    def get_item(self, item_id: str) -> ItemRecord | None:
        return self.get_items([item_id]).get(item_id)

    def get_items(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        found: dict[str, ItemRecord] = {}
        ids = list(dict.fromkeys(item_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (document,) in self._db.read(
                "reading items", f"SELECT document FROM items WHERE item_id IN ({marks})", chunk
            ):
                item = _codec.item_from_dict(_codec.loads(document, "item"))
                found[item.item_id] = item
        return found

    def delete_item(self, item_id: str) -> bool:
        return self._delete_document("items", "item_id", item_id)

    def iter_items(self) -> Iterator[ItemRecord]:
        for (document,) in self._db.read("reading items", "SELECT document FROM items ORDER BY item_id"):
            yield _codec.item_from_dict(_codec.loads(document, "item"))

    def count_items(self) -> int:
        return int(self._db.read("counting items", "SELECT COUNT(*) FROM items")[0][0])

    def catalogue_revision(self) -> int:
        rows = self._db.read(
            "reading the catalogue revision", "SELECT value FROM revisions WHERE name = 'catalogue'"
        )
        return int(rows[0][0])

    def put_campaign(self, campaign_id: str, document: Mapping[str, Any]) -> bool:
        return self._put_document("campaigns", "campaign_id", campaign_id, _codec.dumps(dict(document)))

    def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        rows = self._db.read(
            "reading a campaign", "SELECT document FROM campaigns WHERE campaign_id = ?", (campaign_id,)
        )
        return _codec.loads(rows[0][0], "campaign") if rows else None

    def delete_campaign(self, campaign_id: str) -> bool:
        return self._delete_document("campaigns", "campaign_id", campaign_id)

    def list_campaigns(self) -> dict[str, dict[str, Any]]:
        rows = self._db.read(
            "reading campaigns", "SELECT campaign_id, document FROM campaigns ORDER BY campaign_id"
        )
        return {cid: _codec.loads(doc, "campaign") for cid, doc in rows}

    def increment_promotion_exposure(self, user_id: str, campaign_id: str, by: int = 1) -> int:
        with self._db.transaction("counting a promotion exposure") as conn:
            rows = conn.execute(
                "INSERT INTO promotion_exposures (user_id, campaign_id, count) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id, campaign_id) DO UPDATE SET count = count + excluded.count "
                "RETURNING count",
                (user_id, campaign_id, int(by)),
            ).fetchall()
        return int(rows[0][0])

    def promotion_exposures(self, user_id: str) -> dict[str, int]:
        rows = self._db.read(
            "reading promotion exposures",
            "SELECT campaign_id, count FROM promotion_exposures WHERE user_id = ?",
            (user_id,),
        )
        return {cid: int(count) for cid, count in rows}

    def record_served(self, pages: Sequence[ServedPage]) -> None:
        if not pages:
            return
        with self._db.transaction("counting served pages", durable=False) as conn:
            conn.executemany(
                "INSERT INTO journeys (user_id, signals, pages) VALUES (?, ?, 1) ON CONFLICT (user_id) "
                "DO UPDATE SET pages = CASE WHEN excluded.signals = signals THEN pages + 1 "
                "WHEN excluded.signals > signals THEN 1 ELSE pages END, "
                "signals = MAX(signals, excluded.signals)",
                [(page.user_id, int(page.signals)) for page in pages],
            )
            conn.executemany(
                "INSERT INTO promotion_exposures (user_id, campaign_id, count) VALUES (?, ?, 1) "
                "ON CONFLICT (user_id, campaign_id) DO UPDATE SET count = count + 1",
                [(page.user_id, campaign) for page in pages for campaign in page.campaign_ids],
            )

    def served_counts(self, user_id: str) -> ServedCounts:
        rows = self._db.read(
            "reading served-page counters",
            f"{_JOURNEY_ROWS} UNION ALL {_EXPOSURE_ROWS}",
            (user_id, user_id),
        )
        return _served_counts(rows)

    def read_for_ranking(self, user_id: str) -> RankingRead:
        rows = self._db.read(  # one statement: one snapshot
            "reading a user for ranking",
            "SELECT 0, value, NULL, NULL FROM revisions WHERE name = 'catalogue' UNION ALL "
            "SELECT 1, version, data, seq FROM states WHERE user_id = ? UNION ALL "
            f"{_JOURNEY_ROWS} UNION ALL {_EXPOSURE_ROWS}",
            (user_id, user_id, user_id),
        )
        revision = next(int(row[1]) for row in rows if row[0] == 0)
        state = next(
            (VersionedState(int(v), bytes(data), int(seq)) for kind, v, data, seq in rows if kind == 1), None
        )
        return RankingRead(revision, state, _served_counts([row for row in rows if row[0] >= 2]))

    def record_exposure(self, exposure: Exposure) -> bool:
        document = _codec.dumps(_codec.exposure_to_dict(exposure))
        with self._db.transaction("recording an exposure") as conn:
            cursor = conn.execute(
                "INSERT INTO exposures (request_id, user_id, document) VALUES (?, ?, ?) "
                "ON CONFLICT (request_id) DO NOTHING",
                (exposure.request_id, exposure.user_id, document),
            )
            stored = cursor.rowcount > 0
            if stored and exposure.experiment:
                _count(conn, exposure.experiment, exposure.variant, "exposures")
            return stored

    def get_exposure(self, request_id: str) -> Exposure | None:
        rows = self._db.read(
            "reading an exposure", "SELECT document FROM exposures WHERE request_id = ?", (request_id,)
        )
        return _codec.exposure_from_dict(_codec.loads(rows[0][0], "exposure")) if rows else None

    def record_outcome(self, request_id: str, outcome: str) -> bool:
        with self._db.transaction("recording an outcome") as conn:
            row = conn.execute(
                "SELECT document FROM exposures WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                return False
            cursor = conn.execute(
                "INSERT INTO ab_outcomes (request_id, outcome) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (request_id, outcome),
            )
            if cursor.rowcount == 0:
                return False
            exposure = _codec.exposure_from_dict(_codec.loads(row[0], "exposure"))
            if exposure.experiment:
                _count(conn, exposure.experiment, exposure.variant, outcome)
            return True

    def experiment_counts(self, experiment: str) -> dict[str, dict[str, int]]:
        rows = self._db.read(
            "reading experiment counters",
            "SELECT variant, counter, count FROM ab_counters WHERE experiment = ? ORDER BY variant, counter",
            (experiment,),
        )
        counts: dict[str, dict[str, int]] = {}
        for variant, counter, count in rows:
            counts.setdefault(variant, {})[counter] = int(count)
        return counts

    def assign_variant(self, experiment: str, user_id: str, variant: str) -> str:
        with self._db.transaction("assigning a variant") as conn:
            rows = conn.execute(
                "INSERT INTO ab_assignments (experiment, user_id, variant) VALUES (?, ?, ?) "
                "ON CONFLICT (experiment, user_id) DO UPDATE SET variant = variant RETURNING variant",
                (experiment, user_id, variant),
            ).fetchall()
        return str(rows[0][0])

    def get_assignment(self, experiment: str, user_id: str) -> str | None:
        rows = self._db.read(
            "reading an assignment",
            "SELECT variant FROM ab_assignments WHERE experiment = ? AND user_id = ?",
            (experiment, user_id),
        )
        return str(rows[0][0]) if rows else None

    def put_allocation(self, experiment: str, shares: Mapping[str, float]) -> None:
        self._put_document("ab_allocations", "experiment", experiment, _codec.dumps(dict(shares)))

    def get_allocation(self, experiment: str) -> dict[str, float] | None:
        rows = self._db.read(
            "reading an allocation",
            "SELECT document FROM ab_allocations WHERE experiment = ?",
            (experiment,),
        )
        if not rows:
            return None
        return {str(k): float(v) for k, v in _codec.loads(rows[0][0], "allocation").items()}


def _count(conn: sqlite3.Connection, experiment: str, variant: str, counter: str) -> None:
    conn.execute(
        "INSERT INTO ab_counters (experiment, variant, counter, count) VALUES (?, ?, ?, 1) "
        "ON CONFLICT (experiment, variant, counter) DO UPDATE SET count = count + 1",
        (experiment, variant, counter),
    )


def _stored_event(row: Sequence[Any]) -> StoredEvent:
    seq, event_id, user_id, item_id, event_type, value, ts, payload = row
    event = Event(
        event_id=event_id,
        user_id=user_id,
        item_id=item_id,
        event_type=event_type,
        timestamp_ms=int(ts),
        value=value,
        payload=_codec.loads(payload, "event payload"),
    )
    return StoredEvent(seq=int(seq), event=event)


_JOURNEY_ROWS = "SELECT 2, signals, pages, NULL FROM journeys WHERE user_id = ?"
_EXPOSURE_ROWS = "SELECT 3, count, campaign_id, NULL FROM promotion_exposures WHERE user_id = ?"
"""Served-page counter rows, tagged 2 (the journey) and 3 (one campaign's exposures)."""


def _served_counts(rows: Sequence[Sequence[Any]]) -> ServedCounts:
    """:class:`ServedCounts` from rows of :data:`_JOURNEY_ROWS` and :data:`_EXPOSURE_ROWS`."""
    journey = [(signals, pages) for kind, signals, pages, _ in rows if kind == 2]
    exposures = {str(campaign): int(count) for kind, count, campaign, _ in rows if kind == 3}
    signals, pages = journey[0] if journey else (0, 0)
    return ServedCounts(int(signals), int(pages), exposures)
