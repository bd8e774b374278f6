"""The generic trainer end to end on tiny models built from a config."""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import rlzoo
from rlzoo.cli import KINDS, registry
from rlzoo.errors import ConfigError
from rlzoo.recipes import RECIPES
from rlzoo.tasks import arithmetic_correct
from rlzoo.trainer import Trainer
from rlzoo.trainer.checkpoint import latest_checkpoint
from tests.trainer.helpers import REWARDS, ScriptedGenerator, config, rows, tiny

ROOT = Path(__file__).resolve().parents[2]


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", RECIPES.names())
def test_two_steps_of_every_recipe(name: str, tmp_path) -> None:
    model, tok = tiny()
    before = params(model)
    trainer = Trainer(model, tok, name, rows(16), REWARDS, config(tmp_path), generator=ScriptedGenerator())
    history = trainer.train()
    assert [h["step"] for h in history] == [1, 2]
    for h in history:
        assert all(isinstance(v, float) and v == v for k, v in h.items() if k != "step"), h
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed, f"recipe {name} did not change any parameter"
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 2


def test_real_generation_and_evaluation(tmp_path) -> None:
    model, tok = tiny()
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, config(tmp_path, steps=1), eval_dataset=rows(4, seed=1))
    (h,) = trainer.train()
    assert 1 <= h["length/mean"] <= 12 and 0 <= h["length/truncated_frac"] <= 1
    assert h["time/generate"] > 0 and h["tokens_per_s"] > 0
    ev = trainer.evaluate()
    assert {"eval/greedy/reward", "eval/greedy/length", "eval/greedy/accuracy", "eval/greedy/truncated"} <= set(ev)


