"""The second embedded task: splits, traces with skipped partial sums, its warm start and its registration."""

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import asdict

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from jaxtyping import TypeCheckError

from rlzoo.errors import ConfigError
from rlzoo.tasks import CHAIN4, DEFAULT, TASKS, arithmetic_correct, get_task, load_model
from rlzoo.tasks.chain import (
    OPERANDS,
    PROMPT_LENGTH,
    SKIP_PROB,
    make_split,
    operands,
    sample_operands,
    solution_trace,
    split_size,
    steps_written,
    training_examples,
)
from rlzoo.tasks.model import ASSETS
from rlzoo.tasks.warmstart import TASK_DEFAULTS, TASK_INIT

PROMPT = re.compile(r"^([1-9]\d)\+([1-9]\d)\+([1-9]\d)\+([1-9]\d)=$")
# the default task's shipped files, as committed: the second task must leave them byte-identical
DEFAULT_ASSETS = {
    "config.json": "1aeb886757fa8573262573597a36ccd5b59bb9b4b493357ff8070a6eb3188e8f",
    "generation_config.json": "b3774c2596ef62cd2f3a08561715f3c8b423448d4f03f89fc62181c461218360",
    "model.safetensors": "4e3823d989914278cc992e7e9830e3ad4436a37dc9df1751c4faa335c019e27a",
    "tokenizer.json": "37884aa786bb0651283fcc10ea1e5b01978f7ec84ac0e19a1ea56fe472470647",
    "tokenizer_config.json": "6a22e48c6cd1a870b51f28eda92aa5280589bed9bdf0c46f83868afd15e68328",
    "warmstart.json": "e9830348b02fcd541cb76a0be1b1acd9b1f4f2913dd31290cde8d9fb1db32970",
}


def check_trace(ops: tuple[int, ...], trace: str) -> int:
    """Oracle: every step adds the running total (or the first operand) and the next operands; returns
    how many steps the trace writes."""
    *steps, last = trace.split(";")
    assert last == f"#{sum(ops)}", trace
    total, used = None, 0
    for step in steps:
        lhs, rhs = step.split("=")
        terms = [int(x) for x in lhs.split("+")]
        head, fresh = (terms[:1], terms[1:]) if total is not None else ([], terms)
        assert head == ([] if total is None else [total]), trace
        assert fresh == list(ops[used : used + len(fresh)]) and len(terms) >= 2, trace
        used += len(fresh)
        total = sum(terms)
        assert int(rhs) == total, trace
    assert used == OPERANDS, trace
    return len(steps)


def test_splits_are_disjoint_deterministic_and_well_formed() -> None:
    train, held_out = make_split("train", 2000, seed=3), make_split("eval", 2000, seed=3)
    assert train == make_split("train", 2000, seed=3) != make_split("train", 2000, seed=4)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held_out}
    for row in train[:200]:
        assert PROMPT.match(row["prompt"]) and len(row["prompt"]) == PROMPT_LENGTH
        assert int(row["answer"]) == sum(operands(row["prompt"]))
    assert split_size("eval") == 6_561_000 and split_size("train") == 59_049_000
    assert make_split("eval", 8) == make_split("eval", 200)[:8]  # a bigger eval set starts with the smaller
    with pytest.raises((ConfigError, TypeCheckError)):  # the shape check catches it first under pytest
        make_split("test", 1)


def test_the_permutation_maps_every_position_to_a_distinct_quadruple() -> None:
    rng = random.Random(0)
    picks = sample_operands("eval", 5000, rng)
    assert len(set(picks)) == 5000 and all(10 <= x <= 99 for ops in picks for x in ops)


@given(st.tuples(*[st.integers(10, 99)] * OPERANDS), st.integers(0, 2**32))
def test_traces_are_correct_whichever_steps_they_skip(ops: tuple[int, ...], seed: int) -> None:
    trace = solution_trace(ops, random.Random(seed))
    written = check_trace(ops, trace)
    assert steps_written(trace) == written and 1 <= written <= OPERANDS - 1
    assert arithmetic_correct([""], [trace], [str(sum(ops))]) == [1.0]


def test_skip_probability_and_the_length_of_each_route() -> None:
    rng = random.Random(0)
    ops = (37, 48, 55, 21)
    assert solution_trace(ops, rng, skip_prob=0.0) == "37+48=85;85+55=140;140+21=161;#161"
    assert solution_trace(ops, rng, skip_prob=1.0) == "37+48+55+21=161;#161"
    counts = Counter(steps_written(solution_trace(ops, rng)) for _ in range(20_000))
    # both intermediate sums skipped: 0.6^2 = 0.36; one: 2 * 0.6 * 0.4 = 0.48; none: 0.16
    expected = {1: SKIP_PROB**2, 2: 2 * SKIP_PROB * (1 - SKIP_PROB), 3: (1 - SKIP_PROB) ** 2}
    assert all(abs(counts[k] / 20_000 - p) < 0.015 for k, p in expected.items())
    assert steps_written("37+48=85;oops") is None and steps_written("#161") == 0


def test_training_examples_are_train_prompts_with_traces() -> None:
    held_out = {r["prompt"] for r in make_split("eval", 20_000)}
    for prompt, trace in training_examples(500, random.Random(1)):
        assert prompt not in held_out and check_trace(operands(prompt), trace)


def test_tasks_are_registered_by_name() -> None:
    assert TASKS == {"arithmetic3": DEFAULT, "chain4": CHAIN4} and get_task("chain4") is CHAIN4
    with pytest.raises(ConfigError, match=r"unknown task 'chain'; did you mean 'chain4'\? known: arithmetic3, chain4"):
        get_task("chain")
    assert CHAIN4.reward_funcs == (arithmetic_correct,) and CHAIN4.max_completion_length == 96
    assert CHAIN4.eval_dataset(50) == make_split("eval", 50) and CHAIN4.train_dataset(10, seed=2) == make_split("train", 10, 2)


def test_the_default_assets_are_untouched() -> None:
    for name, digest in DEFAULT_ASSETS.items():
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == digest, name


def test_the_shipped_chain4_warm_start_loads_into_the_default_architecture() -> None:
    model, tokenizer = CHAIN4.load_model()
    default, default_tok = load_model()
    assert tokenizer.get_vocab() == default_tok.get_vocab() and model.config.to_dict() == default.config.to_dict()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied after loading the weights
    assert not torch.equal(model.model.embed_tokens.weight, default.model.embed_tokens.weight)
    report = json.loads((ASSETS / "chain4.warmstart.json").read_text())
    assert report["task"] == "chain4" and set(report["routes"]) >= {"1", "2", "3"}
    assert report["config"] == asdict(TASK_DEFAULTS["chain4"]) and report["init"] == TASK_INIT["chain4"]
    # the point of the task: the full trace is the reliable one, the shortest the least
    assert report["routes"]["3"]["accuracy"] > report["routes"]["2"]["accuracy"] > report["routes"]["1"]["accuracy"]
    sizes = (ASSETS / "chain4.safetensors").stat().st_size + (ASSETS / "chain4.warmstart.json").stat().st_size
    assert sizes < 3_000_000
