"""Differential tests against TRL 1.16's own GRPOTrainer code (skipped without TRL: pip install -e '.[bench]').

TRL's loss is driven directly: ``GRPOTrainer._compute_loss`` runs on a stand-in ``self`` that holds
a real ``GRPOConfig`` and TRL's own ``get_high_entropy_mask`` / ``get_off_policy_mask``, with the
model's forward replaced by fixed log-probs and entropies (one process, no vLLM). rlzoo's side is the
``grpo_trl`` recipe's objective on the same tensors. They agree to float32 rounding.
"""

import collections
import dataclasses
import tempfile
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("trl", reason="TRL is not installed (pip install -e '.[bench]')")
from trl import GRPOConfig
from trl.trainer.grpo_trainer import GRPOTrainer

from rlzoo import recipes
from rlzoo.losses import KL_ESTIMATORS
from rlzoo.selectors import SELECTORS
from rlzoo.types import PolicyBatch

RTOL, ATOL = 1e-5, 1e-7  # float32 rounding: TRL sums then divides, rlzoo weighs then sums


def _config(**overrides: object) -> GRPOConfig:
    return GRPOConfig(output_dir=tempfile.gettempdir(), report_to=[], bf16=False, use_cpu=True, **overrides)


DEFAULTS = _config()


class _OneProcess:
    """The accelerator calls ``_compute_loss`` makes, for a single process."""

    num_processes = 1
    sync_gradients = True

    def pad_across_processes(self, tensor: torch.Tensor, dim: int = 0, pad_index: float = 0) -> torch.Tensor:
        return tensor

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    gather_for_metrics = gather

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor


def _trl_self(args: GRPOConfig, logp: torch.Tensor, entropy: torch.Tensor, accumulation: int = 1) -> types.SimpleNamespace:
    """The attributes GRPOTrainer.__init__ sets from ``args`` that ``_compute_loss`` reads."""
    s = types.SimpleNamespace(
        args=args,
        accelerator=_OneProcess(),
        model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=accumulation,
        beta=args.beta,
        loss_type=args.loss_type,
        epsilon_low=args.epsilon,
        epsilon_high=args.epsilon_high if args.epsilon_high is not None else args.epsilon,
        importance_sampling_level=args.importance_sampling_level,
        off_policy_mask_threshold=args.off_policy_mask_threshold,
        top_entropy_quantile=args.top_entropy_quantile,
        entropy_coef=args.entropy_coef,
        use_adaptive_entropy=args.use_adaptive_entropy,
        _entropy_bonus_enabled=args.entropy_coef != 0.0 or args.use_adaptive_entropy,
        use_vllm=args.use_vllm,
        vllm_importance_sampling_correction=args.vllm_importance_sampling_correction,
        max_completion_length=args.max_completion_length,
        aux_loss_enabled=False,
        router_aux_loss_coef=0.0,
        _metrics=collections.defaultdict(lambda: collections.defaultdict(list)),
        get_off_policy_mask=GRPOTrainer.get_off_policy_mask,
        get_gamma_weights=GRPOTrainer.get_gamma_weights,
    )
    s.get_high_entropy_mask = types.MethodType(GRPOTrainer.get_high_entropy_mask, s)
    s._get_per_token_logps_and_entropies = lambda *args, **kwargs: (logp, entropy, None)
    return s


