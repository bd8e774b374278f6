"""build_generator: what ``generator="auto"`` picks, and says it picked."""

import logging

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlzoo.tasks import build_tokenizer
from rlzoo.trainer import HFGenerator, LeanGenerator, Trainer
from rlzoo.trainer.engines import build_generator
from tests.trainer.helpers import REWARDS, config, rows, tiny


def gpt2() -> GPT2LMHeadModel:
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=28, n_positions=32))


def test_auto_is_the_lean_loop_for_a_llama_on_cpu(caplog) -> None:
    model, _ = tiny()
    with caplog.at_level(logging.INFO, logger="rlzoo.trainer"):
        assert isinstance(build_generator("auto", model, device="cpu"), LeanGenerator)
    assert "generator auto: lean (model_type 'llama' on cpu" in caplog.text


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_auto_keeps_generate_off_cpu(device: str, caplog) -> None:
    """Only CPU was measured: elsewhere auto stays with Hugging Face generate (no device needed to decide)."""
    model, _ = tiny()
    with caplog.at_level(logging.INFO, logger="rlzoo.trainer"):
        assert isinstance(build_generator("auto", model, device=device), HFGenerator)
    assert f"generator auto: hf (training on {device}" in caplog.text


def test_auto_falls_back_to_generate_for_other_architectures(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="rlzoo.trainer"):
        assert isinstance(build_generator("auto", gpt2(), device=torch.device("cpu")), HFGenerator)
    assert "generator auto: hf (model_type 'gpt2' is not one the lean loop supports)" in caplog.text


def test_named_engines_are_built_as_named() -> None:
    model, _ = tiny()
    assert isinstance(build_generator("hf", model), HFGenerator)
    assert isinstance(build_generator("lean", model), LeanGenerator)
    assert isinstance(build_generator("auto", model), LeanGenerator)  # the model's device: cpu


def test_the_trainer_takes_auto_by_default(tmp_path) -> None:
    """A default config on CPU: the lean loop for the Llama-style tiny model, generate for GPT-2."""
    model, tok = tiny()
    assert isinstance(Trainer(model, tok, "grpo", rows(8), REWARDS, config(tmp_path)).generator, LeanGenerator)
    trainer = Trainer(gpt2(), build_tokenizer(), "grpo", rows(8), REWARDS, config(tmp_path))
    assert isinstance(trainer.generator, HFGenerator)
