"""Reward specs: registered names, module:function and file.py:function, each @weight; clear errors."""

import sys
import textwrap

import pytest

from rlzoo.errors import ConfigError
from rlzoo.rewards import RewardSpec, resolve_reward, resolve_rewards
from rlzoo.rewards.answer import AnswerMatch

USER_REWARDS = """
import math

THRESHOLD = 3


def fmt(prompts, completions, **columns):
    '''1 for a completion that ends with a full stop.'''
    return [float(c.endswith(".")) for c in completions]


def correct(prompts, completions, answer, **columns):
    return [float(c.strip() == str(a)) for c, a in zip(completions, answer)]


def _helper():
    return math.pi


class Reward:
    def __call__(self, prompts, completions, **columns):
        return [0.0] * len(completions)


reward = Reward()
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(textwrap.dedent(USER_REWARDS))
    return path


def test_registered_names_and_mappings_build_components() -> None:
    assert resolve_reward("answer_match") == RewardSpec("answer_match", AnswerMatch())
    assert resolve_reward("answer_match@2") == RewardSpec("answer_match@2", AnswerMatch(), 2.0)
    spec = {"name": "answer_match", "extract": "boxed"}
    assert resolve_reward(spec) == RewardSpec(spec, AnswerMatch(extract="boxed"))


def test_a_users_file_is_loaded_by_path(user_file, monkeypatch) -> None:
    spec = resolve_reward(f"{user_file}:fmt@0.5")
    assert spec.weight == 0.5 and spec.func.__name__ == "fmt"
    assert spec.func(["q", "q"], ["Done.", "not done"]) == [1.0, 0.0]
    assert resolve_reward(f"{user_file}:fmt").func is spec.func  # executed once per process
    assert resolve_reward(f"{user_file}:reward").func.__class__.__name__ == "Reward"  # a callable instance
    monkeypatch.chdir(user_file.parent)
    assert resolve_reward("my_rewards.py:fmt").func is spec.func  # relative to the working directory
    assert resolve_reward("./my_rewards.py:correct@-1").weight == -1.0  # a negative weight is a penalty


def test_an_at_sign_in_a_path_is_not_a_weight(tmp_path) -> None:
    folder = tmp_path / "me@work"
    folder.mkdir()
    (folder / "r.py").write_text("def fn(prompts, completions, **columns):\n    return [1.0] * len(completions)\n")
    spec = resolve_reward(f"{folder}/r.py:fn")
    assert spec.weight is None and spec.func.__name__ == "fn"
    assert resolve_reward(f"{folder}/r.py:fn@3").weight == 3.0


def test_an_importable_module(tmp_path, monkeypatch) -> None:
    (tmp_path / "rlzoo_test_user_pkg").mkdir()
    (tmp_path / "rlzoo_test_user_pkg" / "__init__.py").write_text("")
    (tmp_path / "rlzoo_test_user_pkg" / "rewards.py").write_text(textwrap.dedent(USER_REWARDS))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = resolve_reward("rlzoo_test_user_pkg.rewards:correct")
    import rlzoo_test_user_pkg.rewards as module

    assert spec.func is module.correct and spec.weight is None


def test_weights_only_when_some_spec_has_one(user_file) -> None:
    funcs, weights = resolve_rewards(["answer_match", f"{user_file}:fmt"])
    assert len(funcs) == 2 and weights is None
    assert resolve_rewards(["answer_match", f"{user_file}:fmt@0.25"])[1] == (1.0, 0.25)
    assert resolve_rewards([]) == ((), None)


def test_every_problem_named_with_its_spec_at_once(user_file, tmp_path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError) as err:
        resolve_rewards(
            [
                "missing.py:fn",
                "rlzoo_no_such_module:fn",
                f"{user_file}:fmtt",
                f"{user_file}:THRESHOLD",
                f"{user_file}:Reward",
                f"{user_file}",
                f"{broken}:fn",
                "answer_mach",
                "answer_match@heavy",
                "answer_match@inf",
                f"{user_file}:",
                3,
                {"name": "answer_match", "tolerance": 1},
            ]
        )
    msg = str(err.value)
    for part in (
        "reward 'missing.py:fn': file 'missing.py' does not exist (looked for ",
        "reward 'rlzoo_no_such_module:fn': module 'rlzoo_no_such_module' cannot be imported: "
        "ModuleNotFoundError: No module named 'rlzoo_no_such_module'",
        f"reward '{user_file}:fmtt': '{user_file}' has no attribute 'fmtt' (did you mean 'fmt'?); "
        "callables there: Reward, correct, fmt, reward",  # not the imported math, not _helper
        f"reward '{user_file}:THRESHOLD': 'THRESHOLD' in '{user_file}' is int 3, not a function",
        f"reward '{user_file}:Reward': 'Reward' in '{user_file}' is a class; point at a function or an instance",
        f"reward '{user_file}': name the function to use: '{user_file}:FUNCTION' (callables there: Reward, correct, fmt, reward)",
        f"reward '{broken}:fn': file '{broken}' failed to load: RuntimeError: boom",
        "reward 'answer_mach': unknown reward function 'answer_mach'; did you mean 'answer_match'?",
        "reward 'answer_match@heavy': weight 'heavy' after '@' must be a finite number",
        "reward 'answer_match@inf': weight 'inf' after '@' must be a finite number",
        f"reward '{user_file}:': no function named after ':'",
        "reward 3: a reward spec is a string (name, module:function or file.py:function, optionally @weight) "
        "or a {name: ..., **params} mapping, got int",
        "reward {'name': 'answer_match', 'tolerance': 1}: reward function 'answer_match': unknown parameter 'tolerance'",
    ):
        assert part in msg, part
    assert "rlzoo_reward_file_broken" not in "".join(sys.modules)  # a file that failed is not kept
    with pytest.raises(ConfigError, match="must be a list of specs, got str"):
        resolve_rewards("answer_match")  # type: ignore[arg-type]


def test_a_module_name_that_is_a_file_here_says_how_to_load_it(user_file, monkeypatch) -> None:
    monkeypatch.chdir(user_file.parent)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(user_file.parent))])
    with pytest.raises(ConfigError, match=r"No module named 'my_rewards' \(to load the file my_rewards.py by path, "
                       r"write 'my_rewards.py:fmt'\)"):
        resolve_reward("my_rewards:fmt")
