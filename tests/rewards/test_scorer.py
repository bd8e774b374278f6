"""The Scorer: TRL's contract, robust execution (timeouts, crashes, None), combination and metrics."""

import asyncio
import gc
import logging
import math
import multiprocessing
import os
import signal
import time

import pytest
import torch

from rlzoo.errors import ConfigError, DataError
from rlzoo.rewards import RewardFunctionError, Scorer, Scores

TIMEOUT = 0.5


def probe(prompts, completions, **kwargs):
    """Misbehaves on request: the completion text says what to do; otherwise scores its length."""
    out = []
    for c in completions:
        if c == "hang":
            time.sleep(1e9)
        if c == "crash":
            raise ValueError("probe cannot read this")
        if c == "die":
            os._exit(3)
        if c == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if c == "pid":
            out.append(float(os.getpid()))
            continue
        out.append({"none": None, "nan": math.nan, "inf": math.inf}.get(c, float(len(c))))
    return out


def trl_accuracy(prompts, completions, **kwargs):
    """Written for TRL's GRPOTrainer: the reference answer arrives in kwargs["answer"]."""
    return [1.0 if c.strip() == str(a) else 0.0 for c, a in zip(completions, kwargs["answer"], strict=True)]


def trl_format(completions, **kwargs):
    """TRL reward functions often take no `prompts` parameter: they are called with keywords."""
    return [0.5 if c.startswith("<") else 0.0 for c in completions]


async def async_length(prompts, completions, **kwargs):
    await asyncio.sleep(0)
    return [float(len(c)) for c in completions]


def wrong_length(prompts, completions, **kwargs):
    return [1.0] * (len(completions) + 1)


@pytest.fixture(scope="module")
def guarded():
    """One scorer with a worker process, shared by the tests of misbehaviour."""
    with Scorer([probe], timeout=TIMEOUT) as scorer:
        yield scorer


def test_hanging_function_is_cut_off_and_the_run_goes_on(guarded, caplog) -> None:
    completions = ["ab", "hang", "abc", "a"]
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="rlzoo.rewards"):
        scores = guarded(["p0", "p1"], completions, {}, 2)
    elapsed = time.perf_counter() - started
    # the call on all four times out, then its half with the hanging one, then that one alone (3 timeouts)
    assert elapsed < 4 * TIMEOUT + 2.0
    assert scores.valid.tolist() == [[True, False], [True, True]]
    assert scores.rewards.tolist() == [[2.0, 0.0], [3.0, 1.0]]
    assert scores.metrics["reward/probe/timeouts"] == 1.0
    assert scores.metrics["reward/probe/unscored"] == 1.0
    assert scores.metrics["reward/probe/errors"] == 0.0
    assert scores.metrics["reward/probe/mean"] == 2.0  # (2 + 3 + 1) / 3
    assert "reward function 'probe' timed out after 0.5 s on completion 1 (prompt 0, sample 1)" in caplog.text
    again = guarded(["p"], ["abcd", "ab"], {}, 2)  # the replaced worker serves the next step
    assert again.rewards.tolist() == [[4.0, 2.0]] and again.metrics["reward/probe/timeouts"] == 0.0


def test_one_hang_among_many_costs_a_few_timeouts_not_one_each(guarded) -> None:
    started = time.perf_counter()
    scores = guarded(["p"], ["ab"] * 7 + ["hang"] + ["a"] * 8, {}, 16)
    assert time.perf_counter() - started < 5 * TIMEOUT + 2.0  # 16 -> 8 -> 4 -> 2 -> 1: five timeouts
    assert scores.valid.sum() == 15 and scores.metrics["reward/probe/timeouts"] == 1.0


def test_a_function_that_hangs_on_everything_costs_three_timeouts(guarded) -> None:
    started = time.perf_counter()
    scores = guarded(["p"], ["hang"] * 16, {}, 16)
    assert time.perf_counter() - started < 3 * TIMEOUT + 2.0
    assert scores.metrics["reward/probe/timeouts"] == 16.0


