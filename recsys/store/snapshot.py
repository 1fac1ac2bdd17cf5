"""State snapshots, and re-deriving states from the event log.

A snapshot is a small SQLite file (any backend can write or read one): table ``states`` (user id,
version, seq, data) and table ``meta`` (format, ``last_seq``, ``created_at``). ``last_seq`` is read
*before* the states, and each state carries the sequence of the last event written with it, so::

    info = restore_snapshot(store, "states.snap")          # serving stopped
    replay(store, fold, after_seq=info.last_seq)            # fold in what came after the snapshot

brings every user's state up to date however old the snapshot is, as long as the log still holds
the events. After a model change, ``replay(store, fold, from_scratch=True)`` re-derives every state
from the user's whole history.

``fold(state, events) -> new_state`` receives the stored state bytes (``None`` from scratch or for a
new user) and the user's events oldest first; it is the caller's (the embedding updater's) logic.
The serving engine's fold is :func:`recsys.engine.rederive.state_fold`; the engine calls
:func:`replay_user` lazily, on a user's first request after a model swap.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from recsys.store.base import Store, StoredEvent, VersionedState
from recsys.store.errors import ConflictError, StoreError

FORMAT = "wayfinder-state-snapshot"
FORMAT_VERSION = 1

Fold = Callable[[bytes | None, Sequence[StoredEvent]], bytes]
"""``fold(state_or_None, events_oldest_first) -> new state bytes``."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot holds."""

    states: int
    last_seq: int
    """The log's last sequence when the snapshot began: every earlier event is reflected."""
    created_at: float


def write_snapshot(
    store: Store, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
) -> SnapshotInfo:
    """Write every state to ``path`` atomically (a temporary file, fsynced, then renamed).

    Safe while serving: states only move forward, and ``last_seq`` is read first.
    """
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    last_seq = store.last_sequence()
    created_at = clock()
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(
                "CREATE TABLE states (user_id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                "seq INTEGER NOT NULL, data BLOB NOT NULL)"
            )
            count = conn.executemany(
                "INSERT INTO states VALUES (?, ?, ?, ?)",
                ((user, s.version, s.seq, s.data) for user, s in store.iter_states()),
            ).rowcount
            meta = {
                "format": FORMAT,
                "format_version": str(FORMAT_VERSION),
                "last_seq": str(last_seq),
                "created_at": repr(created_at),
                "states": str(count),
            }
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"writing the state snapshot {target} failed ({exc}); check the directory") from exc
    return SnapshotInfo(states=count, last_seq=last_seq, created_at=created_at)


def read_snapshot_info(path: str | os.PathLike[str]) -> SnapshotInfo:
    """The header of a snapshot file, validated."""
    return _read(Path(path), states=False)[0]


def restore_snapshot(store: Store, path: str | os.PathLike[str]) -> SnapshotInfo:
    """Replace every state in ``store`` by the snapshot's (versions included); serving must be stopped.

    Events are not touched: follow with :func:`replay` ``(after_seq=info.last_seq)`` to fold in
    the events appended after the snapshot.
    """
    info, states = _read(Path(path), states=True)
    store.replace_states(states)
    return info


def _read(path: Path, *, states: bool) -> tuple[SnapshotInfo, list[tuple[str, VersionedState]]]:
    if not path.is_file():
        raise StoreError(f"state snapshot {path} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            rows = conn.execute("SELECT user_id, version, seq, data FROM states").fetchall() if states else []
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a Wayfinder state snapshot ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("format_version") != str(FORMAT_VERSION):
        raise StoreError(
            f"{path} is not a version-{FORMAT_VERSION} Wayfinder state snapshot "
            f"(format {meta.get('format')!r}, version {meta.get('format_version')!r})"
        )
    info = SnapshotInfo(int(meta["states"]), int(meta["last_seq"]), float(meta["created_at"]))
    return info, [(u, VersionedState(int(v), bytes(d), int(q))) for u, v, q, d in rows]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replay_user(
    store: Store, user_id: str, fold: Fold, *, from_scratch: bool = False, max_attempts: int = 5
) -> VersionedState | None:
    """Fold the user's events into their state and write it (compare-and-set, retried on conflict).

    Without ``from_scratch`` only events after the state's ``seq`` are folded into the stored
    state; with it, all of the user's events into ``None``. Returns the state now stored (``None``
    for a user without state or events).
    """
    for _ in range(max_attempts):
        current = store.get_state(user_id)
        fresh = from_scratch or current is None
        base = None if fresh or current is None else current.data
        after = 0 if fresh or current is None else current.seq
        events = store.events_for_user(user_id, after_seq=after)
        if not events:
            return current
        data = fold(base, events)
        try:
            version = store.put_state(
                user_id, data, 0 if current is None else current.version, seq=events[-1].seq
            )
        except ConflictError:
            continue
        return VersionedState(version, data, events[-1].seq)
    raise StoreError(
        f"replaying user {user_id!r}: the state kept changing ({max_attempts} attempts); retry later"
    )


def replay(store: Store, fold: Fold, *, after_seq: int = 0, from_scratch: bool = False) -> int:
    """:func:`replay_user` for every user with an event after ``after_seq``; returns how many users.

    Run it before serving traffic after a restore; a state written concurrently is re-folded.
    """
    users = dict.fromkeys(stored.event.user_id for stored in store.iter_events(after_seq=after_seq))
    for user_id in users:
        replay_user(store, user_id, fold, from_scratch=from_scratch)
    return len(users)
