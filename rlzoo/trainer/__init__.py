"""The generic trainer: rollout, score, shape, filter, advantage, update — for any recipe."""

from rlzoo.trainer.config import TrainConfig
from rlzoo.trainer.lean import LeanGenerator
from rlzoo.trainer.rollout import Generator, HFGenerator, Rollout
from rlzoo.trainer.trainer import Trainer

__all__ = ["Generator", "HFGenerator", "LeanGenerator", "Rollout", "TrainConfig", "Trainer"]
