"""Pseudonymising user ids with a keyed HMAC, so raw ids never reach storage or logs.

A :class:`Pseudonymiser` maps a client's user id to ``"p_" + HMAC-SHA256(key, id)`` (the first 32 hex
digits, 128 bits). The map is deterministic for one key, so the same user always lands on the same
state and events, and it cannot be inverted without the key: a stolen store or log holds only
pseudonyms. Whoever holds the key can still *test* a guessed id, so the key is a secret kept apart from
backups of the store; rotating it detaches every stored user (they start from zero history).

The key comes from the configuration, else the environment (``WAYFINDER_HMAC_KEY``), else a key file
created once with 32 random bytes (:func:`load_or_create_key`), so restarts keep the same map.

Examples
--------
>>> p = Pseudonymiser(b"k" * 32)
>>> p("alice") == p("alice") and p("alice") != p("bob")
True
>>> p("alice")[:2], len(p("alice"))
('p_', 34)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from recsys.errors import ConfigError

ENV_KEY = "WAYFINDER_HMAC_KEY"
PREFIX = "p_"
MIN_KEY_BYTES = 16
_DIGEST_HEX = 32


class Pseudonymiser:
    """Keyed, deterministic, one-way map of user ids (HMAC-SHA256).

    Parameters
    ----------
    key : the secret, at least 16 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the HMAC key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def __call__(self, user_id: str) -> str:
        digest = hmac.new(self._key, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return PREFIX + digest.hexdigest()[:_DIGEST_HEX]

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymiser(key=<hidden>)"


def identity(user_id: str) -> str:
    """The map used when pseudonymisation is switched off."""
    return user_id


def decode_key(text: str) -> bytes:
    """A key as written in config, env or key file: hex (64 digits) or any string of >= 16 bytes."""
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the HMAC key must be at least {MIN_KEY_BYTES} bytes; generate one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return key


def load_or_create_key(path: str | Path) -> bytes:
    """Read the key file, or create it (32 random bytes, hex, mode 0600) if it does not exist yet."""
    path = Path(path)
    if path.exists():
        return decode_key(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(32)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, path)  # atomic, and fails if another process created the key first
    except FileExistsError:
        return decode_key(path.read_text())
    finally:
        temporary.unlink()
    return decode_key(text)
