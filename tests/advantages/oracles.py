"""Slow, obviously-correct loop implementations of every estimator and filter (test oracles only).

Each works on Python floats (float64) one group at a time, over the valid completions only, and
returns nested lists ``[n][g]``. They follow /work/shared/ALGORITHMS.md §1–2 literally; none is
registered and none shares code with ``rlzoo.advantages``.
"""

import math

from rlzoo.types import Groups


def _rows(groups: Groups) -> list[list[tuple[int, float]]]:
    """Per group: (column, reward) of each valid completion."""
    rewards, mask = groups.rewards.tolist(), groups.mask.tolist()
    return [[(j, r) for j, (r, ok) in enumerate(zip(rr, mm, strict=True)) if ok] for rr, mm in zip(rewards, mask, strict=True)]


def _zeros(groups: Groups) -> list[list[float]]:
    return [[0.0] * groups.g for _ in range(groups.n)]


def _std(values: list[float], ddof: int) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - ddof, 1))


def grpo(groups: Groups, scale="group", std_ddof=1, eps=1e-6, singleton="zero") -> list[list[float]]:
    out = _zeros(groups)
    rows = _rows(groups)
    every = [r for row in rows for _, r in row]
    batch_std = _std(every, std_ddof) if every else 0.0
    for i, row in enumerate(rows):
        values = [r for _, r in row]
        if len(values) == 1:
            if singleton == "raise":
                raise ValueError(f"group {i} has a single valid completion")
            if singleton == "passthrough":
                out[i][row[0][0]] = values[0]
            continue
        if not values or max(values) == min(values):
            continue
        mean = sum(values) / len(values)
        denom = {"group": _std(values, std_ddof) + eps, "batch": batch_std + eps, "none": 1.0}[scale]
        for j, r in row:
            out[i][j] = (r - mean) / denom
    return out


def agpo(groups: Groups, reward_max=1.0, reward_min=0.0, pos=1.0, neg=-1.0, **grpo_params) -> list[list[float]]:
    out = grpo(groups, **grpo_params)
    for i, row in enumerate(_rows(groups)):
        values = [r for _, r in row]
        if len(values) >= 2 and max(values) == min(values):
            fixed = pos if values[0] == reward_max else neg if values[0] == reward_min else 0.0
            for j, _ in row:
                out[i][j] = fixed
    return out


def rloo(groups: Groups) -> list[list[float]]:
    out = _zeros(groups)
    for i, row in enumerate(_rows(groups)):
        if len(row) < 2:
            continue
        for j, r in row:
            others = [s for k, s in row if k != j]
            out[i][j] = r - sum(others) / len(others)
    return out


def reinforce(groups: Groups) -> list[list[float]]:
    out = _zeros(groups)
    for i, row in enumerate(_rows(groups)):
        for j, r in row:
            out[i][j] = r
    return out


def raft(groups: Groups) -> list[list[float]]:
    return [[max(a, 0.0) for a in row] for row in reinforce(groups)]


def remax(groups: Groups) -> list[list[float]]:
    greedy = groups.greedy_rewards.tolist()
    out = _zeros(groups)
    for i, row in enumerate(_rows(groups)):
        for j, r in row:
            out[i][j] = r - greedy[i]
    return out


def opo(groups: Groups) -> list[list[float]]:
    lengths = groups.lengths.tolist()
    out = _zeros(groups)
    for i, row in enumerate(_rows(groups)):
        values = [r for _, r in row]
        if len(values) < 2 or max(values) == min(values):
            continue
        total = sum(lengths[i][j] for j, _ in row)
        weighted = sum(lengths[i][j] * r for j, r in row)
        baseline = weighted / total if total > 0 else sum(values) / len(values)
        for j, r in row:
            out[i][j] = r - baseline
    return out


