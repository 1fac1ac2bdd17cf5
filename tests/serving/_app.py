"""Shared pieces of the HTTP tests that deploy their own app: a small bundle and Serve on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys.data.runner import SerialExecutor, preprocess
from recsys.data.sources import parse_source
from recsys.data.storage import Location
from recsys.data.synthetic import DirtConfig, SyntheticConfig, generate
from recsys.engine import train_bundle
from tests._cluster import free_port


def small_bundle(
    root: Path,
    *,
    seed: int = 11,
    n_events: int = 10_000,
    n_items: int = 150,
    n_clusters: int = 4,
    factors: int = 8,
    iterations: int = 4,
) -> Path:
    """A serving bundle on a small synthetic catalogue with planted taste clusters (seconds to build)."""
    config = SyntheticConfig(
        seed=seed, n_events=n_events, n_items=n_items, n_clusters=n_clusters, dirt=DirtConfig.none()
    )
    generate(config, str(root / "raw"))
    source = parse_source(f"events:{root}/raw/events", items=f"{root}/raw/items", users=f"{root}/raw/users")
    preprocess(source, Location.parse(str(root / "data")), executor=SerialExecutor())
    space = {"family": "als", "factors": factors, "iterations": iterations}
    train_bundle(root / "data", root / "bundle", space=space)
    return root / "bundle"


@contextmanager
def serve_on_free_port() -> Iterator[str]:
    """``serve.start`` on a free loopback port; yields the base URL and shuts Serve down after."""
    from ray import serve

    port = free_port()
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
