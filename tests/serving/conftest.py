"""Fixtures shared by the HTTP tests of the Serve app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serving._app import serve_on_free_port


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    """Serve started on a free loopback port for the module; its port (shut down after)."""
    with serve_on_free_port() as url:
        yield int(url.rsplit(":", 1)[1])
