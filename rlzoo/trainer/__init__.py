"""The generic trainer: collect (generate, score, shape, filter), advantages, update — for any recipe."""

from rlzoo.trainer.config import TrainConfig
from rlzoo.trainer.engines import Generator, HFGenerator, LeanGenerator, Rollout
from rlzoo.trainer.trainer import Trainer

__all__ = ["Generator", "HFGenerator", "LeanGenerator", "Rollout", "TrainConfig", "Trainer"]
