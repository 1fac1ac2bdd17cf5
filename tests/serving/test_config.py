"""serving/config.yaml is a valid Serve config whose application builds from its args."""

from __future__ import annotations

import argparse
import importlib

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from jobs.serve import add_arguments, replicas_argument
from serving.config import PROJECT_ROOT, Autoscaling, ServingArgs, replica_options
from tests.conftest import REPO


def test_config_is_a_valid_serve_deploy_schema() -> None:
    document = yaml.safe_load((REPO / "serving" / "config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(document)
    (application,) = schema.applications
    module_name, builder_name = application.import_path.split(":")
    builder = getattr(importlib.import_module(module_name), builder_name)
    args = ServingArgs.model_validate(application.args).resolved()
    assert args.bundle == str(PROJECT_ROOT / "out" / "bundle")
    assert args.store_url == f"sqlite:///{PROJECT_ROOT}/out/store.db"
    assert callable(builder)


def test_unknown_args_are_refused() -> None:
    with pytest.raises(ValueError, match="bundel"):
        ServingArgs.model_validate({"bundel": "x"})


def test_example_experiment_validates_and_bad_ones_are_refused() -> None:
    document = yaml.safe_load((REPO / "serving" / "config.yaml").read_text())
    args = ServingArgs.model_validate(document["applications"][0]["args"])
    (experiment,) = args.experiments
    assert [v.name for v in experiment.variants] == ["control", "more-explore"]
    raw = document["applications"][0]["args"]["experiments"][0]
    with pytest.raises(ValueError, match="at most one experiment"):
        ServingArgs.model_validate(
            {"bundle": "b", "experiments": [raw | {"enabled": True}, raw | {"id": "x", "enabled": True}]}
        )
    bad_variant = {"name": "t", "share": 0.5, "ranker": {"pool_sise": 10}}
    with pytest.raises(ValueError, match="pool_sise"):
        ServingArgs.model_validate(
            {"bundle": "b", "experiments": [raw | {"variants": [raw["variants"][0], bad_variant]}]}
        )


def test_replicas_are_a_count_or_an_autoscaling_range() -> None:
    args = ServingArgs.model_validate(
        {"bundle": "b", "gateway_replicas": {"min_replicas": 1, "max_replicas": 3}, "updater_replicas": 2}
    )
    assert isinstance(args.gateway_replicas, Autoscaling)
    options = replica_options(args.gateway_replicas)
    assert list(options) == ["autoscaling_config"]  # never num_replicas beside it: Serve refuses both
    assert options["autoscaling_config"] == args.gateway_replicas.model_dump()
    assert replica_options(args.updater_replicas) == {"num_replicas": 2}
    for bad, field in [
        ({"min_replicas": 3, "max_replicas": 2}, "exceeds max_replicas"),
        ({"max_replicas": 2, "min_replicas": 0}, "min_replicas"),
        ({"max_replicas": 2, "look_back_period_s": 5, "metrics_interval_s": 10}, "look_back_period_s"),
        ({"max_replicas": 2, "target": 3}, "target"),
    ]:
        with pytest.raises(ValueError, match=field):
            ServingArgs.model_validate({"bundle": "b", "gateway_replicas": bad})
    with pytest.raises(ValueError, match="gateway_replicas"):
        ServingArgs.model_validate({"bundle": "b", "gateway_replicas": 0})


def test_the_serve_command_takes_a_count_or_min_max() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--replicas", "3"]).replicas == 3
    scaling = parser.parse_args(["--replicas", "1-4"]).replicas
    assert isinstance(scaling, Autoscaling)
    assert (scaling.min_replicas, scaling.max_replicas) == (1, 4)
    for bad in ("0", "4-1", "two", "1-"):
        with pytest.raises(argparse.ArgumentTypeError, match="MIN-MAX"):
            replicas_argument(bad)
