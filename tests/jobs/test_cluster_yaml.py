"""cluster.yaml is a valid Ray cluster-launcher config (the checks `ray up` makes before any cloud call)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml

from tests.conftest import REPO


def schema() -> dict[str, Any]:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def errors(document: dict[str, Any]) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(schema()).iter_errors(document)]


def test_cluster_yaml_matches_the_launcher_schema() -> None:
    assert errors(config()) == []


def test_cluster_yaml_passes_the_launchers_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config())))


def test_head_and_workers_use_token_auth_and_one_blas_thread() -> None:
    document = config()
    commands = " ".join(document["head_start_ray_commands"] + document["worker_start_ray_commands"])
    assert commands.count("RAY_AUTH_MODE=token") == 2
    assert commands.count("OPENBLAS_NUM_THREADS=1") == 2


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.pop("cluster_name"),
        lambda c: c["available_node_types"]["head"].update(resources={"CPU": 0.5}),
        lambda c: c.update(typo_key=1),
    ],
)
def test_the_schema_check_catches_broken_configs(mutate: Any) -> None:
    document = config()
    mutate(document)
    assert errors(document)
