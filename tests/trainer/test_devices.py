"""Device discipline, checked on CPU: nothing a step runs creates a tensor on an implicit device.

A device bug cannot show on a CPU-only machine (the default device is the training device), so
this test records every tensor factory called from rlzoo's code during whole steps, evaluation and
a save, and fails on any that names no device: each must name one (the training device, or CPU
where the data is host-side by design, like the scorer's rewards before they move) or copy one
from a tensor (``new_zeros``, ``zeros_like``).
"""

import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

import rlzoo
from rlzoo.trainer import HFGenerator, LeanGenerator, Trainer
from tests.trainer.helpers import REWARDS, ScriptedGenerator, config, rows, tiny

FACTORIES = {torch.tensor, torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace,
             torch.randperm, torch.eye, torch.rand, torch.randn, torch.randint}


class ImplicitDevices(TorchFunctionMode):
    """Records ``module:line`` of rlzoo code that calls a tensor factory without ``device=``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None:
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith("torch"):
                frame = frame.f_back
            module = "" if frame is None else frame.f_globals.get("__name__", "")
            if module.startswith("rlzoo"):
                self.calls.add(f"{module}:{frame.f_lineno} {func.__name__}")
        return func(*args, **kwargs)


CASES = {
    "grpo_minibatches": ("grpo", ScriptedGenerator(), {"mini_batches": 2}),
    "dapo_refill": ("dapo", ScriptedGenerator(), {}),
    "gvpo": ("gvpo", ScriptedGenerator(), {}),
    "reward_kl": (rlzoo.recipes.build("custom", reward_kl="k1", reward_kl_coef=0.1), ScriptedGenerator(), {}),
    "hf_generate": ("agpo", HFGenerator(), {}),
    "lean_generate": ("reinforce_rej", LeanGenerator(), {}),
}


@pytest.mark.parametrize("case", CASES)
def test_a_step_names_the_device_of_every_tensor_it_creates(case: str, tmp_path) -> None:
    recipe, generator, changes = CASES[case]
    model, tok = tiny()
    trainer = Trainer(model, tok, recipe, rows(8), REWARDS, config(tmp_path, **changes), generator=generator,
                      eval_dataset=rows(4, seed=1))
    with ImplicitDevices() as seen:
        trainer.train_step()
        trainer.evaluate(greedy=False)
        trainer.save()
    assert not seen.calls, sorted(seen.calls)


def test_the_check_sees_an_implicit_device() -> None:
    with ImplicitDevices() as seen:
        rlzoo.trainer.engines.base.completion_mask(torch.zeros(1, 2, dtype=torch.long), (0,))
        from rlzoo.trainer import setup

        setup.check_recipe_fits_config("grpo", rlzoo.recipes.build("grpo").build_parts(), rlzoo.TrainConfig(), 1)
    assert any("rlzoo.trainer.setup" in c for c in seen.calls)  # the probe: host-side, before any step
