"""Shared fixtures: one local Ray cluster per test session, and the bundled dataset's location."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests._redis"]  # the redis_server fixture, for every test module

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")

REPO = Path(__file__).resolve().parents[1]
ML_LATEST_SMALL = REPO / "data" / "ml-latest-small"


@pytest.fixture(scope="session")
def ml_small() -> Path:
    """The bundled MovieLens latest-small directory (100,836 ratings, 610 users, 9,742 movies)."""
    return ML_LATEST_SMALL


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray cluster for the whole session (2 CPUs, no dashboard), shut down at the end."""
    import ray

    from jobs._ray import configure_data_context, init_ray

    temp_dir = tempfile.mkdtemp(prefix="wf-ray-", dir="/tmp")
    init_ray(num_cpus=2, temp_dir=temp_dir)
    configure_data_context()
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
