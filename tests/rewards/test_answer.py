"""answer_match and math_verify: hand-worked cases."""

import importlib.util
import sys

import pytest

from rlzoo.errors import ConfigError
from rlzoo.rewards import build


def score(fn, completions, answers, **extra):
    return fn(["q"] * len(completions), completions, answer=answers, **extra)


def test_last_number_with_tolerance_and_formats() -> None:
    fn = build("answer_match")
    completions = [
        "2 + 2 = 4, so the answer is 4.",  # last number 4 == 4
        "first 4, then I think 5",  # last number 5 != 4
        "The total is $1,234.",  # 1,234 -> 1234 == "1234"
        "no number here",  # nothing extracted -> wrong
        "x = 0.1 + 0.2 = 0.30000000000000004",  # |0.30000000000000004 - 0.3| <= 1e-6
        "3-5",  # the last number is -5
        "half: 1/2",  # last number is 2, not 0.5
    ]
    answers = [4, 4, "1234", 7, 0.3, -5, "1/2"]
    assert score(fn, completions, answers) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]


def test_tolerances() -> None:
    # |4.001 - 4| = 1e-3: outside abs_tol=1e-6, inside abs_tol=1e-2; rel_tol=1e-3 allows 4e-3
    assert score(build("answer_match"), ["4.001"], [4]) == [0.0]
    assert score(build("answer_match", abs_tol=1e-2), ["4.001"], [4]) == [1.0]
    assert score(build("answer_match", rel_tol=1e-3), ["4.001"], [4]) == [1.0]
    assert score(build("answer_match", rel_tol=1e-4), ["4.001"], [4]) == [0.0]


def test_boxed_tag_and_regex_extraction() -> None:
    boxed = build("answer_match", extract="boxed")
    # the last \boxed{...}, nested braces kept; \frac{1}{2} is not a number, so compared as text
    assert score(boxed, [r"try \boxed{3} then \boxed{\frac{1}{2}}"], [r"\frac{1}{2}"]) == [1.0]
    assert score(boxed, [r"so \boxed{ 42 }"], ["42"]) == [1.0]
    assert score(boxed, ["42 without a box"], ["42"]) == [0.0]
    assert score(boxed, [r"unclosed \boxed{42"], ["42"]) == [0.0]
    tag = build("answer_match", extract="tag")
    assert score(tag, ["<think>7?</think><answer>\n 12 </answer>"], [12]) == [1.0]
    assert score(tag, ["<answer>1</answer> then <answer>2</answer>"], [2]) == [1.0]  # the last block
    assert score(build("answer_match", extract="tag", tag="final"), ["<final>yes</final>"], ["yes"]) == [1.0]
    regex = build("answer_match", extract="regex", pattern=r"#### (\S+)")
    assert score(regex, ["work... #### 72", "#### 71"], ["72", "72"]) == [1.0, 0.0]
    whole = build("answer_match", extract="regex", pattern=r"[A-E]\b")  # no group: the whole match
    assert score(whole, ["A or maybe C"], ["C"]) == [1.0]


# GSM8K train rows 0 and 1 as the dataset ships them: the reference is the whole solution.
NATALIA = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)
WENG = "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"


def test_gsm8k_references_and_answer_lines() -> None:
    fn = build("answer_match")
    completions = [
        "In May she sold 48 / 2 = 24 clips, so 48 + 24 = 72 in all.\n#### 72",  # the answer line: 72
        "She sold 24 in May, so 72 clips in total.",  # no answer line: the last number, 72
        "#### 72\nCheck: half of 48 is 24.",  # the answer line wins over later numbers
        "48 + 24 = 72, minus 2 broken = 70.\n#### 70",  # 70 != 72
        "#### 1. May\n48 / 2 = 24\n#### 2. Total\n48 + 24 = 72",  # numbered headings are not answer lines: 72
        "0.2 x 50 = $10.\n#### $10",  # "$10" -> 10
        "She earned 0.2 per minute.\n#### 10.00",  # 10.00 == 10
        "She earned 0.2 x 50 = 10 dollars, plus 2 for the bus: #### 12",  # 12 != 10
    ]
    assert score(fn, completions, [NATALIA] * 5 + [WENG] * 3) == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    assert fn.final_answer(NATALIA) == "72" and fn.final_answer(72) == 72 and fn.final_answer("72") == "72"
    assert score(build("answer_match", extract="boxed"), [r"so \boxed{72}"], [NATALIA]) == [1.0]
    # reference="as_is" compares with the whole solution text: no number, no match
    assert score(build("answer_match", reference="as_is"), ["#### 72"], [NATALIA]) == [0.0]


