"""The warm-start script: schedule, batches, determinism, and an end-to-end run on a tiny budget."""

import json
import math
import random
from dataclasses import asdict, replace

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.tasks import load_model
from rlzoo.tasks.arithmetic import PROMPT_LENGTH, arithmetic_correct, sample_operands, solution_trace
from rlzoo.tasks.model import ASSETS, build_tokenizer
from rlzoo.tasks.warmstart import (
    TASK_DEFAULTS,
    TASK_INIT,
    WarmStartConfig,
    lr_factor,
    main,
    trace_batches,
    train,
)


def test_lr_schedule_hand_worked() -> None:
    config = WarmStartConfig(steps=150, warmup_steps=50, min_lr_ratio=0.1)
    assert lr_factor(0, config) == pytest.approx(1 / 50, abs=1e-15)  # linear warm-up from 1/50
    assert lr_factor(49, config) == pytest.approx(1.0, abs=1e-15)
    assert lr_factor(50, config) == pytest.approx(1.0, abs=1e-15)  # cosine starts at the peak
    # a third of the 99 decay steps (50 -> 149): 0.1 + 0.9 * (1 + cos(pi/3)) / 2 = 0.1 + 0.45 * 1.5
    assert lr_factor(50 + 33, config) == pytest.approx(0.775, abs=1e-12)
    assert lr_factor(149, config) == pytest.approx(0.1, abs=1e-15)  # the last step ends at 10%
    assert lr_factor(75, config) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 25 / 99)), abs=1e-12)


def test_defaults_are_the_shipped_recipe() -> None:
    shipped = json.loads((ASSETS / "warmstart.json").read_text())
    assert shipped["config"] == asdict(WarmStartConfig())
    assert shipped["history"][-1]["step"] == 550  # stopped by the accuracy check


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="steps"):
        WarmStartConfig(steps=0)
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        WarmStartConfig(min_lr_ratio=1.5)


def test_batches_hold_correct_traces_with_loss_on_completions_only() -> None:
    tokenizer = build_tokenizer()
    batches = trace_batches(tokenizer, WarmStartConfig(batch_size=16, bucket=4), random.Random(0))
    for _ in range(8):
        ids, labels = next(batches)
        assert ids.shape[0] == 16 and labels.shape == ids.shape
        prompt = PROMPT_LENGTH + 1  # BOS + 9 characters, never in the loss
        assert ids[:, 0].eq(tokenizer.bos_token_id).all() and labels[:, :prompt].eq(-100).all()
        learned = labels != -100
        # every row's loss covers its whole completion through EOS, then only padding follows
        last = learned.int().cumsum(1).argmax(1)
        assert ids[torch.arange(16), last].eq(tokenizer.eos_token_id).all()
        assert torch.equal(labels[learned], ids[learned])
        assert ids[~learned & (torch.arange(ids.shape[1]) >= prompt)].eq(tokenizer.pad_token_id).all()
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        answers = [str(sum(map(int, t[: PROMPT_LENGTH - 1].split("+")))) for t in texts]
        completions = [t[PROMPT_LENGTH:] for t in texts]
        assert arithmetic_correct([""] * 16, completions, answers) == [1.0] * 16


def test_length_bucketing_narrows_the_spread_within_a_batch() -> None:
    tokenizer = build_tokenizer()

    def mean_spread(bucket: int) -> float:
        batches = trace_batches(tokenizer, WarmStartConfig(batch_size=16, bucket=bucket), random.Random(1))
        spreads = []
        for _ in range(16):
            lengths = (next(batches)[1] != -100).sum(1)
            spreads.append((lengths.max() - lengths.min()).item())
        return sum(spreads) / len(spreads)

    # completions run from 22 to ~80 tokens; a random batch of 16 spans ~35 of them
    assert mean_spread(8) < 0.5 * mean_spread(1)


def test_training_is_deterministic_per_seed() -> None:
    config = WarmStartConfig(steps=2, seed=0, warmup_steps=1, batch_size=8, eval_every=100, eval_size=1)
    logs: list[str] = []
    first, _, history = train(config, log=logs.append)
    second, _, _ = train(config, log=lambda _: None)
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
    assert len(history) == 1 and history[0]["step"] == 2 and logs[0].startswith("step     2  loss")
    other, _, _ = train(replace(config, seed=1), log=lambda _: None)
    assert not torch.equal(other.model.embed_tokens.weight, first.model.embed_tokens.weight)