@dataclasses.dataclass
class _Step:
    """One micro-batch of random float32 inputs, finite everywhere (TRL multiplies padding by 0)."""

    logp: torch.Tensor
    old: torch.Tensor
    ref: torch.Tensor
    rollout: torch.Tensor
    entropy: torch.Tensor
    mask: torch.Tensor
    adv: torch.Tensor

    @classmethod
    def random(cls, seed: int, b: int = 6, t: int = 7) -> "_Step":
        g = torch.Generator().manual_seed(seed)
        old = -torch.rand(b, t, generator=g) * 3 - 0.05
        logp = old + 0.25 * torch.randn(b, t, generator=g)
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        mask = torch.arange(t)[None] < lengths[:, None]
        adv = torch.randn(b, generator=g)
        adv[0] = 0.0
        return cls(
            logp=logp,
            old=old,
            ref=old + 0.2 * torch.randn(b, t, generator=g),
            rollout=old + 0.8 * torch.rand(b, t, generator=g),
            entropy=(torch.rand(b, t, generator=g) * 30).round() / 10,  # some ties
            mask=mask,
            adv=adv,
        )

    def trl(self, args: GRPOConfig, *, old: bool, rollout: bool, items: int | None = None, accumulation: int = 1):
        logp = self.logp.clone().requires_grad_()
        b, t = self.mask.shape
        inputs = {
            "prompt_ids": torch.zeros(b, 1, dtype=torch.long),
            "prompt_mask": torch.ones(b, 1, dtype=torch.long),
            "completion_ids": torch.zeros(b, t, dtype=torch.long),
            "completion_mask": self.mask.long(),
            "advantages": self.adv,
            "num_items_in_batch": torch.tensor(int(self.mask.sum()) if items is None else items),
            "ref_per_token_logps": self.ref,
        }
        if old:
            inputs["old_per_token_logps"] = self.old
        if rollout:
            inputs["sampling_per_token_logps"] = self.rollout
        loss = GRPOTrainer._compute_loss(_trl_self(args, logp, self.entropy, accumulation), None, inputs)
        (grad,) = torch.autograd.grad(loss, logp)
        return loss.detach(), grad

    def batch(self, *, old: bool, rollout: bool) -> PolicyBatch:
        logp = self.logp.clone().requires_grad_()
        return PolicyBatch(
            logp=logp,
            old_logp=self.old if old else logp.detach(),
            mask=self.mask,
            advantages=self.adv,
            ref_logp=self.ref,
            entropy=self.entropy,
            rollout_logp=self.rollout if rollout else None,
        )

    def rlzoo(self, recipe, *, old: bool, rollout: bool):
        batch = self.batch(old=old, rollout=rollout)
        loss = recipe.build_parts().objective(batch).loss
        (grad,) = torch.autograd.grad(loss, batch.logp)
        return loss.detach(), grad


# -- the recipe is TRL's defaults ----------------------------------------------------------------


def test_grpo_trl_is_grpo_config_defaults() -> None:
    parts = recipes.build("grpo_trl").build_parts()
    estimator, objective = parts.estimator, parts.objective
    assert (DEFAULTS.scale_rewards, estimator.scale) == ("group", "group")
    assert estimator.std_ddof == 1 and estimator.eps == 1e-4  # TRL's nanstd (unbiased) + 1e-4, in the trainer
    assert objective.policy.eps_low == DEFAULTS.epsilon
    assert objective.policy.eps_high == (DEFAULTS.epsilon if DEFAULTS.epsilon_high is None else DEFAULTS.epsilon_high)
    assert objective.policy.dual_clip is None and DEFAULTS.delta is None
    assert (DEFAULTS.importance_sampling_level, objective.policy.ratio) == ("token", "token")
    assert (DEFAULTS.loss_type, type(objective.aggregation).component_name) == ("dapo", "token_mean")
    assert DEFAULTS.beta == 0.0 and objective.kl is None and objective.kl_coef == 0.0
    assert DEFAULTS.use_bias_correction_kl  # acts once beta > 0: kl='k3_iw' (see the recipe's docstring)
    assert DEFAULTS.top_entropy_quantile == 1.0 and DEFAULTS.off_policy_mask_threshold is None
    assert objective.selectors == ()
    assert DEFAULTS.entropy_coef == objective.entropy_coef == 0.0
    assert DEFAULTS.num_iterations == 1 and not DEFAULTS.mask_truncated_completions


# -- the loss --------------------------------------------------------------------------------------

