"""Slow, obviously correct loop versions of the shapers, straight from ALGORITHMS.md §1 and §4.

Each takes plain Python lists of lists (one inner list per group) and returns the shaped rewards.
Invalid completions (mask False) are returned unchanged and ignored everywhere else.
"""

import math


def agpo_length(rewards, lengths, correct, mask, alpha=0.1, degenerate="skip"):
    out = [list(row) for row in rewards]
    for i in range(len(rewards)):
        idx = [j for j in range(len(rewards[i])) if mask[i][j]]
        right = [j for j in idx if correct[i][j]]
        wrong = [j for j in idx if not correct[i][j]]
        if not right or not wrong:
            continue
        lmin = min(lengths[i][j] for j in right)
        lmax = max(lengths[i][j] for j in right)
        for j in right:
            if lmax == lmin:
                bonus = alpha if degenerate == "full" else 0.0
            else:
                bonus = alpha * (1 - (lengths[i][j] - lmin) / (lmax - lmin))
            out[i][j] = rewards[i][j] + bonus
    return out


def kimi_length(rewards, lengths, correct, mask, weight=1.0):
    out = [list(row) for row in rewards]
    for i in range(len(rewards)):
        idx = [j for j in range(len(rewards[i])) if mask[i][j]]
        if not idx:
            continue
        lmin = min(lengths[i][j] for j in idx)
        lmax = max(lengths[i][j] for j in idx)
        for j in idx:
            lam = 0.0 if lmax == lmin else 0.5 - (lengths[i][j] - lmin) / (lmax - lmin)
            out[i][j] = rewards[i][j] + weight * (lam if correct[i][j] else min(0.0, lam))
    return out


def cosine_length(
    rewards,
    lengths,
    correct,
    mask,
    max_length,
    margin=0,
    combine="replace",
    values=(1.0, 2.0, -10.0, 0.0, -10.0),
):
    # the official code, eddycmu/demystify-long-cot CosineScaledSparseReward.reward; values default to
    # its section 4 scripts: (min_value_correct, max_value_correct, min_value_wrong, max_value_wrong, exceed_length)
    min_value_correct, max_value_correct, min_value_wrong, max_value_wrong, exceed_length = values
    out = [list(row) for row in rewards]
    for i in range(len(rewards)):
        for j in range(len(rewards[i])):
            if not mask[i][j]:
                continue
            if lengths[i][j] + margin >= max_length:
                r = exceed_length
            else:
                if correct[i][j]:
                    min_value, max_value = min_value_correct, max_value_correct
                else:
                    min_value, max_value = max_value_wrong, min_value_wrong  # "Yes, they are swapped."
                progress = lengths[i][j] / max_length
                r = min_value + 0.5 * (max_value - min_value) * (1.0 + math.cos(progress * math.pi))
            out[i][j] = r if combine == "replace" else rewards[i][j] + r
    return out


def dapo_overlong(rewards, lengths, mask, max_length, cache_length, factor=1.0):
    out = [list(row) for row in rewards]
    for i in range(len(rewards)):
        for j in range(len(rewards[i])):
            if not mask[i][j]:
                continue
            length = lengths[i][j]
            if length <= max_length - cache_length:
                penalty = 0.0
            elif length <= max_length:
                penalty = ((max_length - cache_length) - length) / cache_length
            else:
                penalty = -1.0
            out[i][j] = rewards[i][j] + factor * penalty
    return out


def binary_correct(rewards, correct, mask, pos=1.0, neg=-1.0):
    return [
        [(pos if c else neg) if m else r for r, c, m in zip(rr, cc, mm, strict=True)]
        for rr, cc, mm in zip(rewards, correct, mask, strict=True)
    ]
