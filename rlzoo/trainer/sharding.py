"""FSDP2 through accelerate: what the trainer does differently when the policy is sharded.

Launch with an accelerate config that says FSDP version 2 (``examples/accelerate/fsdp2.yaml``).
Then:

- the policy and its optimiser are prepared together (accelerate's ``fully_shard`` per decoder
  layer, plus the embedding and the tail); every unit *sums* its reduce-scattered gradients
  (rlzoo's losses are normalised by the whole step's counts, so the shares add up, as
  ``Processes.sum_gradients`` does without sharding); a frozen reference model is sharded alike
  (with LoRA the reference is the policy with its adapters off: nothing more to shard);
- a sharded forward all-gathers each unit, so every process must run the same number of them:
  training passes are padded to the step's largest micro-batch count with zero-weight dummies
  (:func:`idle_loss`), and passes without a graph (generation, evaluation, old / reference
  log-probs, the reward KL) run inside :func:`gathered`, which all-gathers every unit once and
  leaves the parameters whole until it ends, so inside it any number of forwards needs no
  collective;
- log-probs from hidden states go through the model's own forward (:func:`final_hidden_states`);
- checkpoints go through ``torch.distributed.checkpoint`` (every process writes its shards) and
  :func:`full_state_dict` gives the whole weights for ``save_pretrained``.

DeepSpeed is refused (rlzoo sums gradients itself and pads micro-batches; neither is wired to
DeepSpeed's engine). FSDP asked for but not granted (accelerate 1.15 keeps several CPU
processes as MULTI_CPU and drops the FSDP plugin) is an error, not a silent unsharded run.
"""

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, FullyShardedDataParallelPlugin
from accelerate.state import PartialState
from accelerate.utils import DistributedType

from rlzoo.errors import ConfigError
from rlzoo.trainer.batching import StepBatch

logger = logging.getLogger("rlzoo.trainer")

# Tests only: accelerate 1.15 never shards CPU processes, so the 2-process gloo tests force its
# FSDP2 path (the plugin read from FSDP_* variables, as `accelerate launch` sets them). Not for runs.
CPU_TEST_OVERRIDE = "RLZOO_TEST_FSDP2_ON_CPU"

_WORKS = ("what works: FSDP2 (accelerate config with distributed_type: FSDP and fsdp_version: 2, see "
          "examples/accelerate/fsdp2.yaml) or plain data parallel (a multi-GPU config, or torchrun)")
_NO_DEEPSPEED = f"Trainer: DeepSpeed is not supported yet (rlzoo sums gradients itself); {_WORKS}"


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def accelerator(**kwargs: Any) -> Accelerator:
    """The run's Accelerator, refusing a backend rlzoo cannot train with (see the module doc)."""
    if _flag("ACCELERATE_USE_DEEPSPEED"):  # before accelerate, which fails on a missing deepspeed package
        raise ConfigError(_NO_DEEPSPEED)
    override = _flag(CPU_TEST_OVERRIDE)
    if override:
        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(fsdp_version=2)
    acc = Accelerator(**kwargs)
    if override and acc.distributed_type == DistributedType.MULTI_CPU:
        # both states: every AcceleratorState re-reads PartialState's type
        PartialState().distributed_type = acc.state.distributed_type = DistributedType.FSDP
        acc.state.fsdp_plugin = kwargs["fsdp_plugin"]
        if acc.mixed_precision != "no":  # as accelerate does for the processes it shards
            acc.state.fsdp_plugin.set_mixed_precision(acc.mixed_precision)
    kind = acc.distributed_type
    if kind == DistributedType.DEEPSPEED:
        raise ConfigError(_NO_DEEPSPEED)
    if kind == DistributedType.FSDP and not acc.is_fsdp2:
        raise ConfigError(f"Trainer: FSDP version 1 is not supported; set fsdp_version: 2 ({_WORKS})")
    if _flag("ACCELERATE_USE_FSDP") and not acc.is_fsdp2:
        problem = (f"accelerate was asked for FSDP (ACCELERATE_USE_FSDP=true) but runs {kind.value}"
                   + (" (accelerate does not shard CPU processes)" if acc.device.type == "cpu" else ""))
        if acc.num_processes > 1:
            raise ConfigError(f"Trainer: {problem}: every process would hold the whole model; {_WORKS}")
        logger.warning("%s; one process: training unsharded", problem)
    return acc


def units(model: torch.nn.Module | None) -> list[Any]:
    """The FSDP units in ``model`` (one per shard group), outermost first; none when it is not sharded."""
    from torch.distributed.fsdp import FSDPModule

    if model is None:
        return []
    seen, out = set(), []
    for m in model.modules():
        if isinstance(m, FSDPModule) and id(state := m._get_fsdp_state()) not in seen:
            seen.add(id(state))
            out.append(m)
    return out


def is_sharded(model: torch.nn.Module | None) -> bool:
    return bool(units(model))


def sum_gradients(model: torch.nn.Module) -> None:
    """Make every unit's reduce-scatter a plain sum (FSDP2 averages over the processes by default;
    gloo refuses the pre-multiplied sum a divide factor alone would use)."""
    for m in units(model):
        m.set_gradient_divide_factor(1.0)
        m.set_force_sum_reduction_for_comms(True)


