"""Groups, PolicyBatch and LossTotals validate at construction and say what is wrong."""

import subprocess
import sys

import pytest
import torch
from jaxtyping import TypeCheckError

from rlzoo.errors import DataError
from rlzoo.types import Groups, LossTotals, PolicyBatch, ensure_finite


def lengths(n: int, g: int) -> torch.Tensor:
    return torch.ones(n, g, dtype=torch.long)


def test_groups_defaults_and_sizes() -> None:
    groups = Groups(torch.tensor([[1.0, 0.0, 1.0]]), lengths(1, 3))
    assert groups.n == 1 and groups.g == 3
    assert groups.mask.dtype == torch.bool and bool(groups.mask.all())
    assert groups.correct is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, torch.bool])
def test_groups_compute_in_float32(dtype: torch.dtype) -> None:
    groups = Groups(torch.tensor([[1, 0], [0, 1]]).to(dtype), lengths(2, 2))
    assert groups.rewards.dtype == torch.float32
    assert groups.rewards.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_groups_keep_float64() -> None:
    assert Groups(torch.zeros(1, 2, dtype=torch.float64), lengths(1, 2)).rewards.dtype == torch.float64


def test_nan_reward_where_valid_names_the_position() -> None:
    rewards = torch.zeros(2, 3)
    rewards[1, 2] = float("nan")
    with pytest.raises(DataError, match=r"Groups: rewards\[1, 2\] is nan"):
        Groups(rewards, lengths(2, 3))


def test_nonfinite_reward_where_invalid_is_fine() -> None:
    rewards = torch.tensor([[1.0, float("inf"), float("nan")]])
    mask = torch.tensor([[True, False, False]])
    assert Groups(rewards, lengths(1, 3), mask=mask).mask.tolist() == [[True, False, False]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rewards": torch.zeros(3)}, r"rewards must be \[n, g\], got shape \(3,\)"),
        (
            {"lengths": torch.ones(2, 3)},
            "lengths must be an integer tensor, got torch.float32; pass lengths.long()",
        ),
        ({"lengths": lengths(2, 2)}, r"lengths has shape \(2, 2\), rewards \(2, 3\)"),
        ({"mask": torch.ones(2, 3, dtype=torch.int64)}, "mask must be a bool tensor, got torch.int64"),
        ({"correct": torch.ones(3, 2, dtype=torch.bool)}, r"correct has shape \(3, 2\)"),
        ({"greedy_rewards": torch.zeros(3)}, r"greedy_rewards must be \[n\] = \[2\], got \(3,\)"),
        ({"lengths": -lengths(2, 3)}, "lengths must be >= 0"),
    ],
)
def test_groups_reject_inconsistent_input(kwargs: dict, message: str) -> None:
    """Under the test suite's shape checker a shape clash may be caught first, naming the dimensions."""
    base = {"rewards": torch.zeros(2, 3), "lengths": lengths(2, 3)}
    with pytest.raises((DataError, TypeCheckError)) as err:
        Groups(**(base | kwargs))
    if isinstance(err.value, DataError):
        assert err.match(message)