def test_no_retries_once_a_stop_is_asked_for(guarded) -> None:
    guarded.should_stop = lambda: True
    try:
        started = time.perf_counter()
        scores = guarded(["p"], ["ab", "hang", "a", "abc"], {}, 4)
    finally:
        guarded.should_stop = None
    assert time.perf_counter() - started < TIMEOUT + 1.5  # the one call's timeout, nothing after
    assert scores.metrics["reward/probe/unscored"] == 4.0


def test_crashing_function_is_reported_by_name(guarded, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="rlzoo.rewards"):
        scores = guarded(["p"], ["ok", "crash", "crash"], {}, 3)
    assert scores.valid.tolist() == [[True, False, False]]
    assert scores.metrics["reward/probe/errors"] == 2.0
    assert scores.metrics["reward/probe/unscored"] == 2.0
    # one line for both: the first completion named, the others counted
    assert caplog.text.count("reward function 'probe' raised on completion 1 (prompt 0, sample 1) and 1 more: "
                             "ValueError: probe cannot read this (at ") == 1


def test_dead_worker_is_an_error_and_is_replaced(guarded, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="rlzoo.rewards"):
        scores = guarded(["p"], ["die", "xyz"], {}, 2)
    assert scores.valid.tolist() == [[False, True]]
    assert scores.metrics["reward/probe/errors"] == 1.0
    assert "its worker process exited with code 3" in caplog.text
    assert guarded(["p"], ["xy"], {}, 1).rewards.tolist() == [[2.0]]


def test_a_segfault_is_named_by_its_signal_and_costs_no_timeout(guarded, caplog) -> None:
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="rlzoo.rewards"):
        scores = guarded(["p"], ["ab", "segv"], {}, 2)
    assert time.perf_counter() - started < TIMEOUT
    assert scores.valid.tolist() == [[True, False]]
    assert "its worker process was killed by signal SIGSEGV" in caplog.text


def test_workers_are_replaced_after_an_error_and_after_max_calls() -> None:
    with Scorer([probe], timeout=5.0) as scorer:
        scorer._executor.max_calls = 2
        pids = [scorer(["p"], ["pid"], {}, 1).rewards.item() for _ in range(4)]
        assert pids[0] == pids[1] != pids[2] == pids[3]  # a fresh worker every two calls
        scorer(["p"], ["crash"], {}, 1)
        assert scorer(["p"], ["pid"], {}, 1).rewards.item() not in pids  # and after an error


def test_none_makes_the_completion_invalid_and_is_counted(guarded) -> None:
    scores = guarded(["p0", "p1"], ["none", "abc", "ab", "none"], {}, 2)
    assert scores.valid.tolist() == [[False, True], [True, False]]
    assert scores.rewards.tolist() == [[0.0, 3.0], [2.0, 0.0]]  # 0 where invalid
    assert scores.metrics["reward/probe/unscored"] == 2.0
    assert scores.metrics["reward/probe/errors"] == 0.0 and scores.metrics["reward/probe/timeouts"] == 0.0
    assert scores.metrics["reward/invalid"] == 2.0
    assert scores.metrics["reward/mean"] == 2.5  # (3 + 2) / 2, over valid completions only


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_reward_raises_naming_the_function(guarded, bad) -> None:
    with pytest.raises(
        DataError,
        match=r"reward function 'probe' returned (nan|inf) for completion 3 \(prompt 1, sample 1\)",
    ):
        guarded(["p0", "p1"], ["a", "b", "c", bad], {}, 2)


def test_a_reward_that_overflows_float32_is_named_as_overflow() -> None:
    def huge(prompts, completions, **kwargs):
        return [1e39] * len(completions)

    with pytest.raises(DataError, match=r"returned 1e\+39 for completion 0 .* overflows float32"):
        Scorer([huge], timeout=None)(["p"], ["a"], {}, 1)


