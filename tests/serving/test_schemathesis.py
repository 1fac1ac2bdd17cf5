"""No input yields a 5xx: schemathesis fuzzes the running app from its own OpenAPI schema over HTTP.

The app runs on Ray Serve on the session's local cluster, with an admin key (so every operation's
authorised path is exercised) and the Redis-free SQLite store. Schemathesis runs as its CLI does in
CI: every phase (schema examples, coverage of boundaries and invalid values, fuzzing, stateful
sequences), a bounded number of examples per operation and a fixed seed, and its ``not_a_server_error``
and ``ignored_auth`` checks. The test fails on any failure schemathesis reports, printing its report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.api_keys import add_key, new_key
from serving.auth import AuthConfig
from serving.privacy import PrivacyConfig
from tests.serving._app import serve_on_free_port, small_bundle

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]

MAX_EXAMPLES = int(os.environ.get("WAYFINDER_FUZZ_EXAMPLES", "30"))  # per operation; raise it for a deep run
SEED = int(os.environ.get("WAYFINDER_FUZZ_SEED", "20261128"))
STORE = os.environ.get("WAYFINDER_FUZZ_STORE", "sqlite")  # or redis, for a deep run against Redis


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str]]:
    from ray import serve

    from serving.app import ServingArgs, build_app

    root = tmp_path_factory.mktemp("fuzz")
    bundle = small_bundle(root)
    raw, record = new_key(["admin"], name="schemathesis", rate_per_s=10_000, burst=10_000)
    add_key(root / "api-keys.json", record)
    args = ServingArgs(
        bundle=str(bundle),
        store_url=(
            f"{request.getfixturevalue('redis_server').url}?prefix=fuzz:&require_fsync=true"
            if STORE == "redis"
            else f"sqlite:///{root}/store.db"
        ),
        auth=AuthConfig(keys_file=str(root / "api-keys.json")),
        privacy=PrivacyConfig(key_file=str(root / "hmac.key")),
    )
    with serve_on_free_port() as url:
        serve.run(build_app(args), name="fuzz", route_prefix="/")
        yield url, raw
        serve.delete("fuzz")


def test_no_generated_request_gets_a_server_error(app: tuple[str, str], tmp_path: Path) -> None:
    url, key = app
    report = tmp_path / "report.json"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        *("--header", f"Authorization: Bearer {key}"),
        *("--checks", "not_a_server_error,ignored_auth"),
        *("--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "2"),
        *("--request-timeout", "30", "--output-truncate", "false"),
        *("--report", "json", "--report-json-path", str(report)),
    ]
    # in tmp_path: schemathesis keeps a cache in its working directory
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-20_000:]
    summary: dict[str, Any] = json.loads(report.read_text())
    assert summary["failures"] == [] and summary["errors"] == [], output[-20_000:]
    operations = summary["operations"]
    assert operations["tested"] == operations["total"] >= 11, operations  # every route, /v1 and health
    assert summary["test_cases"]["generated"] >= 10 * operations["total"], summary["test_cases"]
    assert {summary["phases"][p]["status"] for p in ("coverage", "fuzzing")} == {"success"}
