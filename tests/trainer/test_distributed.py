"""Two real processes (torchrun, gloo on CPU) against one: same update, same metrics, one stop for all.

``accelerate launch --num_processes 2 --cpu`` starts a single process (accelerate 1.15), so these
tests launch with ``torch.distributed.run`` and every worker asserts how many processes it sees.
Every wait has a timeout: a collective that one process skips fails the test instead of hanging CI.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlzoo.trainer.checkpoint import latest_checkpoint
from tests.trainer.ddp_worker import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "trainer"
pytestmark = pytest.mark.slow


def environment(processes: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true",
            "EXPECT_PROCESSES": str(processes)}


def torchrun(processes: int, script: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            str(script), *args]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[int, dict]:
    """Every scenario's results with one process and with two."""
    out = tmp_path_factory.mktemp("ddp")
    runs = {1: [sys.executable, str(HERE / "ddp_worker.py"), str(out / "1.pt")],
            2: torchrun(2, HERE / "ddp_worker.py", str(out / "2.pt"))}
    for processes, command in runs.items():
        done = subprocess.run(command, env=environment(processes), cwd=ROOT, timeout=600, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr[-4000:]
    return {p: torch.load(out / f"{p}.pt", weights_only=False) for p in runs}


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "dapo_refill"])
def test_two_processes_give_the_one_process_update(results, name: str) -> None:
    one, two = results[1][name], results[2][name]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert max(float(d.abs().max()) for d in one["delta"]) > 1e-4  # something was learned
    for a, b in zip(one["delta"], two["delta"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_an_idle_rank_joins_every_collective(results) -> None:
    assert results[2]["idle_rank"]["metrics"]["groups/trained"] == 1.0


@pytest.mark.parametrize("name", ["kl", "reward_kl"])
def test_kl_is_zero_at_step_one_in_every_process(results, name: str) -> None:
    for processes in (1, 2):
        m = results[processes][name]["metrics"]
        if name == "kl":
            assert m["loss/kl"] == 0.0
        else:
            assert m["reward/shaped_mean"] == m["reward/mean"]  # the reward KL subtracted nothing


def test_metrics_are_reduced_over_processes(results) -> None:
    """Additive loss shares sum to the whole loss, means average, counts add up, extremes are extreme."""
    for name in ("grpo_two_minibatches", "kl", "gvpo_whole_groups"):
        one, two = results[1][name]["metrics"], results[2][name]["metrics"]
        for key in ("loss/total", "loss/policy", "reward/mean", "reward/accuracy", "length/mean", "adv/std"):
            assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-7), (name, key)
        for key in ("groups/trained", "reward/invalid", "length/max", "length/min", "update/optimizer_steps"):
            assert two[key] == one[key], (name, key)


def test_evaluation_is_sharded_and_gathered(results) -> None:
    one, two = results[1]["kl"]["eval"], results[2]["kl"]["eval"]
    assert set(one) == set(two) and "eval/greedy/accuracy" in one
    for key, value in one.items():
        assert two[key] == pytest.approx(value, abs=1e-12), key


def test_dynamic_sampling_refills_in_every_process(results) -> None:
    m = results[2]["dapo_refill"]["metrics"]
    assert m["groups/rounds"] >= 2 and m["groups/trained"] == 4.0


def test_sigterm_to_one_rank_stops_both_at_the_same_step(tmp_path) -> None:
    proc = subprocess.Popen(torchrun(2, HERE / "stop_worker.py", str(tmp_path)), env=environment(2), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.time() + 180
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        os.kill(int((tmp_path / "pid-1").read_text()), signal.SIGTERM)  # the second rank only
        signalled = time.time()
        output, _ = proc.communicate(timeout=30)
        took = time.time() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-4000:]
    steps = {int((tmp_path / f"done-{r}").read_text()) for r in (0, 1)}
    assert len(steps) == 1, steps
    step = steps.pop()
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == f"step-{step:06d}"
    assert took < 30
