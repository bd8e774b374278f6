"""The off-policy sequence mask: the test vectors of ALGORITHMS.md II.6."""

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.selectors import SELECTORS
from rlzoo.types import PolicyBatch


def _o1(advantage: float, rollout: bool = True) -> PolicyBatch:
    """O1: rollout_logp = [-1, -1], logp = [-2, -1.5] -> kl = 0.75."""
    logp = torch.tensor([[-2.0, -1.5]])
    behaviour = torch.tensor([[-1.0, -1.0]])
    return PolicyBatch(
        logp=logp,
        old_logp=behaviour if not rollout else logp.clone(),
        rollout_logp=behaviour if rollout else None,
        mask=torch.ones(1, 2, dtype=torch.bool),
        advantages=torch.tensor([advantage]),
    )


@pytest.mark.parametrize(("advantage", "kept"), [(-1.0, False), (1.0, True), (0.0, True)])
@pytest.mark.parametrize("rollout", [True, False], ids=["rollout_logp", "old_logp fallback"])
def test_o1(advantage: float, kept: bool, rollout: bool) -> None:
    out = SELECTORS.build("off_policy_mask", delta=0.5)(_o1(advantage, rollout))
    assert out.keep.tolist() == [[kept, kept]]
    assert out.metrics["select/off_policy_mask/kl"].item() == pytest.approx(0.75)
    assert out.metrics["select/off_policy_mask/kept"].item() == float(kept)


def test_rollout_logp_takes_precedence_over_old_logp() -> None:
    batch = _o1(-1.0).replace(old_logp=torch.tensor([[-2.0, -1.5]]))  # old = logp: kl 0 from it
    assert not bool(SELECTORS.build("off_policy_mask")(batch).keep.any())  # rollout kl 0.75 > 0.5
    assert bool(SELECTORS.build("off_policy_mask")(batch.replace(rollout_logp=None)).keep.all())


def test_o2_empty_sequence_and_padding() -> None:
    # sequence 0 is empty (kl = 0, no NaN); sequence 1's padding holds values that would raise its kl
    logp = torch.tensor([[torch.nan, torch.nan, torch.nan], [-2.0, -1.5, -50.0]])
    batch = PolicyBatch(
        logp=logp,
        old_logp=torch.zeros(2, 3),
        rollout_logp=torch.tensor([[torch.nan] * 3, [-1.0, -1.0, 0.0]]),
        mask=torch.tensor([[False] * 3, [True, True, False]]),
        advantages=torch.tensor([-1.0, -1.0]),
    )
    out = SELECTORS.build("off_policy_mask", delta=0.8)(batch)
    assert out.keep.tolist() == [[False] * 3, [True, True, False]]  # 0.75 <= 0.8: kept
    assert out.metrics["select/off_policy_mask/kl"].item() == pytest.approx(0.75)  # the empty one is not counted


def test_per_token_advantages_are_read_per_token() -> None:
    batch = _o1(0.0).replace(advantages=torch.tensor([[-1.0, 2.0]]))
    assert SELECTORS.build("off_policy_mask")(batch).keep.tolist() == [[False, True]]


def test_delta_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"delta=-0\.1 must be a finite number >= 0"):
        SELECTORS.build("off_policy_mask", delta=-0.1)
