"""Slow, obviously correct reference formulas for the loss tests (never registered).

Plain formulas as the papers write them, with Python loops over sequences and groups.
"""

import math

import torch
from torch import Tensor


def naive_logprobs(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """``(logits / T).log_softmax(-1).gather(labels)`` and the entropy, in the compute dtype."""
    x = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    logsm = x.log_softmax(-1)
    return logsm.gather(-1, labels[..., None]).squeeze(-1), -(logsm.exp() * logsm).sum(-1)


def ppo_token_loss(
    logp: Tensor, old_logp: Tensor, adv: Tensor, eps_low: float, eps_high: float, dual: float | None = None
) -> Tensor:
    """-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), and min(., -c A) for A < 0 with dual-clip."""
    r = torch.exp(logp - old_logp)
    loss = -torch.min(r * adv, torch.clamp(r, 1 - eps_low, 1 + eps_high) * adv)
    if dual is not None:
        loss = torch.where(adv < 0, torch.min(loss, -dual * adv), loss)
    return loss


def aggregate(values: Tensor, mask: Tensor, group_ids: Tensor, name: str, constant: float = 1.0) -> Tensor:
    """The aggregations of ALGORITHMS.md §3, one sequence and one group at a time."""
    seqs = [values[i][mask[i]] for i in range(values.shape[0])]
    seqs_ids = [(s, int(g)) for s, g in zip(seqs, group_ids, strict=True) if len(s) > 0]
    if name == "token_mean":
        return sum(s.sum() for s, _ in seqs_ids) / sum(len(s) for s, _ in seqs_ids)
    if name == "seq_mean_token_mean":
        return sum(s.mean() for s, _ in seqs_ids) / len(seqs_ids)
    if name == "seq_mean_token_sum":
        return sum(s.sum() for s, _ in seqs_ids) / len(seqs_ids)
    if name == "seq_sum_const":
        return sum(s.sum() for s, _ in seqs_ids) / (len(seqs_ids) * constant)
    if name == "token_sum_const":
        return sum(s.sum() for s, _ in seqs_ids) / constant
    if name == "group_token_mean":
        groups = sorted({g for _, g in seqs_ids})
        means = [torch.cat([s for s, g in seqs_ids if g == k]).mean() for k in groups]
        return sum(means) / len(groups)
    raise KeyError(name)


def gspo_sequence_losses(
    logp: Tensor, old_logp: Tensor, mask: Tensor, adv: Tensor, eps_low: float, eps_high: float
) -> list[Tensor]:
    """GSPO per sequence: s = exp(mean_t(logp - old)), -min(s A, clip(s) A)."""
    out = []
    for i in range(logp.shape[0]):
        m = mask[i]
        s = torch.exp((logp[i][m] - old_logp[i][m]).mean())
        out.append(-torch.min(s * adv[i], torch.clamp(s, 1 - eps_low, 1 + eps_high) * adv[i]))
    return out


def gvpo_group_losses(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    beta: float,
    detach_mean: bool = False,
) -> list[Tensor]:
    """½ Σ_i [(R_i - mean R) - (r_i - mean r)]² / (g - 1) per group, R_i = β Σ_t (logp - old).

    ``detach_mean`` detaches mean R as the authors' verl recipe does.
    """
    losses = []
    for k in sorted({int(g) for g in group_ids}):
        members = [i for i in range(logp.shape[0]) if int(group_ids[i]) == k and bool(mask[i].any())]
        implied = [beta * (logp[i][mask[i]] - old_logp[i][mask[i]]).sum() for i in members]
        r = [rewards[i] for i in members]
        mean_implied, mean_r = sum(implied) / len(members), sum(r) / len(members)
        if detach_mean:
            mean_implied = mean_implied.detach()
        sq = sum(((a - mean_implied) - (b - mean_r)) ** 2 for a, b in zip(implied, r, strict=True))
        losses.append(0.5 * sq / (len(members) - 1))
    return losses


def k3(d: float) -> float:
    return math.exp(d) - d - 1
