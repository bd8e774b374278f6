"""What the trainer checks and builds before its first step: inputs, model, reference, optimiser."""

import copy
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rlzoo.errors import ConfigError
from rlzoo.recipes import Parts
from rlzoo.rewards import Scorer
from rlzoo.text import is_chat
from rlzoo.trainer import sharding
from rlzoo.trainer.config import TrainConfig
from rlzoo.types import Groups

logger = logging.getLogger("rlzoo.trainer")


def check_dataset(dataset: Any, name: str) -> None:
    """Rows must be dicts with a ``prompt``; the other fields are reward-function columns."""
    if len(dataset) == 0:
        raise ConfigError(f"Trainer: {name} is empty")
    first = dataset[0]
    if not isinstance(first, dict) or "prompt" not in first:
        raise ConfigError(
            f"Trainer: {name} rows must be dicts with a 'prompt' field, got {type(first).__name__}"
            + (f" with keys {sorted(first)}" if isinstance(first, dict) else "")
        )


def check_recipe_fits_config(recipe_name: str, parts: Parts, config: TrainConfig, world: int) -> None:
    """Fail before training when the batch cannot be split or the advantage can never be non-zero."""
    if config.prompts_per_step % world:
        raise ConfigError(
            f"TrainConfig: prompts_per_step={config.prompts_per_step} must be divisible by the number of "
            f"processes ({world})"
        )
    g = config.group_size
    rewards = torch.linspace(0.0, 1.0, 2 * g).view(2, g)
    rewards[1] = 1.0 - rewards[1]
    lengths = torch.arange(2 * g).view(2, g) + 1
    probe = Groups(rewards, lengths, correct=rewards > 0.5, greedy_rewards=torch.tensor([0.5, 0.5]))
    if not bool(parts.estimator(probe).ne(0).any()):
        raise ConfigError(
            f"recipe '{recipe_name}': its advantage estimator gives every completion advantage 0 at "
            f"group_size={g}, so nothing would be learned; use group_size >= 2"
        )