IW_KL = [e.name for e in KL_ESTIMATORS if getattr(e.cls, "needs_old_logp", False)]
SCENARIOS = {
    "defaults, on-policy": ({}, [], False, False),
    "defaults, off-policy old_logp": ({}, [], True, False),
    "clip-higher": ({"epsilon_high": 0.28}, ["loss.eps_high=0.28"], True, False),
    "beta, plain k3": (
        {"beta": 0.04, "use_bias_correction_kl": False},
        ["kl=k3", "kl_coef=0.04"],
        True,
        False,
    ),
    "top entropy 0.2": ({"top_entropy_quantile": 0.2}, ["selectors=[{name: top_entropy, rho: 0.2}]"], True, False),
    "off-policy mask 0.02, old_logp": (
        {"off_policy_mask_threshold": 0.02},
        ["selectors=[{name: off_policy_mask, delta: 0.02}]"],
        True,
        False,
    ),
    "off-policy mask 0.3, rollout_logp": (
        {"off_policy_mask_threshold": 0.3},
        ["selectors=[{name: off_policy_mask, delta: 0.3}]"],
        True,
        True,
    ),
    "both selectors, clip-higher": (
        {"top_entropy_quantile": 0.4, "off_policy_mask_threshold": 0.3, "epsilon_high": 0.28},
        ["selectors=[{name: top_entropy, rho: 0.4}, {name: off_policy_mask, delta: 0.3}]", "loss.eps_high=0.28"],
        True,
        True,
    ),
}
if IW_KL:
    SCENARIOS["beta, bias-corrected k3 (TRL's default)"] = (
        {"beta": 0.04},
        [f"kl={IW_KL[0]}", "kl_coef=0.04"],
        True,
        False,
    )
    SCENARIOS["everything"] = (
        {"beta": 0.04, "top_entropy_quantile": 0.2, "off_policy_mask_threshold": 0.3},
        [f"kl={IW_KL[0]}", "kl_coef=0.04", "selectors=[{name: top_entropy, rho: 0.2}, {name: off_policy_mask, delta: 0.3}]"],
        True,
        True,
    )


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("seed", range(3))
def test_grpo_trl_loss_and_gradient_match_trl(scenario: str, seed: int) -> None:
    trl_args, overrides, old, rollout = SCENARIOS[scenario]
    step = _Step.random(seed)
    want_loss, want_grad = step.trl(_config(**trl_args), old=old, rollout=rollout)
    got_loss, got_grad = step.rlzoo(recipes.build("grpo_trl").override(overrides), old=old, rollout=rollout)
    torch.testing.assert_close(got_loss, want_loss, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(got_grad, want_grad, rtol=RTOL, atol=ATOL)


def test_a_bias_corrected_kl_estimator_is_registered() -> None:
    """TRL's default use_bias_correction_kl=True needs one; the differential scenarios above use it."""
    assert IW_KL, "no KL estimator declares needs_old_logp"


def test_dapo_normalisation_over_gradient_accumulation_matches() -> None:
    """Two micro-batches of one optimiser step: TRL's num_items_in_batch vs rlzoo's step totals."""
    first, second = _Step.random(10), _Step.random(11, b=4)
    items = int(first.mask.sum() + second.mask.sum())
    args = _config(gradient_accumulation_steps=2, steps_per_generation=2, beta=0.04)
    want = [s.trl(args, old=True, rollout=False, items=items, accumulation=2) for s in (first, second)]
    objective = recipes.build("grpo_trl", kl="k3_iw" if IW_KL else "k3", kl_coef=0.04).build_parts().objective
    if not IW_KL:
        pytest.skip("no importance-weighted KL estimator")
    batches = [s.batch(old=True, rollout=False) for s in (first, second)]
    totals = objective.totals(batches[0], 0) + objective.totals(batches[1], 0)
    for (want_loss, want_grad), batch in zip(want, batches, strict=True):
        loss = objective(batch.replace(totals=totals)).loss
        (grad,) = torch.autograd.grad(loss, batch.logp)
        torch.testing.assert_close(loss.detach(), want_loss, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(grad, want_grad, rtol=RTOL, atol=ATOL)


# -- the masks, against TRL's standalone functions ------------------------------------------------


@settings(max_examples=40)
@given(
    seed=st.integers(0, 10_000),
    rho=st.sampled_from([0.0, 0.2, 0.4, 0.5, 0.8, 1.0]) | st.floats(0, 1),
    shape=st.tuples(st.integers(1, 6), st.integers(1, 9)),
)
def test_top_entropy_keeps_what_trl_keeps(seed: int, rho: float, shape: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(seed)
    entropy = torch.randint(0, 5, shape, generator=g).float() / 4 + torch.rand(shape, generator=g) * (seed % 2)
    mask = torch.rand(shape, generator=g) < 0.8
    trl_self = types.SimpleNamespace(accelerator=_OneProcess())
    want = GRPOTrainer.get_high_entropy_mask(trl_self, entropy, mask.long(), 1 - rho)
    logp = torch.full(shape, -1.0)
    batch = PolicyBatch(logp=logp, old_logp=logp, mask=mask, advantages=torch.ones(shape[0]), entropy=entropy)
    got = SELECTORS.build("top_entropy", rho=rho)(batch).keep
    assert torch.equal(got, want)


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), delta=st.sampled_from([0.0, 0.1, 0.3, 0.5, 2.0]), token_adv=st.booleans())
def test_off_policy_mask_keeps_what_trl_keeps(seed: int, delta: float, token_adv: bool) -> None:
    step = _Step.random(seed, b=8, t=6)
    adv = step.adv[:, None] * torch.sign(torch.randn(step.mask.shape, generator=torch.Generator().manual_seed(seed)))
    adv = adv if token_adv else step.adv
    want = GRPOTrainer.get_off_policy_mask(
        advantages=adv if token_adv else adv[:, None],
        per_token_logps=step.logp,
        sampling_per_token_logps=step.rollout,
        mask=step.mask.long(),
        off_policy_threshold=delta,
    )
    batch = PolicyBatch(logp=step.logp, old_logp=step.old, mask=step.mask, advantages=adv, rollout_logp=step.rollout)
    got = SELECTORS.build("off_policy_mask", delta=delta)(batch).keep
    assert torch.equal(got, want.bool().expand_as(step.mask) & step.mask)
