"""evaluate() and its helpers, on the shipped model."""

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.tasks import arithmetic_correct, evaluate, generate_completions, load_model
from rlzoo.tasks.arithmetic import make_split


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def test_batched_generation_matches_one_prompt_at_a_time(shipped) -> None:
    model, tokenizer = shipped
    prompts = [row["prompt"] for row in make_split("eval", 6, seed=4)]
    batched, lengths, finished = generate_completions(model, tokenizer, prompts, batch_size=6)
    single = [generate_completions(model, tokenizer, [p], batch_size=1)[0][0] for p in prompts]
    assert batched == single
    # lengths count EOS: the decoded text (special tokens dropped) is one shorter when finished
    assert lengths.tolist() == [len(t) + int(f) for t, f in zip(batched, finished.tolist(), strict=True)]


def test_evaluate_agrees_with_a_loop_oracle(shipped) -> None:
    model, tokenizer = shipped
    rows = make_split("eval", 12, seed=5)
    torch.manual_seed(11)  # what evaluate(seed=11) does inside
    texts, lengths, _ = generate_completions(
        model, tokenizer, [r["prompt"] for r in rows], num_samples=4, greedy=False
    )
    metrics = evaluate(model, tokenizer, rows, greedy=False, num_samples=4, seed=11)
    groups = [
        [arithmetic_correct([""], [texts[4 * i + j]], [r["answer"]])[0] for j in range(4)]
        for i, r in enumerate(rows)
    ]
    assert metrics["accuracy"] == pytest.approx(sum(map(sum, groups)) / 48, abs=1e-12)
    assert metrics["mean_length"] == pytest.approx(lengths.double().mean().item(), abs=1e-12)
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
    with pytest.raises(ConfigError, match="examples is empty"):
        evaluate(model, tokenizer, [])