def _whiten(groups: Groups, values: list[list[float]], eps: float, std_ddof: int = 0) -> list[list[float]]:
    """Every valid completion repeated once per token, then (x - mean) / sqrt(var + eps), var over N - ddof."""
    lengths = groups.lengths.tolist()
    tokens = [values[i][j] for i, row in enumerate(_rows(groups)) for j, _ in row for _ in range(lengths[i][j])]
    valid = [values[i][j] for i, row in enumerate(_rows(groups)) for j, _ in row]
    out = _zeros(groups)
    if not tokens or max(valid) == min(valid):
        return out
    mean = sum(tokens) / len(tokens)
    var = sum((t - mean) ** 2 for t in tokens) / max(len(tokens) - std_ddof, 1)
    for i, row in enumerate(_rows(groups)):
        for j, _ in row:
            out[i][j] = (values[i][j] - mean) / math.sqrt(var + eps)
    return out


def reinforce_pp(groups: Groups, eps=1e-8, std_ddof=0) -> list[list[float]]:
    return _whiten(groups, reinforce(groups), eps, std_ddof)


def reinforce_pp_baseline(groups: Groups, eps=1e-8, std_ddof=0) -> list[list[float]]:
    return _whiten(groups, grpo(groups, scale="none"), eps, std_ddof)


def maxrl(groups: Groups, denominator="mean", eps=1e-6, singleton="zero") -> list[list[float]]:
    """ALGORITHMS.md II.4: (r - mean) / mean where mean > 0 (else 0), or over mean + eps, or |mean| + eps."""
    out = _zeros(groups)
    for i, row in enumerate(_rows(groups)):
        values = [r for _, r in row]
        if len(values) == 1 and singleton == "passthrough":
            out[i][row[0][0]] = values[0]
            continue
        if not values or max(values) == min(values):
            continue
        mean = sum(values) / len(values)
        if denominator == "mean":
            if mean <= 0:
                continue
            denom = mean
        else:
            denom = (mean if denominator == "mean_eps" else abs(mean)) + eps
        for j, r in row:
            out[i][j] = (r - mean) / denom
    return out


def grpo_passk(groups: Groups, scale="group", std_ddof=1, eps=1e-6) -> list[list[float]]:
    out = _zeros(groups)
    for i, row in enumerate(_rows(groups)):
        if len(row) < 2:
            continue
        ranked = sorted(row, key=lambda jr: jr[1], reverse=True)
        (best_j, best), (_, second) = ranked[0], ranked[1]
        if best == second:
            continue
        denom = _std([r for _, r in row], std_ddof) + eps if scale == "group" else 1.0
        out[i][best_j] = (best - second) / denom
    return out


def gpg(groups: Groups, scale="none", std_ddof=1, eps=1e-6) -> list[list[float]]:
    rows = _rows(groups)
    total = sum(len(row) for row in rows)
    degenerate = sum(len(row) for row in rows if row and max(r for _, r in row) == min(r for _, r in row))
    alpha = total / (total - degenerate) if total > degenerate else 1.0
    return [[alpha * a for a in row] for row in grpo(groups, scale=scale, std_ddof=std_ddof, eps=eps)]


def reinforce_rej(groups: Groups) -> list[list[bool]]:
    keep = [[False] * groups.g for _ in range(groups.n)]
    for i, row in enumerate(_rows(groups)):
        values = [r for _, r in row]
        if values and min(values) < max(values):
            for j, _ in row:
                keep[i][j] = True
    return keep


def dapo(groups: Groups) -> list[list[bool]]:
    correct = groups.correct.tolist()
    keep = [[False] * groups.g for _ in range(groups.n)]
    for i, row in enumerate(_rows(groups)):
        right = sum(correct[i][j] for j, _ in row)
        if 0 < right < len(row):
            for j, _ in row:
                keep[i][j] = True
    return keep


ESTIMATOR_ORACLES = {
    "agpo": agpo,
    "gpg": gpg,
    "grpo": grpo,
    "grpo_passk": grpo_passk,
    "maxrl": maxrl,
    "opo": opo,
    "raft": raft,
    "reinforce": reinforce,
    "reinforce_pp": reinforce_pp,
    "reinforce_pp_baseline": reinforce_pp_baseline,
    "remax": remax,
    "rloo": rloo,
}
FILTER_ORACLES = {"dapo": dapo, "reinforce_rej": reinforce_rej}