def launched_processes() -> int:
    """How many processes the launcher (torchrun, accelerate launch, mpirun) started."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def cpu_only() -> bool:
    """Whether to ask accelerate for CPU processes: several were launched and there is no CUDA device.

    accelerate forms a multi-process CPU group only when told to (``ACCELERATE_USE_CPU=true`` or
    ``cpu=True``); otherwise every process would train alone on its own copy of the batch.
    """
    return launched_processes() > 1 and not torch.cuda.is_available()


def check_processes(world: int) -> None:
    """Fail when the launcher started several processes but accelerate sees one (each would train alone)."""
    launched = launched_processes()
    if launched > 1 and world != launched:
        raise ConfigError(
            f"Trainer: {launched} processes were launched but accelerate sees {world}; an accelerate state "
            "made before the Trainer decided it. On CPU set ACCELERATE_USE_CPU=true, or build "
            "accelerate.PartialState(cpu=True) first"
        )


def mixed_precision(config: TrainConfig) -> str:
    """``auto``: bf16 autocast on a CUDA device that supports it, fp32 elsewhere (PITFALLS: CPU bf16 is slower)."""
    if config.mixed_precision != "auto":
        return config.mixed_precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def load_model(
    model: PreTrainedModel | str, tokenizer: PreTrainedTokenizerBase | None, dtype: str = "float32"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and its tokenizer; a string is a local directory or a hub id (``from_pretrained``).

    A tokenizer without a pad token gets its EOS token as pad (TRL's choice), with one warning.
    """
    if isinstance(model, str):
        source = model
        try:
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(_load_problem(source, "tokenizer", exc)) from exc
        try:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            raise ConfigError(_load_problem(source, "model", exc)) from exc
    if tokenizer is None:
        raise ConfigError("Trainer: tokenizer is None; pass the model's tokenizer")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ConfigError("Trainer: the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token")
        logger.warning("the tokenizer has no pad token: using its EOS token %r as pad (as TRL does)", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _load_problem(source: str, what: str, exc: Exception) -> str:
    """What to do when ``from_pretrained`` could not load ``what`` from ``source``."""
    if Path(source).is_dir():
        if what == "tokenizer":
            return (f"Trainer: {source} has no loadable tokenizer (no tokenizer.json or tokenizer_config.json it can "
                    f"read; {type(exc).__name__}); save one there (tokenizer.save_pretrained) or pass tokenizer=...")
        return f"Trainer: could not load a causal LM from {source}: {type(exc).__name__}: {exc}"
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return (f"Trainer: '{source}' is not a local directory and the hub is offline (HF_HUB_OFFLINE=1); "
                f"download it first (`hf download {source}`) or pass a local path")
    return f"Trainer: could not load the {what} '{source}' (a local directory or a hub id): {type(exc).__name__}: {exc}"


def check_data_fits_tokenizer(dataset: Any, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    """Chat prompts need a chat template: refuse before the first step."""
    if is_chat(dataset[0]["prompt"]) and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"Trainer: {name} has chat prompts (lists of messages) but the tokenizer has no chat template; "
            "use a chat model's tokenizer, set tokenizer.chat_template, or give plain-text prompts"
        )


def check_verdict(parts: Parts, recipe_name: str, scorer: Scorer) -> None:
    """A recipe that reads correctness needs a source of it."""
    if parts.needs_verdict and not scorer.verifiers:
        raise ConfigError(
            f"recipe '{recipe_name}' needs to know which completions are correct, and no reward function says: "
            f"name one with TrainConfig verifier=... (one of {', '.join(scorer.names)}; its reward > 0 means "
            "correct), or use a reward function that declares verifies_correctness = True"
        )


def adapt(model: torch.nn.Module, peft_config: Any | None, gradient_checkpointing: bool) -> torch.nn.Module:
    """The model to train: with adapters when ``peft_config`` is given, with gradient checkpointing if asked."""
    if peft_config is not None:
        try:
            import peft
        except ImportError as exc:
            raise ConfigError("Trainer: peft_config needs the peft package (pip install peft, or rlzoo[lora])") from exc
        model = peft.get_peft_model(model, peft_config)
    if gradient_checkpointing:
        # non-reentrant: gradients reach the adapters without enable_input_require_grads; the training
        # forwards pass use_cache=False, and generation (eval mode) keeps its KV cache
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def lora_config(spec: Mapping[str, Any]) -> Any:
    """A ``peft.LoraConfig`` from a config file's ``lora:`` section (``r``, ``alpha``, ``dropout``,
    ``target_modules``; default all linear layers)."""
    known = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    unknown = sorted(set(spec) - set(known) - {"merge"})
    if unknown:
        raise ConfigError(f"lora: unknown key(s) {', '.join(unknown)} (keys: {', '.join([*known, 'merge'])})")
    try:
        import peft
    except ImportError as exc:
        raise ConfigError("lora: needs the peft package (pip install peft, or rlzoo[lora])") from exc
    values = known | {k: v for k, v in spec.items() if k != "merge"}
    return peft.LoraConfig(r=values["r"], lora_alpha=values["alpha"], lora_dropout=values["dropout"],
                           target_modules=values["target_modules"], task_type="CAUSAL_LM")


def reference_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A frozen copy of the policy as it is now, to be prepared like the policy (same precision, autocast)."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def prepare(
    accelerator: Accelerator, model: torch.nn.Module, reference: torch.nn.Module | None, config: TrainConfig,
    generator: Any,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.nn.Module | None]:
    """The policy, its optimiser and the reference, placed and put under the run's autocast alike.

    Not wrapped in DDP: the update sums gradients across processes itself (rlzoo.trainer.update).
    Under FSDP2 both models are sharded (rlzoo.trainer.sharding) and the reduce-scatter sums.
    """
    if accelerator.is_fsdp2:
        from rlzoo.trainer.engines.vllm import VLLMGenerator  # imports no vLLM

        if isinstance(generator, VLLMGenerator):
            # it pushes weights when their version counters move, and FSDP2's all-gathers keep them still
            raise ConfigError("Trainer: generator='vllm' is not supported under FSDP2 yet; use generator='hf' "
                              "(or 'lean' for Llama models), which generate from the gathered weights")
        return sharding.prepare(accelerator, model, optimizer(model, config), reference)
    model = accelerator.prepare_model(model, evaluation_mode=True)
    opt = accelerator.prepare_optimizer(optimizer(model, config))
    return model, opt, None if reference is None else accelerator.prepare_model(reference, evaluation_mode=True)


def optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
