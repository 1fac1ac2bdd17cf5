"""One SQLite file in WAL mode: per-thread connections, write transactions, schema migrations.

Durability: ``synchronous=FULL`` (the default) fsyncs the write-ahead log on every commit, so an
acknowledged write survives a crash or power loss. ``NORMAL`` is far faster in WAL mode but may
lose the last transactions on power loss (never on a process crash); choose it knowingly.
``transaction(..., durable=False)`` runs on a second per-thread connection at ``NORMAL`` for
best-effort counters; the next durable commit (any connection) fsyncs the log, theirs included.

Concurrency: each thread (and each process, also after a fork) gets its own connection. Writes run
in ``BEGIN IMMEDIATE`` transactions, which take the database write lock up front, so a
read-check-write inside one cannot interleave with another process's; a writer waits up to
``busy_timeout_s`` for the lock. Readers neither block nor wait for writers (WAL). The file must be
on a local disk: WAL needs shared memory between the processes.

Schema changes are numbered migrations recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError
from recsys.store.errors import StoreError

_BUMP = "UPDATE revisions SET value = value + 1 WHERE name = 'catalogue';"
"""Trigger body: every item or campaign write bumps the catalogue revision in its transaction."""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL, item_id TEXT NOT NULL, event_type TEXT NOT NULL,
            value REAL, ts INTEGER NOT NULL, payload TEXT NOT NULL)""",
        "CREATE INDEX events_by_user ON events (user_id, seq)",
        "CREATE INDEX events_by_item ON events (item_id, seq)",
        """CREATE TABLE states (
            user_id TEXT PRIMARY KEY, version INTEGER NOT NULL, seq INTEGER NOT NULL,
            data BLOB NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE items (
            item_id TEXT PRIMARY KEY, document TEXT NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE campaigns (
            campaign_id TEXT PRIMARY KEY, document TEXT NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE promotion_exposures (
            user_id TEXT NOT NULL, campaign_id TEXT NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (user_id, campaign_id)) WITHOUT ROWID""",
        """CREATE TABLE exposures (
            request_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, document TEXT NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX exposures_by_user ON exposures (user_id)",
    ),
    (  # A/B testing: outcomes attributed to exposures, per-variant counters, assignments, allocations
        """CREATE TABLE ab_outcomes (
            request_id TEXT NOT NULL, outcome TEXT NOT NULL,
            PRIMARY KEY (request_id, outcome)) WITHOUT ROWID""",
        """CREATE TABLE ab_counters (
            experiment TEXT NOT NULL, variant TEXT NOT NULL, counter TEXT NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (experiment, variant, counter)) WITHOUT ROWID""",
        """CREATE TABLE ab_assignments (
            experiment TEXT NOT NULL, user_id TEXT NOT NULL, variant TEXT NOT NULL,
            PRIMARY KEY (experiment, user_id)) WITHOUT ROWID""",
        "CREATE INDEX ab_assignments_by_user ON ab_assignments (user_id)",
        """CREATE TABLE ab_allocations (
            experiment TEXT PRIMARY KEY, document TEXT NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID""",
    ),
    (
        """CREATE TABLE journeys (
            user_id TEXT PRIMARY KEY, signals INTEGER NOT NULL, pages INTEGER NOT NULL) WITHOUT ROWID""",
    ),
    (
        "CREATE TABLE revisions (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO revisions (name, value) VALUES ('catalogue', 0)",
        f"CREATE TRIGGER items_insert_revision AFTER INSERT ON items BEGIN {_BUMP} END",
        f"CREATE TRIGGER items_update_revision AFTER UPDATE ON items BEGIN {_BUMP} END",
        f"CREATE TRIGGER items_delete_revision AFTER DELETE ON items BEGIN {_BUMP} END",
        f"CREATE TRIGGER campaigns_insert_revision AFTER INSERT ON campaigns BEGIN {_BUMP} END",
        f"CREATE TRIGGER campaigns_update_revision AFTER UPDATE ON campaigns BEGIN {_BUMP} END",
        f"CREATE TRIGGER campaigns_delete_revision AFTER DELETE ON campaigns BEGIN {_BUMP} END",
    ),
)
"""Migration ``n`` takes the schema from ``user_version`` ``n`` to ``n + 1``; append, never edit."""

SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")


class SQLiteDatabase:
    """Connections to one database file, opened lazily per thread and per process."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str, busy_timeout_s: float) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ConfigError(f"sqlite synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        if busy_timeout_s < 0:
            raise ConfigError(f"sqlite busy_timeout_s must be >= 0, got {busy_timeout_s}")
        self.path = Path(path).absolute()  # later chdirs must not move new threads' connections
        if not self.path.parent.is_dir():
            raise StoreError(
                f"SQLite store {self.path}: directory {self.path.parent} does not exist; create it"
            )
        self.synchronous = synchronous.upper()
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self._migrate()

    def error(self, action: str, exc: BaseException) -> StoreError:
        """A :class:`StoreError` saying what failed, where, and what to do."""
        text = str(exc)
        hint = (
            f"another writer held the lock longer than busy_timeout_s={self.busy_timeout_s}; "
            "raise it or reduce concurrent writes"
            if "locked" in text or "busy" in text
            else "check that the file is readable, writable and on a local disk"
        )
        return StoreError(f"SQLite store {self.path}: {action} failed ({text}); {hint}")

    def connection(self, *, durable: bool = True) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit); ``durable=False``:
        the thread's ``synchronous=NORMAL`` connection."""
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed; open a new one")
        name = "conn" if durable else "relaxed"
        conn: sqlite3.Connection | None = getattr(self._local, name, None)
        if conn is not None and getattr(self._local, name + "_pid", None) == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = self._wal_mode(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous if durable else 'NORMAL'}")
        except sqlite3.Error as exc:
            raise self.error("opening", exc) from exc
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreError(f"SQLite store {self.path}: WAL mode refused (got {mode!r}); use a local disk")
        setattr(self._local, name, conn)
        setattr(self._local, name + "_pid", os.getpid())
        with self._lock:
            self._connections.append(conn)
        return conn

    def _wal_mode(self, conn: sqlite3.Connection) -> str:
        """``PRAGMA journal_mode = WAL``, retried for up to ``busy_timeout_s`` while another
        connection holds the lock. The pragma does not always wait through the busy timeout: when
        several processes open a new file at once (replicas starting together), some got "database
        is locked" at once (11 of 90 opens, six processes on each of 15 new files)."""
        deadline = time.monotonic() + self.busy_timeout_s
        pause = 0.001
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 0.05)

    @contextmanager
    def transaction(self, action: str, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database write lock; committed (durably) on exit."""
        conn = self.connection(durable=durable)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.error(action, exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.error(action, exc) from exc
            raise

    def read(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one query (one consistent snapshot of the database)."""
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.error(action, exc) from exc

    def _migrate(self) -> None:
        with self.transaction("migrating the schema") as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"SQLite store {self.path} has schema version {current}, newer than this code's "
                    f"{len(MIGRATIONS)}; upgrade Wayfinder"
                )
            for number in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[number]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def close(self) -> None:
        """Close every connection this object opened, from any thread."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
