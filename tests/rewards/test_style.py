"""format and repetition_penalty: hand-worked cases."""

import pytest

from rlzoo.errors import ConfigError
from rlzoo.rewards import build


def run(fn, completions):
    return fn(["q"] * len(completions), completions)


def test_format_tags_in_order() -> None:
    completions = [
        "<think>\nsome\nthought\n</think>\n<answer>4</answer>",  # both, in order
        "<answer>4</answer><think>late</think>",  # wrong order
        "<think>no answer</think>",  # missing tag
        "preamble <think>x</think> middle <answer>4</answer> trailer",  # text around: fine unless strict
        "<think>unclosed <answer>4</answer>",  # think never closed
    ]
    assert run(build("format"), completions) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert run(build("format", strict=True), completions) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert run(build("format", tags=("answer",), reward=0.5, penalty=-0.5), completions) == [
        0.5,
        0.5,
        -0.5,
        0.5,
        0.5,
    ]


def test_format_bad_tags() -> None:
    with pytest.raises(ConfigError, match="tags=\\(\\) must name at least one tag"):
        build("format", tags=())
    with pytest.raises(ConfigError, match="must be tag names"):
        build("format", tags=("<think>",))


def test_repetition_penalty_hand_worked() -> None:
    fn = build("repetition_penalty")  # 3-grams, max_penalty -1
    completions = [
        "a b c d e",  # 3-grams abc bcd cde: 3 distinct of 3 -> 0
        "a b c a b c",  # abc bca cab abc: 3 distinct of 4 -> (1 - 3/4)·-1 = -0.25
        "A b C a B c",  # lowercased: the same as above
        "one two",  # fewer words than 3 -> 0
        "",  # empty -> 0
        "x x x x x x",  # xxx ×4: 1 distinct of 4 -> -0.75
    ]
    assert run(fn, completions) == pytest.approx([0.0, -0.25, -0.25, 0.0, 0.0, -0.75], abs=1e-12)
    bigrams = build("repetition_penalty", ngram_size=2, max_penalty=-2.0)
    # "a b a b": ab ba ab: 2 distinct of 3 -> (1 - 2/3)·-2 = -2/3
    assert run(bigrams, ["a b a b"]) == pytest.approx([-2 / 3], abs=1e-12)
    with pytest.raises(ConfigError, match=r"max_penalty=0\.5 must be <= 0"):
        build("repetition_penalty", max_penalty=0.5)
