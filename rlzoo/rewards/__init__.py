"""Reward functions (TRL's contract: prompts, completions, **columns -> list[float | None]) and shapers."""

from rlzoo.registry import Registry

REWARD_FUNCS: Registry = Registry("reward function", entry_point_group="rlzoo.rewards")
SHAPERS: Registry = Registry("reward shaper", entry_point_group="rlzoo.shapers")

build = REWARD_FUNCS.build
build_shaper = SHAPERS.build
