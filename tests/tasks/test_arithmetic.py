"""The generator, the splits, the solution traces and the correctness reward."""

import random
import re
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jaxtyping import TypeCheckError

from rlzoo.errors import ConfigError, DataError
from rlzoo.tasks.arithmetic import (
    PROMPT_LENGTH,
    VERBOSE_PROBS,
    arithmetic_correct,
    final_answer,
    make_split,
    operands,
    solution_trace,
    split_size,
)

PROMPT = re.compile(r"^([1-9]\d)\+([1-9]\d)\+([1-9]\d)=$")


def parse_trace(a: int, b: int, c: int, trace: str) -> list[int]:
    """Oracle: check every step of a trace by hand; return the verbose-step count of each slot."""
    *steps, last = trace.split(";")
    assert re.fullmatch(r"#\d+", last), trace
    counts, total, slot, operand = [], a, -1, [b, c]
    for step in steps:
        eq = re.fullmatch(r"(\d+)\+(\d+)=(\d+)", step)
        if eq and slot + 1 < 2 and (int(eq[1]), int(eq[2])) == (total, operand[slot + 1]):
            slot += 1  # a real partial sum: running total + next operand
            total = int(eq[1]) + int(eq[2])
            assert int(eq[3]) == total, step
            counts.append(0)
            continue
        assert slot >= 0, f"verbose step before the first partial sum: {trace}"
        previous = total - operand[slot]
        restate = step == f"so {total}"
        recheck = step == f"chk {operand[slot]}+{previous}={total}"
        assert restate or recheck, f"bad verbose step {step!r} in {trace}"
        counts[-1] += 1
    assert slot == 1 and last == f"#{a + b + c}", trace
    return counts


def test_split_is_deterministic_per_seed() -> None:
    assert make_split("train", 300, seed=7) == make_split("train", 300, seed=7)
    assert make_split("train", 300, seed=7) != make_split("train", 300, seed=8)
    assert make_split("eval", 300, seed=7) != make_split("train", 300, seed=7)


@pytest.fixture(scope="module")
def whole_eval() -> list[dict[str, str]]:
    return make_split("eval", split_size("eval"), seed=0)


def test_splits_are_disjoint_and_cover_all_triples(whole_eval) -> None:
    # every eval prompt (the whole eval part, 10% of 90^3) against a large train sample
    assert split_size("eval") == 72_900 and split_size("train") == 656_100
    eval_prompts = {row["prompt"] for row in whole_eval}
    assert len(eval_prompts) == 72_900
    train = [row["prompt"] for row in make_split("train", 60_000, seed=3)]
    assert len(set(train)) == 60_000
    assert eval_prompts.isdisjoint(train)


def test_eval_part_spreads_over_every_operand(whole_eval) -> None:
    # each value of each operand has 90*90 = 8100 triples, so ~810 of them in the eval part
    triples = [operands(row["prompt"]) for row in whole_eval]
    for position in range(3):
        counts = Counter(t[position] for t in triples)
        assert set(counts) == set(range(10, 100))
        assert min(counts.values()) >= 700 and max(counts.values()) <= 920, counts.most_common(3)


def test_rows_have_fixed_length_prompts_and_true_answers() -> None:
    for row in make_split("train", 500, seed=1) + make_split("eval", 500, seed=1):
        assert set(row) == {"prompt", "answer"}
        match = PROMPT.match(row["prompt"])
        assert match and len(row["prompt"]) == PROMPT_LENGTH == 9
        assert int(row["answer"]) == sum(int(x) for x in match.groups())


def test_oversized_split_is_refused() -> None:
    with pytest.raises(ConfigError, match="72900"):
        make_split("eval", 72_901)
    # the shape-checking hook of the test suite or, without it, the function itself refuses it
    with pytest.raises((ConfigError, TypeCheckError), match="test"):
        make_split("test", 3)  # type: ignore[arg-type]


@given(st.integers(10, 99), st.integers(10, 99), st.integers(10, 99), st.integers(0, 2**32))
def test_every_trace_is_correct_step_by_step(a: int, b: int, c: int, seed: int) -> None:
    trace = solution_trace(a, b, c, random.Random(seed))
    assert len(parse_trace(a, b, c, trace)) == 2
    assert arithmetic_correct([f"{a}+{b}+{c}="], [trace], [str(a + b + c)]) == [1.0]


def test_verbose_steps_follow_the_specified_distribution() -> None:
    rng = random.Random(0)
    slots: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    for _ in range(4000):
        a, b, c = (rng.randint(10, 99) for _ in range(3))
        trace = solution_trace(a, b, c, rng)
        slots.update(parse_trace(a, b, c, trace))
        kinds.update(step.split(" ")[0] for step in trace.split(";") if " " in step)
    total = sum(slots.values())  # 8000 slots: the std of a frequency is <= 0.0056
    for k, p in enumerate(VERBOSE_PROBS):
        assert abs(slots[k] / total - p) < 0.03, (k, slots)
    assert VERBOSE_PROBS == (0.25, 0.45, 0.30)  # most likely path has a verbose step per slot
    assert abs(kinds["so"] / (kinds["so"] + kinds["chk"]) - 0.5) < 0.03


def test_reward_hand_worked() -> None:
    completions = [
        "37+48=85;85+55=140;#140",  # right
        "37+48=85;85+55=130;#130",  # wrong sum
        "37+48=85;85+55=140;140",  # no '#': unscorable -> wrong
        "37+48=85;85+55=140;#140;so 140;",  # extra text after the answer -> wrong
        "#12#140",  # the last '#' counts
        "#140  ",  # surrounding whitespace is ignored
        "#0140",  # exact string match: leading zero is wrong
        "",
    ]
    answers = ["140"] * len(completions)
    assert arithmetic_correct(["37+48+55="] * len(completions), completions, answers, extra=[0] * 8) == [
        1.0,
        0.0,
        0.0,
        0.0,
        1.0,
        1.0,
        0.0,
        0.0,
    ]
    assert arithmetic_correct.verifies_correctness is True
    assert final_answer("a#1#2") == "2" and final_answer("no hash") is None


def test_dataset_and_reward_import_neither_torch_nor_transformers() -> None:
    code = "import sys, rlzoo.tasks.arithmetic; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_reward_refuses_mismatched_columns() -> None:
    with pytest.raises(DataError, match="arithmetic_correct: 2 completions but 1 answers"):
        arithmetic_correct(["p", "p"], ["#1", "#2"], ["1"])