def test_thousands_separators_on_both_sides() -> None:
    fn = build("answer_match")
    reference = "He pays 100 * 12 = <<100*12=1200>>1200 dollars a year.\n#### 1200"
    completions = [
        "So he pays $1,200 in a year.",  # 1,200 -> 1200
        "12 months of $100 each.\n#### 1,200",  # the answer line with a separator
        "That is 1,200 - 2 = 1198.",  # the last number is 1198
        "#### 1,200.",  # a trailing full stop on the answer line
    ]
    assert score(fn, completions, [reference] * 4) == [1.0, 1.0, 0.0, 1.0]
    assert score(fn, ["#### 1200", "#### 1,234,567"], ["#### 1,200", "1234567"]) == [1.0, 1.0]


def test_rewards_missing_references_and_correctness_flag() -> None:
    fn = build("answer_match", correct_reward=2.0, wrong_reward=-1.0)
    assert score(fn, ["4", "5", "4"], [4, 4, None]) == [2.0, -1.0, None]  # None reference: cannot score
    assert fn.verifies_correctness is True
    other = build("answer_match", column="solution")
    assert other(["q"], ["the answer: 9"], solution=[9]) == [1.0]


def test_missing_column_and_bad_parameters_are_config_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"reward function 'answer_match': no column 'answer'.*\['solution'\]"
    ):
        build("answer_match")(["q"], ["4"], solution=["4"])
    with pytest.raises(ConfigError, match="pattern=None is needed by, and only by, extract='regex'"):
        build("answer_match", extract="regex")
    with pytest.raises(ConfigError, match="pattern='\\(' is not a valid regular expression"):
        build("answer_match", extract="regex", pattern="(")
    with pytest.raises(ConfigError, match=r"correct_reward=0\.0 must be > 0"):
        build("answer_match", correct_reward=0.0)
    with pytest.raises(ConfigError, match="unknown parameter 'tolerance'"):
        build({"name": "answer_match", "tolerance": 0.1})


def test_math_verify_missing_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` fail
    with pytest.raises(ConfigError, match=r"'math_verify'.*pip install 'math-verify>=0.7'"):
        build("math_verify")


@pytest.mark.skipif(importlib.util.find_spec("math_verify") is None, reason="math-verify is not installed")
def test_math_verify_equivalence() -> None:
    fn = build("math_verify")
    completions = [r"so \boxed{\frac{2}{4}}", r"the answer is $0.5$", r"\boxed{3}", "anything"]
    answers = [r"\frac{1}{2}", r"$\frac{1}{2}$", "4", "this is not maths"]
    # 2/4 = 1/2 and 0.5 = 1/2 are equivalent; 3 != 4; an unparsable reference cannot score
    assert score(fn, completions, answers) == [1.0, 1.0, 0.0, None]
    assert fn.verifies_correctness is True


def test_chat_completions_are_read_like_text() -> None:
    match = build("answer_match")
    chat = [[{"role": "assistant", "content": "so 6 apples\n#### 6"}], [{"role": "assistant", "content": "#### 7"}]]
    assert match([[{"role": "user", "content": "q"}]] * 2, chat, answer=["... #### 6", "... #### 6"]) == [1.0, 0.0]
