"""Search spaces: the repository's YAML file, grid and random points, Optuna suggestions, errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from pydantic import ValidationError

from recsys.ensemble import EnsembleConfig, SearchSpaces
from recsys.ensemble.spaces import trial_params
from recsys.errors import ConfigError
from recsys.models import FAMILIES, build

SPACES_FILE = Path(__file__).resolve().parents[2] / "configs" / "search_spaces.yaml"


def repository_spaces() -> tuple[SearchSpaces, EnsembleConfig]:
    document = yaml.safe_load(SPACES_FILE.read_text())
    return SearchSpaces.model_validate({k: v for k, v in document.items() if k != "ensemble"}), (
        EnsembleConfig.model_validate(document["ensemble"])
    )


def test_the_repository_file_is_valid_and_every_point_builds_a_model() -> None:
    spaces, ensemble = repository_spaces()
    assert {"ease", "itemknn", "als", "bpr"} <= set(spaces.families)
    assert set(spaces.families) <= set(FAMILIES)
    assert ensemble.signals is not None and set(ensemble.methods) == {"blending", "stacking"}
    for family, space in spaces.families.items():
        if family == "ncf" and importlib.util.find_spec("torch") is None:
            continue  # optional family: its parameters are checked where PyTorch is installed
        for point in [*spaces.grid_points(family, seed=0), *spaces.random_points(family, seed=0)]:
            params = dict(point)
            if space.iterative is not None:
                params[space.iterative.param] = space.iterative.max
            build(family, **params)  # every name is a real constructor parameter
    assert spaces.space("als").iterative is not None and spaces.space("ease").iterative is None


def test_grid_is_capped_at_the_budget_with_a_seeded_subset() -> None:
    spaces = SearchSpaces.model_validate(
        {
            "families": {
                "itemknn": {
                    "budget": 3,
                    "params": {
                        "k": {"choice": [10, 20, 40]},
                        "shrinkage": {"uniform": [0.0, 50.0], "grid": [0.0, 10.0]},
                    },
                }
            }
        }
    )
    first = spaces.grid_points("itemknn", seed=1)
    assert len(first) == 3 and first == spaces.grid_points("itemknn", seed=1)
    assert all(p["k"] in (10, 20, 40) and p["shrinkage"] in (0.0, 10.0) for p in first)
    full = spaces.model_copy(
        update={"families": {"itemknn": spaces.families["itemknn"].model_copy(update={"budget": 10})}}
    )
    assert len(full.grid_points("itemknn", seed=1)) == 6


def test_random_points_are_reproducible_and_inside_their_ranges() -> None:
    spaces = SearchSpaces.model_validate(
        {
            "families": {
                "als": {
                    "budget": 50,
                    "params": {
                        "regularization": {"loguniform": [0.001, 1.0]},
                        "factors": {"lograndint": [8, 256]},
                        "alpha": {"uniform": [1.0, 2.0]},
                        "k": {"randint": [3, 5]},
                        "random_state": 0,
                    },
                }
            }
        }
    )
    points = spaces.random_points("als", seed=4)
    assert points == spaces.random_points("als", seed=4) != spaces.random_points("als", seed=5)
    assert all(0.001 <= p["regularization"] <= 1.0 and 8 <= p["factors"] <= 256 for p in points)
    assert all(1.0 <= p["alpha"] <= 2.0 and p["k"] in (3, 4) and p["random_state"] == 0 for p in points)
    assert min(p["regularization"] for p in points) < 0.01 < max(p["regularization"] for p in points)


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"loguniform": [0, 1]}, "0 < low < high"),
        ({"uniform": [2, 1]}, "low < high"),
        ({"choice": []}, "at least one value"),
        ({"normal": [0, 1]}, "a constant or one of"),
        ({"uniform": [0, 1], "choice": [1]}, "a constant or one of"),
    ],
)
def test_malformed_parameters_are_refused_naming_the_problem(param: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SearchSpaces.model_validate({"families": {"ease": {"params": {"l2": param}}}})


def test_unknown_keys_and_families_are_errors() -> None:
    with pytest.raises(ValidationError, match="budgett"):
        SearchSpaces.model_validate({"families": {"ease": {"budgett": 3}}})
    spaces = SearchSpaces.model_validate({"families": {"ease": {}}})
    with pytest.raises(ConfigError, match="spaces exist for"):
        spaces.select(["nosuch"])
    with pytest.raises(ConfigError, match="grid"):
        SearchSpaces.model_validate(
            {"families": {"ease": {"params": {"l2": {"loguniform": [1, 10]}}}}}
        ).grid_points("ease", 0)


def test_capped_limits_every_family_budget_and_keeps_the_rest() -> None:
    spaces, _ = repository_spaces()
    short = spaces.capped(2)
    assert list(short.families) == list(spaces.families)
    for name, space in short.families.items():
        assert space.budget == min(2, spaces.families[name].budget)
        assert space.params == spaces.families[name].params
        assert space.iterative == spaces.families[name].iterative
    assert short.families["ease"].budget == 2 and short.families["popularity"].budget == 1
    with pytest.raises(ConfigError, match="budget"):
        spaces.capped(0)


def test_smoke_variant_keeps_its_families_small() -> None:
    spaces, _ = repository_spaces()
    smoke = spaces.smoke()
    assert list(smoke.families) == spaces.smoke_test.families
    assert all(space.budget <= spaces.smoke_test.budget for space in smoke.families.values())
    for space in smoke.families.values():
        if space.iterative is not None:
            assert space.iterative.max <= spaces.smoke_test.max_epochs


def test_schedule_interleaves_families_up_to_their_budgets() -> None:
    spaces = SearchSpaces.model_validate({"families": {"a": {"budget": 1}, "b": {"budget": 3}}})
    assert spaces.schedule() == ["a", "b", "b", "b"]
    points = SearchSpaces.model_validate(
        {"families": {"a": {"budget": 2, "params": {"x": {"choice": [1, 2]}}}, "b": {"budget": 1}}}
    ).trial_points("grid", seed=0)
    assert points == [
        {"family": "a", "a": {"x": 1}},
        {"family": "b", "b": {}},
        {"family": "a", "a": {"x": 2}},
    ]


def test_optuna_suggestions_keep_families_apart_and_decode_list_choices() -> None:
    spaces = SearchSpaces.model_validate(
        {
            "families": {
                "ease": {"budget": 1, "params": {"l2": {"loguniform": [1.0, 10.0]}}},
                "ncf": {
                    "budget": 1,
                    "params": {
                        "mlp_layers": {"choice": [[8], [16, 8]]},
                        "factors": {"choice": [4, 8]},
                        "epochs": {"randint": [1, 3]},
                        "device": "cpu",
                    },
                },
            }
        }
    )
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    first, second = study.ask(), study.ask()
    ease, ncf = spaces.suggest(first), spaces.suggest(second)
    assert ease == {"trial/family": "ease"} and set(first.params) == {"trial/ease/l2"}
    assert ncf["trial/ncf/mlp_layers"] in ([8], [16, 8]) and ncf["trial/ncf/device"] == "cpu"
    assert set(second.params) == {"trial/ncf/mlp_layers#", "trial/ncf/factors", "trial/ncf/epochs"}
    assert second.params["trial/ncf/epochs"] in (1, 2)
    config = {"family": "ncf", "ncf": {"mlp_layers#": "[8]", "mlp_layers": [8], "factors": 4}}
    assert trial_params(config) == ("ncf", {"mlp_layers": [8], "factors": 4})
