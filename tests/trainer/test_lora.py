"""LoRA through peft: only the adapters train, the reference is the model with adapters off (no
copy), every engine samples from the adapted weights; gradient checkpointing changes nothing."""

import pytest
import torch
from safetensors.torch import load_file

from rlzoo.trainer import HFGenerator, LeanGenerator, Trainer
from rlzoo.trainer.engines.base import encode_prompts
from tests.trainer.helpers import REWARDS, ScriptedGenerator, config, rows, tiny

peft = pytest.importorskip("peft", reason="peft is not installed (pip install -e '.[lora]')")


def lora() -> "peft.LoraConfig":
    return peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def snapshot(model: torch.nn.Module, adapters: bool) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if ("lora_" in n) == adapters}


def test_only_the_adapters_train_and_the_reference_is_the_base_model(tmp_path) -> None:
    model, tok = tiny()
    cfg = config(tmp_path, steps=2, learning_rate=1e-2, save_every=1)
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator(), peft_config=lora())
    base, adapters = snapshot(trainer.model, False), snapshot(trainer.model, True)
    first, second = trainer.train()
    assert trainer.ref_model is None  # no second copy of the model
    assert first["loss/kl"] == 0.0 and second["loss/kl"] > 0.0  # the reference is the model, adapters off
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in base.items())  # base weights bit-identical
    assert any(not torch.equal(after[n], p) for n, p in adapters.items())
    saved = load_file(str(tmp_path / "run" / "checkpoints" / "step-000002" / "model.safetensors"))
    assert saved and all("lora_" in name for name in saved)  # the checkpoint holds the adapters


def test_adapters_train_with_several_passes(tmp_path) -> None:
    model, tok = tiny()
    cfg = config(tmp_path, steps=1, learning_rate=1e-2, passes=2)
    (h,) = Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator(), peft_config=lora()).train()
    assert h["update/optimizer_steps"] == 2.0 and h["loss/kl"] > 0.0  # the second pass moved off the reference


def test_resume_with_adapters_continues_exactly(tmp_path) -> None:
    def run(steps: int, out: str, resume: bool = False) -> list[dict]:
        model, tok = tiny()
        cfg = config(tmp_path, steps=steps, output_dir=str(tmp_path / out), save_every=2, learning_rate=1e-2)
        return Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator(),
                       peft_config=lora()).train(resume=resume)

    straight = run(3, "a")
    run(2, "b")
    (resumed,) = run(3, "b", resume=True)
    assert resumed["loss/total"] == straight[2]["loss/total"] and resumed["loss/kl"] == straight[2]["loss/kl"]


def test_the_lean_loop_samples_from_the_adapted_weights() -> None:
    model, tok = tiny()
    model = peft.get_peft_model(model, lora())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # adapters that change the outputs
    prompts = encode_prompts(tok, ["1+2=", "37+48+55=", "9+9="], torch.device("cpu"))
    kwargs = {"group_size": 1, "max_new_tokens": 6, "temperature": 0.0, "top_p": 1.0}
    lean = LeanGenerator()(model, tok, prompts, **kwargs).completion_ids
    assert torch.equal(lean, HFGenerator()(model, tok, prompts, **kwargs).completion_ids)
    with model.disable_adapter():
        plain = HFGenerator()(model, tok, prompts, **kwargs).completion_ids
    assert not torch.equal(lean, plain)


def test_gradient_checkpointing_gives_the_same_update(tmp_path) -> None:
    def update(checkpointing: bool) -> list[torch.Tensor]:
        model, tok = tiny()
        before = [p.detach().clone() for p in model.parameters()]
        cfg = config(tmp_path / str(checkpointing), steps=1, optimizer="sgd", learning_rate=1.0, max_grad_norm=None,
                     gradient_checkpointing=checkpointing)
        Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator()).train()
        assert model.model.gradient_checkpointing == checkpointing
        return [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]

    for a, b in zip(update(False), update(True), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
