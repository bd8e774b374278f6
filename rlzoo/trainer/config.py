"""TrainConfig: trainer knobs only. Everything algorithmic belongs to the recipe."""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlzoo import yamlio
from rlzoo.errors import ConfigError
from rlzoo.params import validate_params


@dataclass(frozen=True)
class TrainConfig:
    """How to train: budget, batch shape, sampling, optimiser, logging and checkpoints.

    Names follow TRL's GRPOConfig where one exists. Each step's groups are split into
    ``mini_batches`` parts of whole groups, one optimiser step each (TRL's ``steps_per_generation``,
    verl's PPO mini-batches), and the whole sweep runs ``passes`` times (TRL's ``num_iterations``);
    ``micro_batch_size`` only bounds memory. With one optimiser step per rollout (the default) the
    policy ratio is exactly 1 and no clip binds. ``generator`` picks the rollout engine:
    ``auto`` (the default) is ``lean`` on CPU for the models it supports and ``hf`` otherwise (one
    log line says which), ``hf`` is Hugging Face ``generate`` (any model), ``lean`` is
    :class:`rlzoo.trainer.LeanGenerator` (Llama-style models; the same sampling, a leaner loop),
    ``vllm`` is vLLM colocated in this process (:class:`rlzoo.trainer.engines.vllm.VLLMGenerator`;
    the ``vllm_*`` knobs are TRL's, and its weights follow the policy after every optimiser step).
    ``cpu_threads`` sets torch's intra-op threads when training on CPU (small models run fastest on
    one: threads wait on each other as soon as another process holds a core). ``share_prompts``
    runs each distinct prompt of a step once, its group's completions attending to its keys and
    values (:mod:`rlzoo.trainer.prefix`; where the model allows, for up to half
    ``micro_batch_size`` distinct prompts; the same log-probs up to rounding). A config is validated
    as a whole when it is built: every problem is reported at once, before any model is loaded.

    Rewards run protected by default: in a worker process, each call cut off after
    ``reward_timeout`` seconds (a hang, ``os._exit`` or a segfault costs at most a few timeouts and
    is named); ``reward_timeout=None`` with ``reward_workers=0`` runs them in this process.

    Faults: ``on_nonfinite`` — a non-finite loss or gradient norm raises a DataError naming the
    step and the last good checkpoint (``"raise"``) or skips that optimiser step, counted in
    ``update/nonfinite_skipped`` (``"skip"``); ``max_empty_steps`` consecutive steps without one
    validly scored completion stop the run (0: never); ``save_total_limit`` keeps the newest N
    checkpoints (None: all).
    """

    steps: int = 100
    prompts_per_step: int = 16
    group_size: int = 8
    max_completion_length: int = 96
    temperature: float = 1.0
    top_p: float = 1.0
    learning_rate: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    micro_batch_size: int = 64
    passes: int = 1
    mini_batches: int = 1
    seed: int = 0
    generator: Literal["auto", "hf", "lean", "vllm"] = "auto"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    vllm_max_model_length: int | None = None
    vllm_enable_sleep_mode: bool = False
    max_prompt_length: int | None = None
    mask_truncated_completions: bool = False
    verifier: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = False
    logprobs_from_hidden: bool = True
    share_prompts: bool = True
    reward_aggregation: Literal["sum", "normalize_then_sum"] = "sum"
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    cpu_threads: int | None = None
    reward_weights: tuple[float, ...] | None = None
    reward_timeout: float | None = 30.0
    reward_workers: int = 0
    output_dir: str = "runs/rlzoo"
    log_every: int = 1
    eval_every: int = 0
    eval_size: int = 200
    eval_batch_size: int = 100
    save_every: int = 50
    save_total_limit: int | None = 3
    on_nonfinite: Literal["raise", "skip"] = "raise"
    max_empty_steps: int = 5
    report_to: tuple[str, ...] = ()
    progress: bool = True

    def __post_init__(self) -> None:
        # Types and allowed values however the config is built (TrainConfig(...) or from_dict).
        checked = validate_params("TrainConfig", type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        positive = ("steps", "prompts_per_step", "group_size", "max_completion_length", "micro_batch_size",
                    "passes", "mini_batches", "log_every", "eval_batch_size")
        non_negative = ("warmup_steps", "eval_every", "eval_size", "save_every", "reward_workers", "weight_decay",
                        "max_empty_steps")
        problems = [f"{k}={getattr(self, k)!r} must be >= 1" for k in positive if getattr(self, k) < 1]
        problems += [f"{k}={getattr(self, k)!r} must be >= 0" for k in non_negative if getattr(self, k) < 0]
        if self.temperature < 0:
            problems.append(f"temperature={self.temperature!r} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p={self.top_p!r} must be in (0, 1]")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate={self.learning_rate!r} must be > 0")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm={self.max_grad_norm!r} must be > 0 or None")
        if self.mini_batches > self.prompts_per_step:
            problems.append(
                f"mini_batches={self.mini_batches!r} must be <= prompts_per_step={self.prompts_per_step!r} "
                "(each mini-batch holds whole groups)"
            )
        if self.save_total_limit is not None and self.save_total_limit < 1:
            problems.append(f"save_total_limit={self.save_total_limit!r} must be >= 1 or None (keep every checkpoint)")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            problems.append(f"max_prompt_length={self.max_prompt_length!r} must be >= 1 or None (no limit)")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            problems.append(f"cpu_threads={self.cpu_threads!r} must be >= 1 or None (torch's default)")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            problems.append(f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization!r} must be in (0, 1]")
        if self.vllm_tensor_parallel_size < 1:
            problems.append(f"vllm_tensor_parallel_size={self.vllm_tensor_parallel_size!r} must be >= 1")
        if self.vllm_max_model_length is not None and self.vllm_max_model_length < 1:
            problems.append(f"vllm_max_model_length={self.vllm_max_model_length!r} must be >= 1 or None (the model's)")
        if self.reward_timeout is not None and not self.reward_timeout > 0:
            problems.append(f"reward_timeout={self.reward_timeout!r} must be > 0 or None")
        if problems:
            raise ConfigError("TrainConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from plain data (a YAML file, the command line); types and names are checked."""
        return cls(**validate_params("TrainConfig", cls, values))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        data = yamlio.load(Path(path).read_text()) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: a TrainConfig file must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
