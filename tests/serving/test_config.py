"""serving/config.yaml is a valid Serve config whose application builds from its args."""

from __future__ import annotations

import importlib

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serving.app import PROJECT_ROOT, ServingArgs
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
