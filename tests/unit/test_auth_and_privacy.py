"""API keys, the guard (401/403/429) and user-id pseudonymisation, without Ray."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from fastapi import HTTPException

from jobs import cli
from recsys.errors import ConfigError
from recsys.privacy import ENV_KEY, Pseudonymiser, load_or_create_key
from serving.api_keys import add_key, new_key, parse_scopes, read_keys, revoke_key
from serving.auth import AuthConfig, Guard, TokenBucket
from serving.privacy import PrivacyConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pseudonyms_are_keyed_stable_and_hide_the_id() -> None:
    one, other = Pseudonymiser(b"a" * 32), Pseudonymiser(b"b" * 32)
    assert one("alice") == one("alice") != one("alice ")
    assert one("alice") != other("alice")
    assert "alice" not in one("alice") and one("alice").startswith("p_")
    assert "a" * 32 not in repr(one)
    with pytest.raises(ConfigError, match="16 bytes"):
        Pseudonymiser(b"short")


def test_generated_key_is_persisted_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "store.db.hmac-key"
    first = load_or_create_key(path)
    assert len(first) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == first
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_privacy_key_order_config_then_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    monkeypatch.delenv(ENV_KEY, raising=False)
    from_file = PrivacyConfig().resolved(url, tmp_path)
    assert Path(from_file.key_file or "") == tmp_path / "store.db.hmac-key"
    again = PrivacyConfig().resolved(url, tmp_path).pseudonymiser()
    assert again("bob") == from_file.pseudonymiser()("bob")  # a restart maps bob to the same pseudonym
    monkeypatch.setenv(ENV_KEY, "e" * 64)
    from_env = PrivacyConfig().resolved(url, tmp_path).pseudonymiser()
    assert from_env("bob") == Pseudonymiser(bytes.fromhex("e" * 64))("bob")
    configured = PrivacyConfig(hmac_key="my configured secret!").resolved(url, tmp_path).pseudonymiser()
    assert configured("bob") == Pseudonymiser(b"my configured secret!")("bob")
    assert PrivacyConfig(pseudonymise=False).resolved(url, tmp_path).pseudonymiser()("bob") == "bob"
    assert "my configured" not in repr(PrivacyConfig(hmac_key="my configured secret!"))


def test_keys_file_stores_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    raw, record = new_key(["events:write", "recommendations:read"], name="web")
    add_key(path, record)
    text = path.read_text()
    assert raw not in text and raw.split("_", 2)[2] not in text and record.sha256 in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (stored,) = read_keys(path)
    assert stored.matches(raw) and not stored.matches(raw[:-1] + "x")
    assert revoke_key(path, record.key_id) and not revoke_key(path, record.key_id)
    assert read_keys(path) == []
    with pytest.raises(ConfigError, match="scopes"):
        parse_scopes("events:write,root")


def test_cli_creates_lists_and_revokes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "keys.json")
    assert cli.main(["keys", "create", "--scopes", "admin", "--keys-file", path, "--rate", "5"]) == 0
    raw = capsys.readouterr().out.strip()
    (record,) = read_keys(path)
    assert record.matches(raw) and record.scopes == ("admin",) and record.rate_per_s == 5
    assert cli.main(["keys", "list", "--keys-file", path]) == 0
    listed = capsys.readouterr().out
    assert record.key_id in listed and raw not in listed
    assert cli.main(["keys", "create", "--scopes", "superuser", "--keys-file", path]) == 2
    assert "superuser" in capsys.readouterr().err
    assert cli.main(["keys", "revoke", record.key_id, "--keys-file", path]) == 0
    assert json.loads(Path(path).read_text()) == {"keys": []}


def status_of(guard: Guard, key: str | None, scope: str) -> int:
    try:
        guard.check(key, [scope])
    except HTTPException as exc:
        return exc.status_code
    return 200


def test_guard_401_403_and_admin_implies_all(tmp_path: Path) -> None:
    reader_key, reader = new_key(["recommendations:read"])
    admin_key, admin = new_key(["admin"])
    guard = Guard(AuthConfig(keys=[reader, admin]), clock=Clock())
    assert not guard.open
    assert status_of(guard, reader_key, "recommendations:read") == 200
    assert status_of(guard, reader_key, "events:write") == 403
    assert status_of(guard, admin_key, "events:write") == 200
    assert status_of(guard, None, "recommendations:read") == 401
    assert status_of(guard, reader_key + "x", "recommendations:read") == 401
    assert status_of(guard, "not-a-key", "recommendations:read") == 401
    with pytest.raises(HTTPException) as missing:
        guard.check(None, ["admin"])
    assert missing.value.headers is not None and "Bearer" in missing.value.headers["WWW-Authenticate"]


def test_guard_rate_limits_per_key_with_retry_after() -> None:
    clock = Clock()
    slow_key, slow = new_key(["admin"], rate_per_s=0.5, burst=2)
    other_key, other = new_key(["admin"])
    guard = Guard(AuthConfig(keys=[slow, other]), clock=clock)
    assert [status_of(guard, slow_key, "admin") for _ in range(3)] == [200, 200, 429]
    with pytest.raises(HTTPException) as limited:
        guard.check(slow_key, ["admin"])
    assert limited.value.headers == {"Retry-After": "2"}  # one token every 2 s
    assert status_of(guard, other_key, "admin") == 200  # buckets are per key
    clock.now += 2.0
    assert status_of(guard, slow_key, "admin") == 200


def test_token_bucket_refills_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert [bucket.take(100.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]


def test_guard_follows_the_keys_file(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "keys.json"
    guard = Guard(AuthConfig(keys_file=str(path)), clock=clock)
    assert not guard.open  # a configured but empty keys file locks the API rather than opening it
    raw, record = new_key(["events:write"])
    add_key(path, record)
    clock.now += 1.5
    assert status_of(guard, raw, "events:write") == 200
    revoke_key(path, record.key_id)
    clock.now += 1.5
    assert status_of(guard, raw, "events:write") == 401


def test_no_keys_means_open_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="wayfinder.serving.auth"):
        guard = Guard(AuthConfig())
    assert guard.open and guard.check(None, ["admin"]) is None
    assert "OPEN" in caplog.text


def test_serve_creates_an_admin_key_once_beside_the_store(tmp_path: Path) -> None:
    import argparse

    from jobs.serve import admin_key, example_session

    args = argparse.Namespace(keys_file=None, no_auth=False)
    store = f"sqlite:///{tmp_path}/out/store.db"
    keys_file, raw = admin_key(args, store)
    assert keys_file == str(tmp_path / "out" / "api-keys.json") and raw is not None
    (record,) = read_keys(keys_file)
    assert record.matches(raw) and record.scopes == ("admin",)
    assert admin_key(args, store) == (keys_file, None)  # second start: the file has a key, none printed
    session = example_session("http://h:1", api_key=raw, keys_file=keys_file)
    assert raw in session and "Authorization: Bearer $WAYFINDER_KEY" in session
    later = example_session("http://h:1", keys_file=keys_file)
    assert "wf_" not in later and "Authorization: Bearer" in later
    assert admin_key(argparse.Namespace(keys_file=None, no_auth=True), store) == (None, None)
    assert "WARNING" in example_session("http://h:1")