def _one_update(tmp_path, micro_batch_size: int, share_prompts: bool = True) -> list[torch.Tensor]:
    model, tok = tiny()
    before = params(model)
    cfg = config(tmp_path / f"{micro_batch_size}-{share_prompts}", steps=1, optimizer="sgd", learning_rate=1.0,
                 micro_batch_size=micro_batch_size, max_grad_norm=None, share_prompts=share_prompts)
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator())
    assert trainer.logprobs.share_prompts == (micro_batch_size // 2 if share_prompts else 0)
    trainer.train()
    return [a.detach() - b for a, b in zip(model.parameters(), before, strict=True)]


def test_micro_batch_size_does_not_change_the_update(tmp_path) -> None:
    whole = _one_update(tmp_path, 16)
    assert max(float(d.abs().max()) for d in whole) > 1e-4  # something was learned
    for size in (1, 2):
        split = _one_update(tmp_path, size)
        for a, b in zip(whole, split, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_prompts_run_once_per_group_give_the_same_update(tmp_path) -> None:
    shared, unshared = _one_update(tmp_path, 16), _one_update(tmp_path, 16, share_prompts=False)
    for a, b in zip(shared, unshared, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_the_top_entropy_threshold_is_the_steps_whatever_the_micro_batches(tmp_path) -> None:
    recipe = rlzoo.recipes.build("grpo", selectors=({"name": "top_entropy", "rho": 0.3},))

    def update(size: int) -> list[torch.Tensor]:
        model, tok = tiny()
        before = params(model)
        cfg = config(tmp_path / str(size), steps=1, optimizer="sgd", learning_rate=1.0, micro_batch_size=size,
                     max_grad_norm=None)
        Trainer(model, tok, recipe, rows(8), REWARDS, cfg, generator=ScriptedGenerator()).train()
        return [a.detach() - b for a, b in zip(model.parameters(), before, strict=True)]

    whole, split = update(16), update(3)
    assert max(float(d.abs().max()) for d in whole) > 1e-5
    for a, b in zip(whole, split, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_mini_batches_are_successive_optimizer_steps_on_whole_groups(tmp_path) -> None:
    """A vanilla policy gradient (no ratio) with per-group advantages: two mini-batches of one step
    are exactly two steps on half the prompts each (the data order is the same)."""
    recipe = rlzoo.recipes.build("custom", advantage="grpo", loss="reinforce", aggregation="token_mean")

    def run(out: str, **changes) -> list[dict]:
        model, tok = tiny()
        cfg = config(tmp_path / out, optimizer="sgd", learning_rate=1.0, max_grad_norm=None, micro_batch_size=3,
                     **changes)
        history = Trainer(model, tok, recipe, rows(8), REWARDS, cfg, generator=ScriptedGenerator()).train()
        return [p.detach() for p in model.parameters()], history

    split, (h,) = run("split", steps=1, prompts_per_step=4, mini_batches=2)
    halves, _ = run("halves", steps=2, prompts_per_step=2)
    assert h["update/optimizer_steps"] == 2.0
    for a, b in zip(split, halves, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_later_mini_batches_are_off_policy_so_the_clip_binds(tmp_path) -> None:
    model, tok = tiny()
    cfg = config(tmp_path, steps=1, prompts_per_step=4, mini_batches=4, optimizer="sgd", learning_rate=5.0)
    (h,) = Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator()).train()
    assert h["update/optimizer_steps"] == 4.0 and h["clip/low"] + h["clip/high"] > 0
    with pytest.raises(ConfigError, match="mini_batches=5 must be <= prompts_per_step=4"):
        config(tmp_path, prompts_per_step=4, mini_batches=5)


def length_reward(prompts, completions, **kwargs):
    """A reward that varies with the sampled text, so a random model still learns something."""
    return [float(len(c) % 3) for c in completions]


def test_resume_continues_exactly(tmp_path) -> None:
    def run(steps: int, out: str, resume: bool = False) -> list[dict]:
        model, tok = tiny()
        cfg = config(tmp_path, steps=steps, output_dir=str(tmp_path / out), save_every=2, max_completion_length=8)
        return Trainer(model, tok, "grpo", rows(8), (length_reward,), cfg).train(resume=resume)

    straight = run(4, "a")
    run(2, "b")
    resumed = run(4, "b", resume=True)
    assert [h["step"] for h in resumed] == [3, 4]
    for want, got in zip(straight[2:], resumed, strict=True):
        for key in ("reward/mean", "length/mean", "loss/total", "adv/std"):
            assert got[key] == want[key], key
    logged = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]


SIGINT_SCRIPT = """
import sys
from rlzoo.tasks import arithmetic_correct
from tests.trainer.helpers import REWARDS, ScriptedGenerator, rows, tiny
from rlzoo.trainer import Trainer, TrainConfig
model, tok = tiny()
cfg = TrainConfig(steps=100000, prompts_per_step=4, group_size=4, max_completion_length=8,
                  output_dir=sys.argv[1], progress=False, save_every=0)
Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator()).train()
print("clean exit")
"""


def test_sigint_saves_a_loadable_checkpoint(tmp_path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, str(out)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "clean exit" in stdout
    ckpt = latest_checkpoint(out / "checkpoints")
    assert ckpt is not None
    model, tok = tiny(seed=1)
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, config(tmp_path, output_dir=str(out)))
    trainer.resume()
    assert trainer.step == json.loads((ckpt / "state.json").read_text())["step"] >= 1


def always_right(prompts, completions, **kwargs):
    return [1.0] * len(completions)


always_right.verifies_correctness = True


def test_all_groups_filtered_is_a_logged_noop(tmp_path) -> None:
    model, tok = tiny()
    before = params(model)
    cfg = config(tmp_path, steps=1)
    (h,) = Trainer(model, tok, "reinforce_rej", rows(8), (always_right,), cfg, generator=ScriptedGenerator()).train()
    assert h["update/skipped"] == 1.0
    assert h["groups/kept_frac"] == 0.0 and h["groups/all_equal_frac"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def even_first_term_only(prompts, completions, answer, **kwargs):
    """The scripted answers, except that every completion of a prompt with an odd first term is wrong."""
    right = arithmetic_correct(prompts, completions, answer)
    return [r if int(p.split("+")[0]) % 2 == 0 else 0.0 for p, r in zip(prompts, right, strict=True)]


even_first_term_only.verifies_correctness = True


def test_dynamic_sampling_refills_the_batch_with_mixed_groups(tmp_path, caplog) -> None:
    model, tok = tiny()
    data = rows(40)
    trainer = Trainer(model, tok, "dapo", data, (even_first_term_only,), config(tmp_path, steps=1),
                      generator=ScriptedGenerator())
    (h,) = trainer.train()
    assert h["groups/rounds"] >= 2 and h["groups/trained"] == 4.0  # all-wrong groups were replaced
    assert not caplog.records

    # no mixed group anywhere: the rounds run out, the step goes on with what it has and says so
    trainer = Trainer(model, tok, "dapo", data, (always_right,), config(tmp_path, steps=1), generator=ScriptedGenerator())
    (h,) = trainer.train()
    assert h["groups/rounds"] == 4.0 and h["update/skipped"] == 1.0
    assert "only 0 of 4 groups survived the filters after 3 refill rounds" in caplog.text
    assert "--set refill_rounds=6" in caplog.text


def test_group_of_one_fails_before_training_with_advice(tmp_path) -> None:
    model, tok = tiny()
    with pytest.raises(ConfigError, match="use group_size >= 2"):
        Trainer(model, tok, "grpo", rows(4), REWARDS, config(tmp_path, group_size=1))


def test_bad_dataset_is_explained(tmp_path) -> None:
    model, tok = tiny()
    with pytest.raises(ConfigError, match="rows must be dicts with a 'prompt' field"):
        Trainer(model, tok, "grpo", [{"question": "1+1="}], REWARDS, config(tmp_path))


def test_trainer_source_names_no_component() -> None:
    names = {n for kind in KINDS for n in registry(kind).names()}
    for path in (ROOT / "rlzoo" / "trainer").glob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }
        used = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}
        used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not (used & names), f"{path.name} names {sorted(used & names)}"


def test_public_names() -> None:
    assert rlzoo.Trainer is Trainer
    assert rlzoo.TrainConfig().group_size == 8


def test_learning_rate_schedule_is_a_function_of_the_step(tmp_path) -> None:
    model, tok = tiny()
    cfg = config(tmp_path, steps=3, warmup_steps=1, lr_schedule="cosine", learning_rate=0.01)
    history = Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator()).train()
    # warm-up: 0.01 * (0+1)/(1+1); then cosine over 2 steps: progress 0 -> factor 1, progress 1/2 -> factor 1/2
    assert [h["lr"] for h in history] == pytest.approx([0.005, 0.01, 0.005], rel=1e-12)


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one precision per process: forget it around a test that needs another."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_autocast_on_cpu_trains_and_the_kl_starts_at_zero(tmp_path, fresh_accelerate_state) -> None:
    """The reference model runs under the same autocast as the policy: identical log-probs at step 1."""
    model, tok = tiny()
    cfg = config(tmp_path, steps=2, mixed_precision="bf16", learning_rate=1e-2)
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator())
    first, second = trainer.train()
    assert first["loss/kl"] == 0.0
    assert second["loss/kl"] > 0.0  # the policy moved away from the reference
    assert trainer.accelerator.mixed_precision == "bf16"


def test_gdpo_reward_aggregation_reaches_the_scorer(tmp_path) -> None:
    model, tok = tiny()
    cfg = config(tmp_path, steps=1, reward_aggregation="normalize_then_sum", reward_timeout=None)
    trainer = Trainer(model, tok, "grpo", rows(8), (arithmetic_correct, length_reward), cfg,
                      generator=ScriptedGenerator())
    assert trainer.scorer.combine == "normalize_then_sum"
    (h,) = trainer.train()
    assert abs(h["reward/mean"]) < 1e-6  # group-normalised rewards sum to zero in every group
