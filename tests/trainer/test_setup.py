"""What the trainer refuses or fixes before its first step: models by path or hub id, tokenizers,
chat data without a template, recipes that need a verdict nobody gives."""

import logging
import time

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.trainer import Trainer
from tests.trainer.helpers import REWARDS, ScriptedGenerator, config, rows, tiny


def trl_style(prompts, completions, answer, **kwargs):
    """A TRL reward function: no rlzoo attributes."""
    return [float(c.split("#")[-1] == a) for c, a in zip(completions, answer, strict=True)]


@pytest.mark.parametrize("recipe", ["agpo", "reinforce_rej"])
def test_a_recipe_that_needs_a_verdict_refuses_until_the_verifier_is_named(recipe: str, tmp_path) -> None:
    model, tok = tiny()
    with pytest.raises(ConfigError, match=r"verifier=\.\.\. \(one of trl_style"):
        Trainer(model, tok, recipe, rows(8), [trl_style], config(tmp_path))
    trainer = Trainer(model, tok, recipe, rows(8), [trl_style], config(tmp_path, steps=1, verifier="trl_style"),
                      generator=ScriptedGenerator())
    (h,) = trainer.train()
    assert h["reward/accuracy"] == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="verifier='nope' is not one of the reward functions"):
        Trainer(model, tok, recipe, rows(8), [trl_style], config(tmp_path, verifier="nope"))


def test_chat_data_needs_a_chat_template(tmp_path) -> None:
    model, tok = tiny()
    chat = [{"prompt": [{"role": "user", "content": "1+2"}], "answer": "3"}]
    with pytest.raises(ConfigError, match=r"chat prompts .* no chat template"):
        Trainer(model, tok, "grpo", chat, REWARDS, config(tmp_path))


def test_a_model_directory_loads_in_the_dtype_asked_for(tmp_path) -> None:
    model, tok = tiny()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    trainer = Trainer(str(tmp_path / "m"), None, "grpo", rows(8), REWARDS, config(tmp_path, dtype="bfloat16"))
    assert next(trainer.model.parameters()).dtype == torch.bfloat16


def test_a_model_directory_without_a_tokenizer_says_so(tmp_path) -> None:
    model, _ = tiny()
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"has no loadable tokenizer .*\(tokenizer.save_pretrained\)"):
        Trainer(str(tmp_path / "m"), None, "grpo", rows(8), REWARDS, config(tmp_path))


def test_an_unknown_hub_id_offline_fails_at_once_with_what_to_do(tmp_path, monkeypatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"hub is offline .*hf download nobody/no-such-model"):
        Trainer("nobody/no-such-model", None, "grpo", rows(8), REWARDS, config(tmp_path))
    assert time.perf_counter() - start < 20


def test_a_missing_pad_token_becomes_eos_with_one_warning(tmp_path, caplog) -> None:
    model, tok = tiny()
    tok.pad_token = None
    with caplog.at_level(logging.WARNING, logger="rlzoo.trainer"):
        Trainer(model, tok, "grpo", rows(8), REWARDS, config(tmp_path))
    assert tok.pad_token == tok.eos_token
    assert caplog.text.count("no pad token") == 1
