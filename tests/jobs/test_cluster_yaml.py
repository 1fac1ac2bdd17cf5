"""The cluster configs are valid Ray cluster-launcher configs (the checks `ray up` makes before any
cloud call): cluster.yaml (AWS), docs/cluster-gcp.yaml and docs/cluster-onprem.yaml."""

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

CONFIGS = ["cluster.yaml", "docs/cluster-gcp.yaml", "docs/cluster-onprem.yaml"]


def schema() -> dict[str, Any]:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def config(name: str = "cluster.yaml") -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text())


def errors(document: dict[str, Any]) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(schema()).iter_errors(document)]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_matches_the_launcher_schema(name: str) -> None:
    assert errors(config(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_the_launchers_own_validation(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config(name)))
    validate_config(prepared)
    assert prepared["available_node_types"][prepared["head_node_type"]]


@pytest.mark.parametrize("name", CONFIGS)
def test_head_and_workers_use_token_auth_and_one_blas_thread(name: str) -> None:
    document = config(name)
    commands = " ".join(document["head_start_ray_commands"] + document["worker_start_ray_commands"])
    assert commands.count("RAY_AUTH_MODE=token") == 2
    assert commands.count("OPENBLAS_NUM_THREADS=1") == 2
    assert document["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("name", CONFIGS[1:])
def test_variants_run_a_durable_password_protected_redis_on_the_head(name: str) -> None:
    head = " ".join(config(name)["head_start_ray_commands"])
    assert "--appendonly yes --appendfsync always" in head  # acknowledged means durable
    assert '--requirepass "$(cat ~/.ray/auth_token)"' in head
    assert "--port 6380" in head and "--port=6379" in head  # Redis beside, not on, the GCS port


def test_onprem_workers_advertise_the_worker_node_resource() -> None:
    assert """--resources='{"worker_node": 1}'""" in " ".join(
        config("docs/cluster-onprem.yaml")["worker_start_ray_commands"]
    )


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.pop("cluster_name"),
        lambda c: c["provider"].pop("type"),
        lambda c: c.update(typo_key=1),
        lambda c: c.update(max_workers="4"),
    ],
)
def test_the_schema_check_catches_broken_configs(name: str, mutate: Any) -> None:
    document = config(name)
    mutate(document)
    assert errors(document)


def test_the_schema_check_catches_fractional_resources() -> None:
    document = config()
    document["available_node_types"]["head"].update(resources={"CPU": 0.5})
    assert errors(document)


def test_the_cluster_serve_config_is_valid_and_uses_the_heads_redis() -> None:
    from ray.serve.schema import ServeDeploySchema

    from serving.app import EmbeddingUpdater, Gateway, ServingArgs

    document = yaml.safe_load((REPO / "docs" / "serve-cluster.yaml").read_text())
    (application,) = ServeDeploySchema.model_validate(document).applications
    args = ServingArgs.model_validate(application.args)
    assert args.store_url.startswith("redis://:RAY_TOKEN@HEAD_IP:6380/0?")
    assert "require_fsync=true" in args.store_url
    assert document["http_options"]["host"] == "0.0.0.0"
    assert args.gateway_replicas >= 2 and args.updater_replicas >= 2
    # each deployment's replicas on different nodes: the overrides name the app's real deployments
    spread = {d.name: d.max_replicas_per_node for d in application.deployments}
    assert spread == {Gateway.name: 1, EmbeddingUpdater.name: 1}  # type: ignore[attr-defined]
