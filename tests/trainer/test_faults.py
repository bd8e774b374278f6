"""A user's bad day, reproduced deterministically: divergence, errors mid-run, rewards that score
nothing, torn metrics, wrong settings. Each asserts what is kept and what is said."""

import json
import subprocess
import sys

import pytest
import torch

from rlzoo.errors import ConfigError, DataError
from rlzoo.trainer import Trainer
from rlzoo.trainer.checkpoint import latest_checkpoint, load_checkpoint
from tests.trainer.helpers import REWARDS, ScriptedGenerator, config, rows, tiny


def finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def diverging(tmp_path, **changes) -> Trainer:
    """SGD at lr 1e30: step 1 is finite, its weights overflow the forward of step 2."""
    model, tok = tiny()
    cfg = config(tmp_path, steps=4, optimizer="sgd", learning_rate=1e30, max_grad_norm=None, **changes)
    return Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator())


def test_divergence_is_a_named_error_and_no_nan_is_saved(tmp_path) -> None:
    trainer = diverging(tmp_path)
    with pytest.raises(DataError, match=r"step 2 diverged: the (loss|gradient norm) is (nan|inf).*last good checkpoint: .*step-000001"):
        trainer.train()
    assert finite(trainer.model)  # the bad step did not touch the weights
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert ckpt.name == "step-000001"
    model, _ = tiny(seed=1)
    load_checkpoint(ckpt, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), rank=0)
    assert finite(model)


def test_non_finite_steps_can_be_skipped_and_counted(tmp_path) -> None:
    history = diverging(tmp_path, on_nonfinite="skip").train()
    assert [h["update/nonfinite_skipped"] for h in history] == [0.0, 1.0, 1.0, 1.0]


class Boom(RuntimeError):
    pass


def test_an_error_after_two_steps_leaves_step_two_saved(tmp_path) -> None:
    calls = []

    def reward(prompts, completions, answer, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ConfigError("reward: the judge went away")  # an rlzoo error stops the step
        return [float(i % 2) for i in range(len(completions))]

    model, tok = tiny()
    cfg = config(tmp_path, steps=10, save_every=0, reward_timeout=None)
    with pytest.raises(ConfigError, match="the judge went away"):
        Trainer(model, tok, "grpo", rows(8), [reward], cfg, generator=ScriptedGenerator()).train()
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-000002"


def unscorable(prompts, completions, **kwargs):
    return [None] * len(completions)


def test_steps_with_nothing_scored_warn_and_then_stop_the_run(tmp_path, caplog) -> None:
    model, tok = tiny()
    cfg = config(tmp_path, steps=10, max_empty_steps=3)
    with pytest.raises(DataError, match=r"no completion of step 3 was scored .*unscorable.*3 steps in a row"):
        Trainer(model, tok, "grpo", rows(8), [unscorable], cfg, generator=ScriptedGenerator()).train()
    assert caplog.text.count("nothing to learn from") == 2


def test_resume_survives_a_torn_metrics_line(tmp_path) -> None:
    def run(steps: int, resume: bool = False) -> list[dict]:
        model, tok = tiny()
        cfg = config(tmp_path, steps=steps, save_every=1)
        return Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator()).train(resume=resume)

    run(2)
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 3, "loss/to')  # killed during the write of step 3
    run(3, resume=True)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3]


CHECK_EVERY_FIELD = """
import dataclasses, typing
from rlzoo.errors import ConfigError
from rlzoo.trainer import TrainConfig
wrong = {bool: "yes", int: "3", float: "0.1", str: 3, tuple: 5}
hints = typing.get_type_hints(TrainConfig)
unchecked = []
for f in dataclasses.fields(TrainConfig):
    value = getattr(TrainConfig(), f.name)
    literal = typing.get_origin(hints[f.name]) is typing.Literal
    bad = "not-an-option" if literal else wrong.get(type(value), object())
    try:
        TrainConfig(**{f.name: bad})
        unchecked.append(f.name)
    except ConfigError as exc:
        assert f"parameter '{f.name}' expects" in str(exc), exc
print("unchecked:", unchecked)
"""


def test_every_train_config_field_is_checked_however_it_is_built() -> None:
    """Outside the test suite's shape checker (which would refuse first), as a user's script runs."""
    done = subprocess.run([sys.executable, "-c", CHECK_EVERY_FIELD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unchecked: []"


HANGING_RUN = """
import sys, time
from pathlib import Path
from rlzoo.trainer import Trainer, TrainConfig
from tests.trainer.helpers import ScriptedGenerator, rows, tiny
out = Path(sys.argv[1])

def hangs(prompts, completions, **kwargs):
    (out / "scoring").write_text("started")
    time.sleep(1e9)

model, tok = tiny()
cfg = TrainConfig(steps=1000, prompts_per_step=4, group_size=4, max_completion_length=8, output_dir=str(out / "run"),
                  progress=False, save_every=0, reward_timeout=2.0)
trainer = Trainer(model, tok, "grpo", rows(8), [hangs], cfg, generator=ScriptedGenerator())
trainer.train()
print("clean exit at step", trainer.step)
"""


def test_sigterm_during_a_hung_reward_call_stops_within_the_timeout(tmp_path) -> None:
    import os
    import signal
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", HANGING_RUN, str(tmp_path)], cwd=root, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "scoring").exists() and time.time() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        signalled = time.time()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert time.time() - signalled < 2.0 + 8.0  # the call's own timeout, no retries, then save and exit
    assert "clean exit at step 1" in out and "timed out after 2 s" in err
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-000001"
