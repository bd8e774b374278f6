"""What the collector hands reward functions and the estimator: TRL's arguments, chat completions,
masked truncations, a greedy baseline for ReMax."""

import pytest
import torch

from rlzoo.tasks import arithmetic_correct
from rlzoo.trainer import Trainer
from rlzoo.trainer.collect import TrainerState
from tests.trainer.helpers import REWARDS, ScriptedGenerator, config, rows, tiny

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}={% endif %}"


def chat_rows(n: int) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": r["prompt"].rstrip("=")}], "answer": r["answer"]} for r in rows(n)]


def test_chat_prompts_reach_reward_functions_as_trl_passes_them(tmp_path) -> None:
    seen = {}

    def reward(prompts, completions, completion_ids, answer, trainer_state, log_extra, log_metric, **kwargs):
        seen.update(prompts=prompts, completions=completions, ids=completion_ids, state=trainer_state)
        log_extra("column", [1] * len(completions))
        log_metric("metric", 1.0)
        texts = [c[0]["content"] for c in completions]
        return arithmetic_correct([""] * len(texts), texts, answer)

    model, tok = tiny()
    tok.chat_template = TEMPLATE
    data = chat_rows(8)
    cfg = config(tmp_path, steps=1, reward_timeout=None)  # in this process, so `seen` is filled here
    (h,) = Trainer(model, tok, "grpo", data, [reward], cfg, generator=ScriptedGenerator()).train()
    assert all(isinstance(p, list) and p[0]["role"] == "user" for p in seen["prompts"])
    assert all(c[0]["role"] == "assistant" and isinstance(c[0]["content"], str) for c in seen["completions"])
    # completion ids: the sampled tokens, EOS included, as plain lists
    assert all(isinstance(ids, list) and ids[-1] == tok.eos_token_id for ids in seen["ids"])
    assert tok.decode(seen["ids"][0], skip_special_tokens=True) == seen["completions"][0][0]["content"]
    assert seen["state"] == TrainerState(global_step=0, max_steps=1, epoch=0.5)
    assert h["reward/mean"] == pytest.approx(0.25)  # the scripted first completion of 4 is right


def test_truncated_completions_can_count_nowhere(tmp_path) -> None:
    def run(**changes) -> dict:
        model, tok = tiny()
        cfg = config(tmp_path, steps=1, max_completion_length=1, **changes)  # nothing reaches its EOS
        (h,) = Trainer(model, tok, "grpo", rows(8), (length_reward,), cfg, generator=ScriptedGenerator()).train()
        return h

    assert run()["update/skipped"] == 0.0
    assert run(mask_truncated_completions=True)["update/skipped"] == 1.0


def length_reward(prompts, completions, **kwargs):
    return [float(len(c)) + (i % 2) for i, c in enumerate(completions)]


def test_remax_gets_the_reward_of_one_greedy_completion_per_prompt(tmp_path) -> None:
    calls = []

    class Recording(ScriptedGenerator):
        def __call__(self, model, tokenizer, prompts, **kwargs):
            calls.append((kwargs["group_size"], kwargs["temperature"]))
            return super().__call__(model, tokenizer, prompts, **kwargs)

    model, tok = tiny()
    before = [p.detach().clone() for p in model.parameters()]
    (h,) = Trainer(model, tok, "remax", rows(8), REWARDS, config(tmp_path, steps=1), generator=Recording()).train()
    assert calls == [(4, 1.0), (1, 0.0)]  # the group, then one greedy completion per prompt
    # the scripted greedy completion (j = 0) answers one less than the sum: baseline 0, so A = r in {0, 1}
    assert h["adv/max"] == 1.0 and h["adv/min"] == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
