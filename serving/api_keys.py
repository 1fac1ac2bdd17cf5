"""API keys: scopes, how a key is stored (hashed), and the keys file.

A key looks like ``wf_<key id>_<secret>``: the id (12 hex digits) is public and names the key in
logs, rate limits and the keys file; the secret is 32 random bytes. Only ``sha256(key)`` is stored.
A fast hash is the right one here: the key has 256 random bits, so there is nothing to guess
(a slow hash such as scrypt guards low-entropy *passwords*, and would cost every request
milliseconds).

The keys file is JSON, ``{"keys": [ApiKeyRecord, ...]}``, written atomically with mode 0600 by
``wayfinder keys create|revoke`` (``jobs/keys.py``). Scopes: ``events:write`` (``POST /v1/events``),
``recommendations:read`` (recommendations, similar items, intent) and ``admin`` (items, promotions,
forgetting users; it implies every other scope).

Examples
--------
>>> raw, record = new_key(["recommendations:read"], name="web")
>>> record.matches(raw), record.matches(raw + "x")
(True, False)
>>> parse_key_id(raw) == record.key_id
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys.errors import ConfigError

Scope = Literal["events:write", "recommendations:read", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
ADMIN = "admin"
KEY_PREFIX = "wf"
DEFAULT_RATE_PER_S = 50.0
DEFAULT_BURST = 100


class ApiKeyRecord(BaseModel):
    """One API key as stored: its id, the SHA-256 of the key, scopes and rate limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[0-9a-f]{12}$", description="public id, the key's second part")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the whole key")
    scopes: tuple[Scope, ...] = Field(min_length=1, description="events:write, recommendations:read, admin")
    name: str = Field(default="", max_length=200, description="who or what uses it")
    rate_per_s: float = Field(default=DEFAULT_RATE_PER_S, gt=0, description="sustained requests per second")
    burst: int = Field(default=DEFAULT_BURST, ge=1, description="requests allowed at once (bucket size)")
    created_at: str | None = None

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.sha256, _digest(raw_key))

    def allows(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[ApiKeyRecord] = Field(default_factory=list)


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


def parse_key_id(raw_key: str) -> str | None:
    """The key id of ``wf_<id>_<secret>``, or ``None`` when the text is not shaped like a key."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def parse_scopes(text: str | Sequence[str]) -> tuple[Scope, ...]:
    """``"events:write,recommendations:read"`` (or a list) as scopes; ConfigError naming a bad one."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in names if s not in SCOPES]
    if unknown or not names:
        raise ConfigError(f"scopes must be a comma-separated subset of {list(SCOPES)}, got {text!r}")
    return tuple(dict.fromkeys(names))  # type: ignore[arg-type]


def new_key(
    scopes: Sequence[str],
    *,
    name: str = "",
    rate_per_s: float = DEFAULT_RATE_PER_S,
    burst: int = DEFAULT_BURST,
) -> tuple[str, ApiKeyRecord]:
    """A fresh key and the record to store; the raw key exists only in the returned string."""
    key_id = secrets.token_hex(6)
    raw = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    try:
        record = ApiKeyRecord(
            key_id=key_id,
            sha256=_digest(raw),
            scopes=parse_scopes(scopes),
            name=name,
            rate_per_s=rate_per_s,
            burst=burst,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
    except ValidationError as exc:
        raise ConfigError(f"invalid API key settings: {exc}") from exc
    return raw, record


def read_keys(path: str | Path) -> list[ApiKeyRecord]:
    """The records of a keys file (an empty list if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        return KeysFile.model_validate_json(path.read_bytes()).keys
    except ValidationError as exc:
        raise ConfigError(f"keys file {path} is not valid: {exc}") from exc


def write_keys(path: str | Path, keys: Sequence[ApiKeyRecord]) -> None:
    """Replace the keys file atomically (temp file, fsync, rename), readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(KeysFile(keys=list(keys)).model_dump(mode="json"), handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def add_key(path: str | Path, record: ApiKeyRecord) -> None:
    write_keys(path, [*read_keys(path), record])


def revoke_key(path: str | Path, key_id: str) -> bool:
    """Remove a key from the file; ``False`` if it was not there."""
    keys = read_keys(path)
    kept = [k for k in keys if k.key_id != key_id]
    if len(kept) == len(keys):
        return False
    write_keys(path, kept)
    return True