def test_in_process_scorer_handles_the_same_misbehaviour(caplog) -> None:
    scorer = Scorer([probe], timeout=None)
    with caplog.at_level(logging.WARNING, logger="rlzoo.rewards"):
        scores = scorer(["p"], ["crash", "none", "abc"], {}, 3)
    assert scores.valid.tolist() == [[False, False, True]]
    assert scores.metrics["reward/probe/errors"] == 1.0 and scores.metrics["reward/probe/unscored"] == 2.0
    assert "reward function 'probe' raised on completion 0 (prompt 0, sample 0): ValueError" in caplog.text
    with pytest.raises(DataError, match="reward function 'probe' returned nan for completion 0"):
        scorer(["p"], ["nan"], {}, 1)


def test_on_error_raise() -> None:
    scorer = Scorer([probe], timeout=None, on_error="raise")
    with pytest.raises(
        RewardFunctionError,
        match=r"'probe' raised on completion 1 \(prompt 0, sample 1\): ValueError: probe cannot read this \(at .*test_scorer.py:\d+, in probe\)",
    ):
        scorer(["p"], ["ok", "crash"], {}, 2)


def test_trl_reward_functions_work_unchanged() -> None:
    scorer = Scorer([trl_accuracy, trl_format], timeout=None)
    # one answer per prompt (repeated per completion by the scorer) or one per completion: the same
    per_prompt = scorer(["1+1?", "2+2?"], ["2", "<3", "4", "5"], {"answer": [2, 4]}, 2)
    per_completion = scorer(["1+1?"] * 2 + ["2+2?"] * 2, ["2", "<3", "4", "5"], {"answer": [2, 2, 4, 4]}, 2)
    # trl_accuracy: 1, 0, 1, 0; trl_format: 0, 0.5, 0, 0 -> sums 1, 0.5, 1, 0
    assert per_prompt.rewards.tolist() == [[1.0, 0.5], [1.0, 0.0]]
    assert per_completion.rewards.tolist() == per_prompt.rewards.tolist()
    assert set(per_prompt.per_function) == {"trl_accuracy", "trl_format"}
    assert per_prompt.per_function["trl_format"].tolist() == [[0.0, 0.5], [0.0, 0.0]]
    assert per_prompt.correct is None  # no function declares verifies_correctness


def test_async_function_in_process_and_in_a_worker() -> None:
    in_process = Scorer([async_length], timeout=None)(["p"], ["a", "abc"], {}, 2)
    with Scorer({"length": async_length}, timeout=5.0) as scorer:
        in_worker = scorer(["p"], ["a", "abc"], {}, 2)
    assert in_process.rewards.tolist() == in_worker.rewards.tolist() == [[1.0, 3.0]]
    assert "reward/length/mean" in in_worker.metrics  # the mapping's key names the function


def test_lambdas_run_in_forked_workers_in_parallel() -> None:
    funcs = [lambda prompts, completions, **kw: [float(c.count("x")) for c in completions], "format"]
    completions = ["xx", "<think>x</think><answer>1</answer>", "b", "xxx"] * 3
    with Scorer(funcs, timeout=10.0, workers=2, chunk_size=3) as pooled:
        pooled_scores = pooled(["p"] * 3, completions, {}, 4)
    direct = Scorer(funcs, timeout=None)(["p"] * 3, completions, {}, 4)
    assert torch.equal(pooled_scores.rewards, direct.rewards)
    # "xx" -> 2 + 0; the tagged one -> 1 + 1 (format); "b" -> 0; "aaa" -> 3
    assert direct.rewards[0].tolist() == [2.0, 2.0, 0.0, 3.0]
    assert list(direct.per_function) == ["<lambda>", "format"]


