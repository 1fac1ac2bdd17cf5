"""The ``privacy`` section of the serving arguments: where the pseudonymisation key comes from.

User ids are pseudonymised in the gateway, before the engine, the store or a log sees them
(:mod:`recsys.privacy`). The key is resolved once, by ``build_app``, in this order: ``hmac_key`` in
the config, the ``WAYFINDER_HMAC_KEY`` environment variable, else ``key_file`` (default: beside the
SQLite store as ``<db>.hmac-key``, or ``out/wayfinder.hmac-key`` for Redis), created with a random
key on first start so restarts map every user to the same pseudonym. The resolved key travels to
the replicas inside the deployment arguments, so replicas on other nodes need no file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from recsys.privacy import ENV_KEY, Pseudonymiser, decode_key, identity, load_or_create_key


class PrivacyConfig(BaseModel):
    """How user ids are pseudonymised (on by default)."""

    model_config = ConfigDict(extra="forbid")

    pseudonymise: bool = Field(default=True, description="HMAC-SHA256 every user id before storing it")
    hmac_key: str | None = Field(
        default=None,
        repr=False,
        description=f"the secret (64 hex digits, or any string of 16+ bytes); default: env {ENV_KEY}",
    )
    key_file: str | None = Field(default=None, description="where a generated key is kept (see above)")

    def resolved(self, store_url: str, root: Path) -> PrivacyConfig:
        """The key filled in (from config, env or the key file, creating it if needed)."""
        if not self.pseudonymise or self.hmac_key:
            return self
        from_env = os.environ.get(ENV_KEY)
        if from_env:
            return self.model_copy(update={"hmac_key": decode_key(from_env).hex()})
        path = Path(self.key_file) if self.key_file else default_key_file(store_url, root)
        path = path if path.is_absolute() else root / path
        return self.model_copy(update={"key_file": str(path), "hmac_key": load_or_create_key(path).hex()})

    def pseudonymiser(self) -> Callable[[str], str]:
        """The map the gateway applies to every user id (identity when switched off)."""
        if not self.pseudonymise:
            return identity
        if not self.hmac_key:
            raise ValueError("PrivacyConfig.pseudonymiser() needs a resolved config (call resolved())")
        return Pseudonymiser(decode_key(self.hmac_key))


def default_key_file(store_url: str, root: Path) -> Path:
    """``<db>.hmac-key`` beside a SQLite store; ``out/wayfinder.hmac-key`` otherwise."""
    if store_url.startswith("sqlite:///"):
        database = Path(store_url.removeprefix("sqlite:///").split("?")[0])
        return Path(f"{database}.hmac-key")
    return root / "out" / "wayfinder.hmac-key"