def prepare(accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            reference: torch.nn.Module | None) -> tuple[torch.nn.Module, Any, torch.nn.Module | None]:
    """Shard the policy with its optimiser (accelerate needs both at once) and the reference alike."""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    model, optimizer = accelerator.prepare(model, optimizer)
    sum_gradients(model)
    if reference is not None:  # frozen: accelerate's prepare wants an optimiser, so shard it directly
        reference = fsdp2_prepare_model(accelerator, reference)
    for m in (model, reference):
        if m is not None:
            # what the first forward would do (settle the root and its settings), before a gathered
            # window saves and restores those settings
            m._get_fsdp_state()._lazy_init()
    return model, optimizer, reference


_GATHERED = "_rlzoo_gathered"


@contextlib.contextmanager
def gathered(*models: torch.nn.Module | None) -> Iterator[None]:
    """Whole parameters in every unit of ``models`` until the block ends, then sharded again.

    A collective on entry (one all-gather per unit, every process), none inside: forwards without a
    graph (``generate`` with ``synced_gpus=False``, detached log-probs, an engine reading the
    weights) may differ in number between processes. Nested use is free; unsharded models pass
    through. Not for passes with a graph (their backward would reduce-scatter per process).
    """
    roots = [us[0] for us in map(units, models) if us and not getattr(us[0], _GATHERED, False)]
    saved = []
    for root in roots:
        # every unit sharded and idle first (a forward that read the head's weight without calling it
        # leaves the tail unit mid-forward), so every process all-gathers the same units
        root.reset_iter_state()
        for u in units(root):  # whole through forwards; the settings are put back exactly
            state = u._get_fsdp_state()
            saved.append((u, state._auto_reshard_after_forward,
                          [g.post_forward_mesh_info for g in state._fsdp_param_groups]))
            u.set_reshard_after_forward(False, recurse=False)
    try:
        for u, *_ in saved:
            u.unshard()
        for root in roots:
            setattr(root, _GATHERED, True)
        yield
    finally:
        for u, auto, infos in saved:
            state = u._get_fsdp_state()
            state._auto_reshard_after_forward = auto
            for g, info in zip(state._fsdp_param_groups, infos, strict=True):
                g.post_forward_mesh_info = info
        for root in roots:
            root.reset_iter_state()  # reshards every unit (no gradient is in flight: no graph inside)
            setattr(root, _GATHERED, False)


def final_hidden_states(model: torch.nn.Module, **inputs: Any) -> torch.Tensor:
    """The decoder's output (``last_hidden_state``) for ``inputs``, for log-probs from hidden states.

    A sharded model runs its own forward instead (with logits for one position only): FSDP2's hooks
    all-gather every unit on the way, including the final norm wherever it sits, and leave the head's
    weight whole for the caller's chunked product (neither the root nor accelerate's tail unit
    reshards after forward); the decoder alone would find the root's parameters sharded.
    """
    decoder = model.get_decoder()
    if not is_sharded(model):
        return decoder(**inputs).last_hidden_state
    seen: list[torch.Tensor] = []
    hook = decoder.register_forward_hook(lambda module, args, out: seen.append(out.last_hidden_state))
    try:
        model(**inputs, logits_to_keep=1)
    finally:
        hook.remove()
    return seen[-1]


def idle_loss(logprobs: Any, device: torch.device) -> torch.Tensor:
    """A zero loss through the whole policy (``logprobs``: the trainer's LogProbs), for a process with
    fewer micro-batches than another: it adds nothing but joins the all-gathers and reduce-scatters."""
    ids = torch.zeros((1, 2), dtype=torch.long, device=device)  # one row: a token of prompt, one of completion
    zero = torch.zeros(1, device=device)
    one_row = StepBatch(ids, torch.ones_like(ids, dtype=torch.bool), torch.ones((1, 1), dtype=torch.bool, device=device),
                        zero, zero, torch.zeros(1, dtype=torch.long, device=device))
    logp, _ = logprobs.policy(one_row, 1.0)
    return logp.sum() * 0.0


# -- state dicts ----------------------------------------------------------------------------------

def _trainable() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True)  # the trainable parameters only (LoRA: the adapters)


def _plain(optimizer: Any) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch optimiser


def save_sharded(model: torch.nn.Module, optimizer: Any, path: Path) -> None:
    """Every process writes its shards of the trainable parameters and the optimiser state (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    weights, state = get_state_dict(model, _plain(optimizer), options=_trainable())
    dcp.save({"model": weights, "optimizer": state}, checkpoint_id=str(path))


def load_sharded(model: torch.nn.Module, optimizer: Any, path: Path) -> None:
    """Read what :func:`save_sharded` wrote into ``model`` and ``optimizer``, on however many processes."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    weights, state = get_state_dict(model, _plain(optimizer), options=_trainable())
    into = {"model": weights, "optimizer": state}
    dcp.load(into, checkpoint_id=str(path))
    set_state_dict(model, _plain(optimizer), model_state_dict=into["model"], optim_state_dict=into["optimizer"],
                   options=_trainable())


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight of a sharded ``model``, whole, on the CPU of the main process (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
