"""Rollout engines behind one :class:`Generator` protocol: Hugging Face ``generate`` and the lean loop."""

import torch

from rlzoo.trainer.engines.base import Generator, Rollout
from rlzoo.trainer.engines.hf import HFGenerator
from rlzoo.trainer.engines.lean import LeanGenerator

__all__ = ["Generator", "HFGenerator", "LeanGenerator", "Rollout", "build_generator"]


def build_generator(name: str, model: torch.nn.Module) -> Generator:
    """The engine ``TrainConfig.generator`` names, checked against ``model`` (the lean loop is Llama-only)."""
    if name == "lean":
        LeanGenerator.check(model)
        return LeanGenerator()
    return HFGenerator()
