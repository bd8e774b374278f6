"""Checkpoints written atomically, read back with ``weights_only`` loading only.

Layout under ``<output_dir>/checkpoints``::

    step-000010/            model.safetensors (the trainable parameters: all, or the LoRA adapters),
                            optimizer.pt, rng-<rank>.pt, state.json
    latest                  the name of the newest complete checkpoint

With a sharded (FSDP2) policy ``model.safetensors`` and ``optimizer.pt`` give way to ``sharded/``,
a ``torch.distributed.checkpoint`` folder of the same trainable parameters and optimiser state
that every process writes its shards into (and that loads on any number of processes).

A checkpoint is written into a temporary folder and renamed into place, and ``latest`` is replaced
atomically after that, so a crash mid-write never leaves a corrupt latest checkpoint. Saving a step
that is already saved is a no-op (nothing that ``latest`` names is ever removed first); resume
falls back to the newest complete checkpoint when ``latest`` is missing, names a folder outside
the checkpoints directory, or names an incomplete one; ``keep`` prunes the oldest.
"""

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rlzoo.errors import ConfigError
from rlzoo.trainer import sharding


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


_FILES = ("model.safetensors", "optimizer.pt")
SHARDED = "sharded"  # the DCP folder of a sharded policy's checkpoint; .metadata is written last


def complete(path: Path) -> bool:
    """Whether ``path`` holds a whole checkpoint (``state.json`` is written last, before the rename)."""
    weights = all((path / f).is_file() for f in _FILES) or (path / SHARDED / ".metadata").is_file()
    return weights and (path / "state.json").is_file() and any(path.glob("rng-*.pt"))


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (all of them, or only the adapters with LoRA), by name, for saving."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    root: Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rank: int,
    is_main: bool,
    barrier: Any,
    keep: int | None = None,
) -> Path:
    """Write the checkpoint of ``step``; every process writes its RNG state (and, sharded, its shards),
    the main one the rest.

    Refuses (ConfigError) when a weight is not finite: a diverged model is never saved.
    """
    name = f"step-{step:06d}"
    final = root / name
    if complete(final):
        return final  # this step is saved already
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise ConfigError(
            f"checkpoint of step {step}: {len(bad)} parameter(s) hold NaN or inf (first: {bad[0]}); not saved"
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{name}.tmp"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")
    sharded = sharding.is_sharded(model)
    if sharded:
        sharding.save_sharded(model, optimizer, tmp / SHARDED)
    if is_main:
        if not sharded:
            save_file(trainable_state(model), str(tmp / "model.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
    barrier()
    if is_main:
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover of an earlier try, never `latest`
        os.replace(tmp, final)
        _atomic_write_text(root / "latest", name)
        if keep is not None:
            for old in _complete_checkpoints(root)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _complete_checkpoints(root: Path) -> list[Path]:
    """The complete ``step-*`` checkpoints under ``root``, oldest first."""
    return sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp") and complete(p))


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint ``latest`` names, if it is a complete one inside ``root``; else the newest complete one."""
    pointer = root / "latest"
    if pointer.is_file():
        name = pointer.read_text().strip()
        path = root / name
        if name and "/" not in name and "\\" not in name and name not in (".", "..") and complete(path):
            return path
    found = _complete_checkpoints(root) if root.is_dir() else []
    return found[-1] if found else None


def load_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rank: int,
) -> dict[str, Any]:
    """Restore model, optimiser and this process's RNG; return the trainer state (step, data position).

    A sharded checkpoint loads into a sharded or an unsharded model; a plain one into a plain one only.
    """
    in_shards = (path / SHARDED / ".metadata").is_file()
    needed = ["state.json", f"rng-{rank}.pt", *([] if in_shards else _FILES)]
    missing = [f for f in needed if not (path / f).exists()]
    if missing:
        raise ConfigError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    if in_shards:
        sharding.load_sharded(model, optimizer, path / SHARDED)
        return _restore_rest(path, rank)
    if sharding.is_sharded(model):
        raise ConfigError(f"checkpoint {path} was written without FSDP; resume it with the setup that wrote it "
                          "(a sharded checkpoint holds a sharded/ folder)")
    saved = load_file(str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    missing = sorted(set(trainable_state(model)) - set(saved))
    if missing:
        raise ConfigError(
            f"checkpoint {path} does not hold {len(missing)} of the parameters this model trains (first: "
            f"{missing[0]}); it was written for another model or another set of adapters"
        )
    model.load_state_dict(saved, strict=False)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return _restore_rest(path, rank)


def _restore_rest(path: Path, rank: int) -> dict[str, Any]:
    set_rng_state(torch.load(path / f"rng-{rank}.pt", weights_only=True))
    return json.loads((path / "state.json").read_text())


def save_pretrained(model: torch.nn.Module, directory: Path, *, is_main: bool, barrier: Any) -> None:
    """``save_pretrained`` of the whole model (with LoRA: the adapter) into ``directory`` by the main
    process; a sharded model is gathered first (every process must call this)."""
    weights = sharding.full_state_dict(model) if sharding.is_sharded(model) else None
    if is_main:
        model.save_pretrained(directory, **({} if weights is None else {"state_dict": weights}))
    barrier()
