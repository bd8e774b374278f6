"""Rollout importance sampling (TIS, MIS / IcePop): the test vectors of ALGORITHMS.md II.7."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.corrections import CORRECTIONS
from rlzoo.errors import ConfigError
from rlzoo.losses import Objective
from rlzoo.types import PolicyBatch

# I1: delta = old - rollout, the second row's third token is padding.
DELTA = torch.tensor([[0.5, -0.2, 1.5], [0.1, 0.1, 0.7]])
MASK = torch.tensor([[True, True, True], [True, True, False]])


def _i1(delta: torch.Tensor = DELTA, mask: torch.Tensor = MASK, advantages: torch.Tensor | None = None) -> PolicyBatch:
    old = torch.full(delta.shape, -1.0)
    return PolicyBatch(logp=old.clone(), old_logp=old, mask=mask, rollout_logp=old - delta,
                       advantages=torch.ones(delta.shape[0]) if advantages is None else advantages)


def _weight(mode: str, **bounds: float | None) -> torch.Tensor:
    out = CORRECTIONS.build({"name": "importance_sampling", "mode": mode, **bounds})(_i1())
    assert out is not None
    return out.weight


def test_i1_trl_modes_at_clip_max_3() -> None:
    w_tok = [[1.648721, 0.818731, 4.481689], [1.105171, 1.105171]]
    tt = _weight("token_truncate")
    assert tt[0].tolist() == pytest.approx([*w_tok[0][:2], 3.0], abs=1e-6)
    assert tt[1, :2].tolist() == pytest.approx(w_tok[1], abs=1e-6)
    assert _weight("token_mask")[0].tolist() == pytest.approx([*w_tok[0][:2], 0.0], abs=1e-6)
    st_ = _weight("sequence_truncate")
    assert st_[:, 0].tolist() == pytest.approx([3.0, 1.221403], abs=1e-6)
    assert st_[1, :2].tolist() == pytest.approx([1.221403] * 2, abs=1e-6)  # broadcast to the tokens
    sm = _weight("sequence_mask")
    assert sm[0].tolist() == [0.0, 0.0, 0.0] and sm[1, :2].tolist() == pytest.approx([1.221403] * 2, abs=1e-6)


def test_i1_presets() -> None:
    tis = CORRECTIONS.build("tis")(_i1())
    assert tis is not None and tis.weight[0, 2].item() == pytest.approx(2.0)
    icepop = CORRECTIONS.build("icepop")(_i1())  # [0.5, 5]: keeps 4.48, drops nothing here
    assert icepop is not None and icepop.weight[0, 2].item() == pytest.approx(4.481689, abs=1e-6)
    low = _i1(delta=torch.tensor([[-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))  # exp(-1) = 0.37 < 0.5
    out = CORRECTIONS.build("icepop")(low)
    assert out is not None and out.weight[0, 0].item() == 0.0
    assert out.metrics["correction/masked_frac"].item() == pytest.approx(1 / 5)


def test_metrics_are_the_unclipped_weights_over_counted_tokens() -> None:
    out = CORRECTIONS.build("importance_sampling", mode="token_truncate")(_i1())
    assert out is not None
    assert out.metrics["correction/ratio_max"].item() == pytest.approx(4.481689, abs=1e-6)
    assert out.metrics["correction/ratio_min"].item() == pytest.approx(0.818731, abs=1e-6)
    mean = (1.648721 + 0.818731 + 4.481689 + 2 * 1.105171) / 5
    assert out.metrics["correction/ratio_mean"].item() == pytest.approx(mean, abs=1e-6)
    assert out.metrics["correction/masked_frac"].item() == 0.0


def test_no_rollout_logp_is_a_no_op() -> None:
    assert CORRECTIONS.build("importance_sampling")(_i1().replace(rollout_logp=None)) is None


def test_a_huge_gap_masks_or_clamps_instead_of_overflowing() -> None:
    batch = _i1(delta=torch.tensor([[500.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    for mode in ("token_truncate", "sequence_truncate", "token_mask", "sequence_mask"):
        out = CORRECTIONS.build("importance_sampling", mode=mode)(batch)
        assert out is not None and bool(torch.isfinite(out.weight).all()), mode


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "token_truncate", "clip_max": None}, "truncates nothing"),
        ({"clip_min": 2.0, "clip_max": 1.0}, "clip_max=1.0 must be >= clip_min=2.0"),
        ({"clip_max": 0.0}, "clip_max=0.0 must be a finite number > 0"),
        ({"mode": "token_clip"}, "mode"),
    ],
)
def test_bad_parameters_name_component_and_value(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="importance_sampling") as info:
        CORRECTIONS.build({"name": "importance_sampling", **params})
    assert message in str(info.value)


deltas = st.lists(st.floats(-4, 4), min_size=4, max_size=4).map(lambda v: torch.tensor(v).view(2, 2))


@settings(max_examples=60, deadline=None)
@given(deltas, st.floats(0.2, 1.0), st.floats(1.0, 5.0), st.booleans())
def test_truncate_stays_in_bounds_and_mask_keeps_or_zeroes(delta: torch.Tensor, lo: float, hi: float, token: bool) -> None:
    batch = _i1(delta=delta, mask=torch.ones(2, 2, dtype=torch.bool))
    level = "token" if token else "sequence"
    raw = delta.exp() if token else delta.sum(1, keepdim=True).exp().expand(2, 2)
    t = CORRECTIONS.build("importance_sampling", mode=f"{level}_truncate", clip_min=lo, clip_max=hi)(batch)
    m = CORRECTIONS.build("importance_sampling", mode=f"{level}_mask", clip_min=lo, clip_max=hi)(batch)
    assert t is not None and m is not None
    assert bool((t.weight >= lo * (1 - 1e-5)).all() and (t.weight <= hi * (1 + 1e-5)).all())
    inside = (raw >= lo * (1 - 1e-5)) & (raw <= hi * (1 + 1e-5))
    assert torch.allclose(m.weight[inside], raw[inside], rtol=1e-5)
    strictly_out = (raw < lo * (1 - 1e-4)) | (raw > hi * (1 + 1e-4))
    assert bool((m.weight[strictly_out] == 0).all())


def test_objective_multiplies_the_policy_loss_only() -> None:
    """The weight scales each token's policy loss after the loss; the KL term is unchanged."""
    batch = _i1(advantages=torch.tensor([1.0, -2.0])).replace(ref_logp=torch.full((2, 3), -1.3))
    plain = Objective(kl="k3", kl_coef=0.1)
    corrected = Objective(kl="k3", kl_coef=0.1, correction={"name": "importance_sampling", "mode": "token_truncate"})
    out_plain, out = plain(batch), corrected(batch)
    w = _weight("token_truncate")
    # ppo_clip at ratio 1: per-token loss -A; token_mean over 5 counted tokens
    per_token = -batch.advantages[:, None].expand(2, 3)
    expected = (per_token * w)[MASK].sum() / 5
    assert out.metrics["loss/policy"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert out_plain.metrics["loss/policy"].item() == pytest.approx((per_token[MASK].sum() / 5).item(), abs=1e-6)
    assert out.metrics["loss/kl"].item() == pytest.approx(out_plain.metrics["loss/kl"].item())
    gap = DELTA.abs()[MASK]
    assert out.metrics["rollout/logp_diff_mean"].item() == pytest.approx(gap.mean().item(), abs=1e-6)
    assert out.metrics["rollout/logp_diff_max"].item() == pytest.approx(1.5, abs=1e-6)
    assert "rollout/logp_diff_mean" in out_plain.metrics  # the gap is measured with or without a correction
    assert "correction/ratio_max" not in out_plain.metrics
    assert corrected.needs_rollout_logp and not plain.needs_rollout_logp


def test_objective_gradient_is_weighted() -> None:
    batch = _i1()
    logp = batch.logp.clone().requires_grad_(True)
    Objective(correction={"name": "importance_sampling", "mode": "token_mask"})(batch.replace(logp=logp)).loss.backward()
    w = _weight("token_mask")
    assert logp.grad is not None
    assert torch.allclose(logp.grad[MASK], (-w / 5)[MASK], atol=1e-6)  # d(-A·ratio)/dlogp = -A at ratio 1
    assert math.isclose(float(logp.grad[0, 2]), 0.0)
