"""Rollout engines behind one :class:`Generator` protocol: Hugging Face ``generate``, the lean loop, vLLM."""

import logging
from typing import Any

import torch
from accelerate.state import PartialState, is_initialized

from rlzoo.errors import ConfigError
from rlzoo.trainer.engines.base import Generator, Rollout
from rlzoo.trainer.engines.hf import HFGenerator
from rlzoo.trainer.engines.lean import LeanGenerator

__all__ = ["Generator", "HFGenerator", "LeanGenerator", "Rollout", "build_generator"]

logger = logging.getLogger("rlzoo.trainer")


def build_generator(
    name: str, model: torch.nn.Module, config: Any = None, *, device: torch.device | str | None = None
) -> Generator:
    """The engine ``TrainConfig.generator`` names, checked against ``model`` (the lean loop is Llama-only).

    ``auto`` is the fastest engine measured for ``model`` on the device it trains on (``device``;
    by default accelerate's, else the model's): see :func:`auto_generator`. ``config`` (the
    ``TrainConfig``) gives vLLM its ``vllm_*`` knobs and seed.
    """
    if name == "auto":
        name = auto_generator(model, _training_device(model, device))
    if name == "lean":
        LeanGenerator.check(model)
        return LeanGenerator()
    if name == "vllm":
        from rlzoo.trainer.engines.vllm import VLLMGenerator  # vLLM is optional: only when named

        knobs = {} if config is None else {
            "gpu_memory_utilization": config.vllm_gpu_memory_utilization,
            "tensor_parallel_size": config.vllm_tensor_parallel_size,
            "max_model_length": config.vllm_max_model_length,
            "enable_sleep_mode": config.vllm_enable_sleep_mode,
            "seed": config.seed,
        }
        return VLLMGenerator(model, **knobs)
    return HFGenerator()


def auto_generator(model: torch.nn.Module, device: torch.device) -> str:
    """``lean`` on CPU for the models the lean loop supports, else ``hf``; one log line says which and why.

    On CPU the lean loop was measured faster than ``generate`` (the ``vs_trl`` workloads, one thread:
    1.8x on the shipped 0.53 M model, 1.3x on a 30 M Llama). On CUDA and other accelerators it has not
    been measured, so Hugging Face ``generate`` stays.
    """
    if device.type != "cpu":
        choice, why = "hf", f"training on {device.type}, where the lean loop has not been measured faster"
    else:
        try:
            LeanGenerator.check(model)
        except ConfigError:
            choice, why = "hf", f"model_type '{model.config.model_type}' is not one the lean loop supports"
        else:
            choice, why = "lean", f"model_type '{model.config.model_type}' on cpu, where the lean loop is faster"
    logger.info("generator auto: %s (%s)", choice, why)
    return choice


def _training_device(model: torch.nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if is_initialized():  # the Trainer's Accelerator exists: the model goes where it says
        return PartialState().device
    return next(model.parameters(), torch.empty(0)).device