def test_script_end_to_end_on_a_tiny_budget(tmp_path, capsys) -> None:
    out = tmp_path / "warm"
    args = [
        "--steps",
        "3",
        "--seed",
        "0",
        "--batch-size",
        "8",
        "--warmup-steps",
        "1",
        "--eval-size",
        "2",
        "--threads",
        "0",
    ]
    assert main([*args, "--out", str(out), "--final-eval", "2"]) == 0
    printed = capsys.readouterr().out
    assert "step     3  loss" in printed and "sampled_g8 reward" in printed and " accuracy " in printed
    model, tokenizer = load_model(out)
    assert tokenizer.padding_side == "left" and sum(p.numel() for p in model.parameters()) == 526_912
    report = json.loads((out / "warmstart.json").read_text())
    assert report["config"]["steps"] == 3 and set(report["sampled_g8"]) >= {"accuracy", "mixed", "all_wrong"}


def test_accuracy_check_stops_training() -> None:
    # any accuracy is >= 0, so the first check (step 2 of 6) stops the run
    config = WarmStartConfig(
        steps=6, warmup_steps=1, batch_size=4, eval_every=2, eval_size=1, stop_accuracy=0.0
    )
    logs: list[str] = []
    _, _, history = train(config, log=logs.append)
    assert [h["step"] for h in history] == [2]
    assert logs[-1].startswith("stopping at step 2: greedy check accuracy")


def test_the_default_tasks_traces_are_drawn_as_before() -> None:
    # the stream the shipped warm start was trained on: triples first, then one trace each, sorted by length
    config = WarmStartConfig(batch_size=8, bucket=2)
    tokenizer = build_tokenizer()
    rng = random.Random(5)
    triples = sample_operands("train", 16, rng, distinct=False)
    examples = sorted(((f"{a}+{b}+{c}=", solution_trace(a, b, c, rng)) for a, b, c in triples), key=lambda e: len(e[1]))
    batches = [examples[:8], examples[8:]]
    rng.shuffle(batches)
    new = trace_batches(tokenizer, config, random.Random(5))
    for batch in batches:
        ids, _ = next(new)
        assert tokenizer.batch_decode(ids, skip_special_tokens=True) == [p + c for p, c in batch]


def test_the_second_tasks_warm_start_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "chain4"
    args = ["--task", "chain4", "--steps", "2", "--batch-size", "8", "--warmup-steps", "1", "--eval-size", "2",
            "--threads", "0", "--init", "none"]
    assert main([*args, "--out", str(out), "--final-eval", "2"]) == 0
    printed = capsys.readouterr().out
    assert "step(s) written" in printed
    report = json.loads((out / "warmstart.json").read_text())
    assert report["task"] == "chain4" and report["init"] is None and report["config"]["stop_accuracy"] is None
    assert sum(r["share"] for r in report["routes"].values()) == pytest.approx(1.0)
    model, _ = load_model(out)
    assert sum(p.numel() for p in model.parameters()) == 526_912
    with pytest.raises(SystemExit, match="default task's assets stay as shipped"):
        main(["--ship", "--steps", "1"])


def test_task_defaults() -> None:
    assert TASK_DEFAULTS["arithmetic3"] == WarmStartConfig()
    chain = TASK_DEFAULTS["chain4"]
    assert chain.stop_accuracy is None and TASK_INIT == {"chain4": "shipped"}


def test_ship_writes_one_weights_file_the_task_loads(tmp_path, monkeypatch) -> None:
    import rlzoo.tasks.warmstart as warmstart
    from rlzoo.tasks.model import load_model as load

    monkeypatch.setattr(warmstart, "ASSETS", tmp_path)
    args = ["--task", "chain4", "--ship", "--steps", "1", "--batch-size", "4", "--warmup-steps", "1",
            "--eval-size", "1", "--final-eval", "0", "--init", "none"]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain4.safetensors", "chain4.warmstart.json"]
    model, _ = load(None, weights=tmp_path / "chain4.safetensors")
    shipped, _ = load()
    assert not torch.equal(model.model.embed_tokens.weight, shipped.model.embed_tokens.weight)
    assert model.lm_head.weight is model.model.embed_tokens.weight
