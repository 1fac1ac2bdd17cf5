"""serving/config.yaml is a valid Serve config whose application builds from its args."""

from __future__ import annotations

import importlib

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serving.config import PROJECT_ROOT, ServingArgs
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
