"""Recipes are plain compositions: each builds, prints, round-trips and takes overrides."""

import math

import pytest
import yaml

from rlzoo import recipes
from rlzoo.errors import ConfigError
from rlzoo.recipes import RECIPES, Recipe

PAPER_RECIPES = ["grpo", "dr_grpo", "agpo", "agpo_v3", "rloo", "reinforce_rej", "dapo", "gspo", "cispo", "gvpo"]
# ALGORITHMS.md Part II
PART_II_RECIPES = ["maxrl", "lite_ppo", "raft_pp", "grpo_trl", "gmpo", "dppo", "clip_cov", "kl_cov", "luspo", "vespo"]


def test_every_recipe_of_the_spec_is_registered() -> None:
    assert set(PAPER_RECIPES + PART_II_RECIPES) <= set(RECIPES.names())


@pytest.mark.parametrize("name", PAPER_RECIPES + PART_II_RECIPES)
def test_paper_recipes_name_their_paper(name: str) -> None:
    summary = RECIPES.get(name).summary
    assert "arXiv" in summary or "TRL" in summary, summary


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


def test_part_ii_recipes() -> None:
    """ALGORITHMS.md II.4, II.8, II.11, II.12: what each named recipe combines."""
    parts = recipes.build("maxrl").build_parts()
    assert type(parts.estimator).component_name == "maxrl" and parts.estimator.denominator == "mean"
    assert parts.objective.kl is None and type(parts.objective.aggregation).component_name == "token_mean"
    lite = recipes.build("lite_ppo").build_parts()
    assert (lite.estimator.scale, lite.estimator.std_ddof, lite.estimator.eps) == ("batch", 1, 1e-6)  # ROLL's
    assert type(lite.objective.aggregation).component_name == "token_mean" and lite.objective.kl is None
    raft = recipes.build("raft_pp")
    assert (raft.shapers, raft.advantage, raft.loss, raft.mask_zero_advantage) == (
        ("binary_correct",),
        "raft",
        "ppo_clip",
        True,
    )
    trl = recipes.build("grpo_trl").build_parts()
    assert (trl.estimator.scale, trl.estimator.std_ddof, trl.estimator.eps) == ("group", 1, 1e-4)
    assert (trl.objective.policy.eps_low, trl.objective.policy.eps_high, trl.objective.kl) == (0.2, 0.2, None)
    assert type(trl.objective.aggregation).component_name == "token_mean" and trl.objective.selectors == ()
    assert type(recipes.build("gmpo").build_parts().objective.aggregation).component_name == "seq_mean_token_mean"
    assert type(recipes.build("luspo").build_parts().objective.aggregation).component_name == "seq_mean_token_sum"
    assert recipes.build("clip_cov").build_parts().objective.policy.eps_high == 1.0
    for name, loss in [("dppo", "dppo_tv"), ("kl_cov", "kl_cov"), ("vespo", "vespo")]:
        assert type(recipes.build(name).build_parts().objective.policy).component_name == loss


def test_selectors_are_a_recipe_field_and_override() -> None:
    recipe = recipes.build("grpo_trl").override(["selectors=[top_entropy, {name: off_policy_mask, delta: 0.3}]"])
    assert recipe.selectors == ("top_entropy", {"name": "off_policy_mask", "delta": 0.3})
    objective = recipe.build_parts().objective
    assert [type(s).component_name for s in objective.selectors] == ["top_entropy", "off_policy_mask"]
    assert objective.needs_entropy and objective.needs_entropy_threshold and objective.needs_rollout_logp
    assert recipes.build(yaml.safe_load(recipe.show())) == recipe
    assert recipe.override(["selectors.0.rho=0.1"]).selectors[0] == {"name": "top_entropy", "rho": 0.1}
    with pytest.raises(ConfigError, match="unknown token selector 'top_entropi'; did you mean 'top_entropy'"):
        recipes.build("grpo", selectors=["top_entropi"])


def test_an_importance_weighted_kl_is_a_loss_term_not_a_reward_penalty() -> None:
    recipes.build("grpo", kl="k3_iw", kl_coef=0.04)
    with pytest.raises(ConfigError, match="reward_kl='k3_iw' is importance-weighted"):
        recipes.build("rloo", reward_kl="k3_iw", reward_kl_coef=0.01)


def test_raft_pp_end_to_end_hand_worked() -> None:
    """ALGORITHMS.md II.11: A = 1 on accepted samples, 0 otherwise, PPO clip normalised over the accepted tokens."""
    import torch

    from rlzoo.types import Groups, PolicyBatch

    parts = recipes.build("raft_pp").build_parts()
    groups = Groups(
        torch.tensor([[0.3, 0.9, 0.1]]), torch.tensor([[2, 3, 1]]), correct=torch.tensor([[True, False, True]])
    )
    for shaper in parts.shapers:
        groups = shaper(groups)
    adv = parts.estimator(groups)
    assert adv.tolist() == [[1.0, 0.0, 1.0]]
    logp = torch.full((3, 3), -1.0, dtype=torch.float64, requires_grad=True)
    batch = PolicyBatch(
        logp=logp,
        old_logp=logp.detach() - torch.tensor([[0.1], [0.0], [0.5]], dtype=torch.float64),  # ratios e^0.1, 1, e^0.5
        mask=torch.tensor([[True, True, False], [True, True, True], [True, False, False]]),
        advantages=adv[0].double(),
    )
    out = parts.objective(batch)
    # accepted tokens: 2 of sequence 0 (ratio e^0.1 < 1.2, unclipped) and 1 of sequence 2 (e^0.5 clipped at 1.2);
    # the rejected sequence's 3 tokens leave the denominator
    assert out.loss.item() == pytest.approx(-(2 * math.exp(0.1) + 1.2) / 3, rel=1e-12)
