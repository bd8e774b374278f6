"""Reward functions (TRL's contract: prompts, completions, **columns -> list[float | None]) and shapers.

A reward function scores completions one by one from their text; the :class:`Scorer` runs a list
of them robustly (timeouts, worker processes, None for unscorable completions) and combines them
into ``[n, g]`` tensors. Plain functions register too; :func:`resolve_rewards` turns the specs a
config names (``answer_match``, ``module:function``, ``file.py:function``, each ``@weight``) into
functions. A shaper (``Groups -> Groups``) changes the rewards group-wise from the
lengths and the verdict; the trainer applies the recipe's shapers in order.
"""

from rlzoo.registry import Registry

REWARD_FUNCS: Registry = Registry("reward function", entry_point_group="rlzoo.rewards", functions=True)
SHAPERS: Registry = Registry("reward shaper", entry_point_group="rlzoo.shapers")

build = REWARD_FUNCS.build
build_shaper = SHAPERS.build

from rlzoo.rewards import answer, correctness, length, style  # noqa: E402,F401  (register on import)
from rlzoo.rewards._scorer import RewardFunctionError, Scorer, Scores  # noqa: E402
from rlzoo.rewards._specs import RewardSpec, resolve_reward, resolve_rewards  # noqa: E402

__all__ = [
    "REWARD_FUNCS",
    "SHAPERS",
    "RewardFunctionError",
    "RewardSpec",
    "Scorer",
    "Scores",
    "build",
    "build_shaper",
    "resolve_reward",
    "resolve_rewards",
]
