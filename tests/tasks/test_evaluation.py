"""evaluate() on the shipped model: the trainer's one evaluation, with the task's reward."""

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.tasks import arithmetic_correct, evaluate, load_model
from rlzoo.tasks.arithmetic import make_split
from rlzoo.trainer import HFGenerator
from rlzoo.trainer.engines.base import encode_prompts


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def test_batches_of_completions_do_not_change_greedy_results(shipped) -> None:
    model, tokenizer = shipped
    rows = make_split("eval", 6, seed=4)
    whole = evaluate(model, tokenizer, rows, batch_size=6)
    one_by_one = evaluate(model, tokenizer, rows, batch_size=1)
    assert whole == one_by_one
    assert set(whole) == {"reward", "length", "truncated", "accuracy", "all_correct", "all_wrong", "mixed"}


def test_evaluate_agrees_with_a_loop_oracle(shipped) -> None:
    model, tokenizer = shipped
    rows = make_split("eval", 12, seed=5)
    torch.manual_seed(11)  # what evaluate(seed=11) does inside
    prompts = encode_prompts(tokenizer, [r["prompt"] for r in rows], model.device)
    rollout = HFGenerator()(model, tokenizer, prompts, group_size=4, max_new_tokens=96, temperature=1.0, top_p=1.0)
    texts, lengths = rollout.texts, rollout.lengths
    metrics = evaluate(model, tokenizer, rows, greedy=False, num_samples=4, seed=11)
    groups = [
        [arithmetic_correct([""], [texts[4 * i + j]], [r["answer"]])[0] for j in range(4)]
        for i, r in enumerate(rows)
    ]
    assert metrics["accuracy"] == pytest.approx(sum(map(sum, groups)) / 48, abs=1e-12)
    assert metrics["length"] == pytest.approx(lengths.double().mean().item(), abs=1e-12)
    assert metrics["all_correct"] == pytest.approx(sum(all(g) for g in groups) / 12, abs=1e-12)
    assert metrics["all_wrong"] == pytest.approx(sum(not any(g) for g in groups) / 12, abs=1e-12)
    assert metrics["all_correct"] + metrics["all_wrong"] + metrics["mixed"] == pytest.approx(1.0, abs=1e-12)


def test_evaluate_keeps_the_callers_rng_and_mode(shipped) -> None:
    model, tokenizer = shipped
    rows = make_split("eval", 4, seed=6)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    model.train()
    first = evaluate(model, tokenizer, rows, greedy=False, num_samples=2, seed=3)
    assert torch.equal(torch.rand(3), expected)
    assert model.training
    model.eval()
    assert evaluate(model, tokenizer, rows, greedy=False, num_samples=2, seed=3) == first


def test_evaluate_refuses_greedy_groups_and_no_examples(shipped) -> None:
    model, tokenizer = shipped
    with pytest.raises(ConfigError, match="num_samples=4"):
        evaluate(model, tokenizer, make_split("eval", 2), greedy=True, num_samples=4)
    with pytest.raises(ConfigError, match="no rows"):
        evaluate(model, tokenizer, [])