def test_weights_verifier_and_metrics() -> None:
    scorer = Scorer(["answer_match", "format"], weights=[1.0, 0.5], timeout=None)
    completions = ["<answer>4</answer>", "4", "<answer>3</answer>", "7"]
    scores = scorer(["q"], completions, {"answer": [4]}, 4)
    # answer_match (last number): 1, 1, 0, 0; format ("think" then "answer"): 0 everywhere
    assert scores.rewards.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    assert scores.correct.tolist() == [[True, True, False, False]]
    assert scores.metrics["reward/accuracy"] == 0.5
    assert scores.metrics["reward/answer_match/mean"] == 0.5
    tagged = Scorer(
        [{"name": "answer_match", "extract": "tag"}, {"name": "format", "tags": ["answer"]}],
        weights=[1.0, 0.5],
        timeout=None,
    )
    # answer_match on tags: 1, 0 (no tag), 0, 0; format: 0.5·(1, 0, 1, 0) -> 1.5, 0, 0.5, 0
    assert tagged(["q"], completions, {"answer": [4]}, 4).rewards.tolist() == [[1.5, 0.0, 0.5, 0.0]]


def test_normalize_then_sum_hand_worked() -> None:
    def first(prompts, completions, **kw):
        return [float(c[0]) for c in completions]

    def second(prompts, completions, **kw):
        return [float(c[1]) for c in completions]

    scorer = Scorer([first, second], weights=[1.0, 2.0], timeout=None, combine="normalize_then_sum", eps=0.0)
    scores = scorer(["p0", "p1"], ["10", "30", "55", "51"], {}, 2)
    # group 0: first = 1, 3: mean 2, sample std √2 -> -1/√2, +1/√2; second = 0, 0: all equal -> 0, 0
    # group 1: first = 5, 5 -> 0, 0; second = 5, 1: mean 3, sample std 2√2 -> +1/√2, -1/√2, weight 2
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(scores.rewards, torch.tensor([[-s, s], [2 * s, -2 * s]]), rtol=0, atol=1e-6)
    # an invalid completion leaves its group's statistics: group 1 has one valid completion -> 0
    none_second = Scorer(
        [first, lambda prompts, completions, **kw: [None if c == "51" else 1.0 for c in completions]],
        timeout=None,
        combine="normalize_then_sum",
    )
    masked = none_second(["p0", "p1"], ["10", "30", "55", "51"], {}, 2)
    assert masked.valid.tolist() == [[True, True], [True, False]]
    assert masked.rewards[1].tolist() == [0.0, 0.0]


def test_contract_violations_are_clear_errors() -> None:
    with pytest.raises(
        DataError, match=r"reward function 'wrong_length' returned 3 rewards for 2 completions"
    ):
        Scorer([wrong_length], timeout=None)(["p"], ["a", "b"], {}, 2)
    with pytest.raises(DataError, match=r"'<lambda>' returned 'high' \(str\) for completion 0"):
        Scorer([lambda prompts, completions, **kw: ["high"]], timeout=None)(["p"], ["a"], {}, 1)
    with pytest.raises(DataError, match=r"'<lambda>' must return a list .* got float"):
        Scorer([lambda prompts, completions, **kw: 1.0], timeout=None)(["p"], ["a"], {}, 1)
    # a missing column inside a built-in is a configuration problem: raised, not swallowed
    with pytest.raises(ConfigError, match="no column 'answer'"):
        Scorer(["answer_match"], timeout=None)(["p"], ["a"], {"solution": ["a"]}, 1)


def test_input_and_configuration_errors() -> None:
    scorer = Scorer([probe], timeout=None)
    with pytest.raises(DataError, match="5 completions do not split into groups of group_size=2"):
        scorer(["p"], ["a"] * 5, {}, 2)
    with pytest.raises(
        DataError,
        match=r"column 'answer' has 3 entries; expected one per prompt \(2\) or one per completion \(4\)",
    ):
        scorer(["p", "q"], ["a"] * 4, {"answer": [1, 2, 3]}, 2)
    with pytest.raises(ConfigError, match=r"weights=\[1.0, 2.0\] must be 1 finite numbers"):
        Scorer([probe], weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="timeout=0 must be > 0 or None"):
        Scorer([probe], timeout=0)
    with pytest.raises(ConfigError, match=r"eps=-0\.1 must be a number >= 0"):
        Scorer([probe], eps=-0.1)
    with pytest.raises(
        ConfigError, match="unknown reward function 'answer_mach'; did you mean 'answer_match'"
    ):
        Scorer(["answer_mach"])
    with pytest.raises(ConfigError, match="needs at least one reward function"):
        Scorer([])


