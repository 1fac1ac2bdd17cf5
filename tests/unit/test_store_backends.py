"""What is particular to each store backend: URLs, SQLite's file and locks, Redis's durability check."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from recsys.errors import ConfigError
from recsys.store import Event, SQLiteStore, Store, StoreError, open_store
from recsys.store._sqlite_db import MIGRATIONS
from recsys.store.snapshot import read_snapshot_info

if TYPE_CHECKING:
    from tests._redis import RedisServer


def event(n: int) -> Event:
    return Event(f"e{n}", "u1", "i1", "view", timestamp_ms=n)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("postgres://db/x", "scheme"),
        ("sqlite://host/x.db", "sqlite:///"),
        ("sqlite:///x.db?fsync=1", "unknown sqlite store options"),
        ("sqlite:///x.db?synchronous=OFF", "synchronous"),
        ("sqlite:///x.db?busy_timeout_s=soon", "number"),
        ("redis://127.0.0.1:1/0?require_fsync=maybe", "true or false"),
    ],
)
def test_bad_urls_say_what_is_wrong(
    url: str, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=match):
        open_store(url)


def test_sqlite_url_paths_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel.db?synchronous=normal&busy_timeout_s=2")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    try:
        assert isinstance(relative, SQLiteStore) and isinstance(relative, Store)
        assert relative.path == tmp_path / "rel.db" and (tmp_path / "rel.db").is_file()
        assert isinstance(absolute, SQLiteStore) and absolute.path == tmp_path / "abs.db"
        assert "NORMAL" in repr(relative)
    finally:
        relative.close()
        absolute.close()
    with pytest.raises(StoreError, match="does not exist; create it"):
        open_store(f"sqlite:///{tmp_path}/missing/dir/x.db")


def test_sqlite_file_is_wal_with_a_versioned_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.append(event(1))
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append(event(2))
    raw = sqlite3.connect(tmp_path / "s.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer than this code"):
        SQLiteStore(tmp_path / "s.db")


def test_sqlite_reopen_migrates_nothing_and_keeps_data(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").append(event(1))
    reopened = SQLiteStore(tmp_path / "s.db")
    assert reopened.count_events() == 1 and reopened.append(event(1)).duplicate
    reopened.close()


def test_sqlite_write_lock_held_too_long_is_a_clear_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", busy_timeout_s=0.1)
    blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="busy_timeout_s"):
            store.append(event(1))
        assert store.count_events() == 0  # readers are not blocked (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert not store.append(event(1)).duplicate
    store.close()


def _open_at(path: str, start_at: float) -> int:
    time.sleep(max(0.0, start_at - time.time()))
    store = SQLiteStore(path)
    try:
        return store.count_events()
    finally:
        store.close()


def test_sqlite_opened_by_several_processes_at_once(tmp_path: Path) -> None:
    """Replicas starting together open a new store file at once. Switching it to WAL could answer
    "database is locked" at once, without waiting through busy_timeout_s (11 of 90 such opens
    failed: six processes on each of 15 new files)."""
    with ProcessPoolExecutor(6, mp_context=get_context("spawn")) as pool:
        pool.submit(_open_at, str(tmp_path / "warm-up.db"), 0.0).result(timeout=60)  # a worker is up first
        for n in range(20):
            start_at = time.time() + 0.2
            opened = [pool.submit(_open_at, str(tmp_path / f"s{n}.db"), start_at) for _ in range(6)]
            assert [future.result(timeout=60) for future in opened] == [0] * 6


def test_snapshot_file_must_be_a_snapshot(tmp_path: Path) -> None:
    (tmp_path / "junk.snap").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a Wayfinder state snapshot"):
        read_snapshot_info(tmp_path / "junk.snap")


def test_unreachable_redis_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="check that the server is running"):
        open_store("redis://127.0.0.1:1/0")


def test_redis_refuses_to_pretend_durability(redis_server: RedisServer) -> None:
    import redis

    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("appendfsync", "everysec")
    try:
        with pytest.raises(StoreError, match="appendfsync always"):
            open_store(f"{redis_server.url}?require_fsync=true")
        lenient = open_store(f"{redis_server.url}?prefix={uuid.uuid4().hex}:")
        assert not lenient.append(event(1)).duplicate
        lenient.close()
        with pytest.raises(StoreError, match="closed"):
            lenient.append(event(2))
    finally:
        admin.config_set("appendfsync", "always")
        admin.close()


def test_the_store_package_never_imports_ray() -> None:
    code = "import sys, recsys.store, recsys.store._redis, recsys.store.snapshot; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "fields",
    [{"event_id": ""}, {"user_id": 7}, {"timestamp_ms": 1.5}, {"timestamp_ms": "1"}, {"value": float("nan")}],
)
def test_events_are_validated_on_construction(fields: dict[str, object]) -> None:
    good: dict[str, object] = {"event_id": "e", "user_id": "u", "item_id": "i", "event_type": "view"}
    with pytest.raises(ValueError, match="Event"):
        Event(**{**good, "timestamp_ms": 1, **fields})  # type: ignore[arg-type]
