"""Recipes are plain compositions: each builds, prints, round-trips and takes overrides."""

import pytest
import yaml

from rlzoo import recipes
from rlzoo.errors import ConfigError
from rlzoo.recipes import RECIPES, Recipe

PAPER_RECIPES = ["grpo", "dr_grpo", "agpo", "agpo_v3", "rloo", "reinforce_rej", "dapo", "gspo", "cispo", "gvpo"]


def test_every_recipe_of_the_spec_is_registered() -> None:
    assert set(PAPER_RECIPES) <= set(RECIPES.names())


@pytest.mark.parametrize("name", RECIPES.names())
def test_recipe_builds_shows_and_round_trips(name: str) -> None:
    recipe = recipes.build(name)
    assert isinstance(recipe, Recipe) and recipe.name == name
    parts = recipe.build_parts()
    assert parts.objective is not None and parts.estimator is not None
    shown = yaml.safe_load(recipe.show())
    assert shown == recipe.to_dict()
    assert recipes.build(shown) == recipe


def test_table_rows_of_algorithms_md() -> None:
    """Spot checks against ALGORITHMS.md §5."""
    grpo = recipes.build("grpo")
    assert (grpo.kl, grpo.kl_coef, grpo.aggregation) == ("k3", 0.04, "seq_mean_token_mean")
    assert recipes.build("dr_grpo").advantage == {"name": "grpo", "scale": "none"}
    agpo = recipes.build("agpo")
    assert (agpo.advantage, agpo.shapers, agpo.aggregation) == ("agpo", ("agpo_length",), "token_mean")
    v3 = recipes.build("agpo_v3")
    assert (v3.mask_zero_advantage, v3.loss_floor, v3.floor_scope) == (True, 0.0, "microbatch")
    rej = recipes.build("reinforce_rej")
    assert (rej.filters, rej.advantage, rej.shapers) == (("reinforce_rej",), "reinforce", ("binary_correct",))
    dapo = recipes.build("dapo")
    assert dapo.loss == {"name": "ppo_clip", "eps_low": 0.2, "eps_high": 0.28} and dapo.filters == ("dapo",)


def test_override_promotes_names_and_reaches_into_lists() -> None:
    recipe = recipes.build("dapo").override(["loss.eps_high=0.3", "shapers.0.cache_length=16", "entropy_coef=0.01"])
    assert recipe.loss == {"name": "ppo_clip", "eps_low": 0.2, "eps_high": 0.3}
    assert recipe.shapers[0]["cache_length"] == 16
    assert recipe.entropy_coef == 0.01
    assert recipes.build("grpo").override(["loss.eps_high=0.28"]).loss == {"name": "ppo_clip", "eps_high": 0.28}


def test_override_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        recipes.build("grpo").override(["nonsense", "losss.eps=1", "kl_coef=-1"])
    msg = str(err.value)
    assert "'nonsense' is not key=value" in msg and "no field 'losss'" in msg


def test_bad_component_parameter_fails_at_build_time() -> None:
    with pytest.raises(ConfigError, match=r"eps_hihg"):
        recipes.build("grpo").override(["loss.eps_hihg=0.3"])


def test_kl_coef_without_estimator_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"kl_coef=0.1 needs a KL estimator"):
        recipes.build("custom", kl_coef=0.1)


def test_filter_that_makes_the_all_equal_rule_inert_warns() -> None:
    with pytest.warns(UserWarning, match="inert"):
        recipes.build("agpo", filters=["reinforce_rej"])


def test_run_values_are_resolved_from_the_context() -> None:
    parts = recipes.build("dapo").build_parts({"max_completion_length": 100})
    (overlong,) = parts.shapers
    assert (overlong.max_length, overlong.cache_length) == (100, 20)
    assert recipes.build("dr_grpo").build_parts({"max_completion_length": 96}).objective.aggregation.constant == 96.0
    assert recipes.resolve({"a": ["$x*0.5", "y"]}, {"x": 9}) == {"a": [4, "y"]}  # round(4.5) = 4
    with pytest.raises(ConfigError, match=r"'\$budget' refers to an unknown run value; known: x"):
        recipes.resolve("$budget", {"x": 1})