def test_groups_explain_shape_clash_without_the_shape_checker() -> None:
    """In production (no jaxtyping hook) rlzoo's own validation names the fields and shapes."""
    script = (
        "import torch, rlzoo\n"
        "try: rlzoo.Groups(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.long))\n"
        "except rlzoo.DataError as e: print(e)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Groups: lengths has shape (2, 2), rewards (2, 3); they must match"


def test_groups_replace_revalidates() -> None:
    groups = Groups(torch.zeros(1, 2), lengths(1, 2))
    assert groups.replace(rewards=torch.ones(1, 2)).rewards.tolist() == [[1.0, 1.0]]
    with pytest.raises(DataError):
        groups.replace(rewards=torch.tensor([[0.0, float("nan")]]))


def batch(**changes) -> PolicyBatch:
    fields = {
        "logp": torch.full((2, 3), -1.0),
        "old_logp": torch.full((2, 3), -1.0),
        "mask": torch.tensor([[True, True, False], [True, False, False]]),
        "advantages": torch.tensor([1.0, -1.0]),
    }
    return PolicyBatch(**(fields | changes))


def test_policy_batch_token_advantages_broadcast() -> None:
    assert batch().token_advantages.tolist() == [[1.0] * 3, [-1.0] * 3]
    per_token = torch.arange(6.0).view(2, 3)
    assert torch.equal(batch(advantages=per_token).token_advantages, per_token)


def test_policy_batch_nonfinite_logp_only_matters_on_real_tokens() -> None:
    logp = torch.full((2, 3), -1.0)
    logp[1, 2] = -float("inf")  # padding
    assert batch(logp=logp).logp[1, 2] == -float("inf")
    logp[0, 1] = float("nan")
    with pytest.raises(DataError, match=r"PolicyBatch: logp\[0, 1\] is nan"):
        batch(logp=logp)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"old_logp": torch.zeros(2, 4)}, r"old_logp has shape \(2, 4\), logp \(2, 3\)"),
        ({"mask": torch.ones(2, 3)}, "mask must be a bool tensor"),
        ({"advantages": torch.zeros(3)}, r"advantages must be \[b\] or \[b, t\]"),
        ({"group_ids": torch.zeros(3, dtype=torch.long)}, r"group_ids must be \[b\] = \[2\]"),
        ({"rollout_logp": torch.zeros(2, 2)}, r"rollout_logp has shape \(2, 2\), logp \(2, 3\)"),
        ({"rollout_logp": torch.tensor([[-1.0, float("nan"), 0.0], [0.0] * 3])}, r"rollout_logp\[0, 1\] is nan"),
        ({"entropy_threshold": torch.tensor(float("nan"))}, "entropy_threshold is NaN"),
    ],
)
def test_policy_batch_rejects_inconsistent_input(changes: dict, message: str) -> None:
    with pytest.raises((DataError, TypeCheckError)) as err:
        batch(**changes)
    if isinstance(err.value, DataError):
        assert err.match(message)



def test_policy_batch_replace_checks_again_only_what_changed() -> None:
    b = batch()
    totals = LossTotals(torch.tensor(3.0), torch.tensor(2.0), torch.tensor([3.0]))
    same = b.replace(totals=totals, mask=b.mask)  # only the totals change: nothing to check again
    assert same.totals is totals and same.logp is b.logp and b.totals is None
    bad = b.logp.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DataError, match=r"PolicyBatch: logp\[0, 0\] is nan"):
        b.replace(logp=bad, totals=totals)
    with pytest.raises(TypeError):
        b.replace(no_such_field=1)


def test_policy_batch_checks_an_on_policy_old_logp_once_and_still_checks_its_own() -> None:
    logp = torch.full((2, 3), -1.0)
    assert batch(logp=logp, old_logp=logp.detach()).old_logp is not None  # the same values, checked as logp
    old = logp.clone()
    old[1, 0] = float("inf")
    with pytest.raises(DataError, match=r"PolicyBatch: old_logp\[1, 0\] is inf"):
        batch(logp=logp, old_logp=old)

def test_loss_totals_add_map_and_groups() -> None:
    a = LossTotals(torch.tensor(3.0), torch.tensor(2.0), torch.tensor([3.0, 0.0, 0.0]))
    b = LossTotals(torch.tensor(4.0), torch.tensor(1.0), torch.tensor([0.0, 0.0, 4.0]))
    total = a + b
    assert (total.tokens.item(), total.sequences.item()) == (7.0, 3.0)
    assert total.group_tokens.tolist() == [3.0, 0.0, 4.0]
    assert total.groups.item() == 2.0
    assert total.map(lambda x: 2 * x).tokens.item() == 14.0


def test_ensure_finite_locates_first_bad_position() -> None:
    values = torch.zeros(3, 4)
    values[2, 1] = float("inf")
    with pytest.raises(DataError, match=r"who: what\[2, 1\] is inf"):
        ensure_finite(values, None, "who", "what")
    ensure_finite(values, values == 0, "who", "what")


def test_ensure_finite_is_not_fooled_by_an_overflowing_sum() -> None:
    values = torch.full((4,), 3e38)  # finite, but the sum overflows to inf
    ensure_finite(values, None, "who", "what")
    values[2] = float("-inf")
    with pytest.raises(DataError, match=r"what\[2\] is -inf"):
        ensure_finite(values, None, "who", "what")