def test_duplicate_names_are_made_unique() -> None:
    scorer = Scorer(["answer_match", {"name": "answer_match", "extract": "boxed"}], timeout=None)
    scores = scorer(["q"], [r"\boxed{4}", "4"], {"answer": [4]}, 2)
    assert list(scores.per_function) == ["answer_match", "answer_match_2"]
    assert isinstance(scores, Scores)
    # last number: 1, 1; boxed: 1, 0 -> 2, 1; correct needs every verifier -> True, False
    assert scores.rewards.tolist() == [[2.0, 1.0]] and scores.correct.tolist() == [[True, False]]


@pytest.mark.parametrize("verifies", [True, False])
def test_scores_move_every_tensor_to_a_device(verifies: bool) -> None:
    funcs = ["answer_match", "format"] if verifies else ["format"]
    scores = Scorer(funcs, timeout=None)(["q"], ["<think>a</think><answer>4</answer>", "5"], {"answer": [4]}, 2)
    assert (scores.correct is not None) == verifies
    same = scores.to(torch.device("cpu"))
    assert isinstance(same, Scores) and same.metrics is scores.metrics
    for before, after in [
        (scores.rewards, same.rewards),
        (scores.valid, same.valid),
        (scores.correct, same.correct),
        *zip(scores.per_function.values(), same.per_function.values(), strict=True),
    ]:
        assert (after is None) if before is None else torch.equal(after, before) and after.dtype == before.dtype
    assert list(same.per_function) == list(scores.per_function)
    meta = scores.to(torch.device("meta"))
    tensors = [meta.rewards, meta.valid, *meta.per_function.values()]
    tensors += [] if meta.correct is None else [meta.correct]
    assert len(tensors) == 2 + len(funcs) + verifies
    assert all(t.device.type == "meta" for t in tensors)
    assert meta.metrics is scores.metrics
    assert scores.rewards.device.type == "cpu"  # the original is left where it was


def test_workers_do_not_leak() -> None:
    before = set(multiprocessing.active_children())
    scorer = Scorer([probe], timeout=TIMEOUT, chunk_size=1)
    scorer(["p"], ["hang", "a"], {}, 2)  # one worker killed and replaced
    scorer(["p"], ["ab"], {}, 1)
    assert len(set(multiprocessing.active_children()) - before) == 1
    del scorer
    gc.collect()  # a scorer that is garbage collected stops its workers
    assert set(multiprocessing.active_children()) - before == set()


def test_spawn_needs_picklable_functions() -> None:
    scorer = Scorer([lambda prompts, completions, **kw: [1.0]], timeout=1.0, start_method="spawn")
    with pytest.raises(ConfigError, match=r"start_method='spawn'.*must pickle"):
        scorer(["p"], ["a"], {}, 1)


def test_a_worker_forked_under_the_trainers_sigterm_handler_still_dies_of_sigterm() -> None:
    """The trainer's handler (note the signal, finish the step) must not keep a reward worker alive:
    a multiprocessing child's exit terminates its daemonic workers and then waits for them."""
    before = set(multiprocessing.active_children())
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # what the trainer's StopFlag does
    try:
        with Scorer([probe], timeout=5.0) as scorer:
            pid = int(scorer(["p"], ["pid"], {}, 1).rewards.item())  # a worker forked now
            (worker,) = set(multiprocessing.active_children()) - before
            assert worker.pid == pid
            worker.terminate()
            worker.join(timeout=10)
            assert worker.exitcode == -signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
