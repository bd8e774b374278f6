"""FSDP2 for real: two CPU processes on gloo (torchrun) against one unsharded process.

accelerate 1.15 does not shard CPU processes, so the two-process run sets the trainer's test-only
switch (``RLZOO_TEST_FSDP2_ON_CPU=1``, rlzoo.trainer.sharding) that forces accelerate's FSDP2 path;
everything after that (sharding, the summed reduce-scatter, padded micro-batches, gathered
generation, DCP checkpoints) is the code a GPU run takes. Every wait has a timeout.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlzoo.errors import ConfigError
from rlzoo.trainer import TrainConfig, Trainer
from tests.trainer.fsdp_worker import UPDATES
from tests.trainer.helpers import REWARDS, rows, tiny

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "trainer"


EXAMPLE = ROOT / "examples" / "accelerate" / "fsdp2.yaml"


def launcher_environment(config: Path) -> dict[str, str]:
    """The FSDP variables ``accelerate launch --config_file config`` exports to every process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(["--config_file", str(config), "x.py"]))
    return {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith(("FSDP_", "ACCELERATE_USE_FSDP"))}


def environment(processes: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "EXPECT_PROCESSES": str(processes)}
    if processes > 1:  # the example config's FSDP2 settings, on CPU processes through the test switch
        env |= launcher_environment(EXAMPLE) | {"ACCELERATE_USE_CPU": "true", "RLZOO_TEST_FSDP2_ON_CPU": "1"}
    return env


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[int, dict]:
    """Every scenario's results with one unsharded process and with two sharded ones (bf16: two only)."""
    out = tmp_path_factory.mktemp("fsdp")
    worker = str(HERE / "fsdp_worker.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", worker]
    runs = [(1, [sys.executable, worker, str(out / "1.pt")]), (2, [*torchrun, str(out / "2.pt")]),
            (2, [*torchrun, str(out / "2-bf16.pt"), "bf16"])]
    for processes, command in runs:
        done = subprocess.run(command, env=environment(processes), cwd=ROOT, timeout=300, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr[-6000:]
    one, two, bf16 = (torch.load(command[-2 if command[-1] == "bf16" else -1], weights_only=False)
                      for _, command in runs)
    return {1: one, 2: two | bf16}


@pytest.mark.slow
def test_the_policy_and_the_reference_are_sharded(results) -> None:
    one, two = results[1]["kl"], results[2]["kl"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["policy_share"] == 1.0 and one["reference_share"] == 1.0
    assert 0.4 < two["policy_share"] < 0.6 and 0.4 < two["reference_share"] < 0.6  # each process holds ~half
    lora = results[2]["lora_kl"]
    assert 0.4 < lora["policy_share"] < 0.6 and lora["reference_share"] is None  # the reference: adapters off
    for name in UPDATES:  # log-probs from the hidden states, sharded too
        assert results[1][name]["from_hidden"] and results[2][name]["from_hidden"], name


@pytest.mark.slow
@pytest.mark.parametrize("name", UPDATES)
def test_the_sharded_update_is_the_one_process_update(results, name: str) -> None:
    one, two = results[1][name], results[2][name]
    assert max(float(d.abs().max()) for d in one["delta"]) > 1e-4  # something was learned
    for a, b in zip(one["delta"], two["delta"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    for key in ("loss/total", "reward/mean", "adv/std", "grad_norm"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5, abs=1e-7), key
    assert two["metrics"]["update/optimizer_steps"] == one["metrics"]["update/optimizer_steps"]


@pytest.mark.slow
def test_an_idle_rank_pads_its_micro_batches(results) -> None:
    assert results[2]["idle_rank"]["metrics"]["groups/trained"] == 1.0  # one group: the other process had none


@pytest.mark.slow
def test_the_kl_is_zero_at_step_one(results) -> None:
    assert results[2]["kl"]["metrics"]["loss/kl"] == 0.0
    assert results[2]["lora_kl"]["metrics"]["loss/kl"] == 0.0
    m = results[2]["reward_kl"]["metrics"]
    assert m["reward/shaped_mean"] == m["reward/mean"]


@pytest.mark.slow
def test_bf16_mixed_precision_shards_too(results) -> None:
    """bf16 autocast and FSDP2's bf16 parameters: the KL is still exactly 0, the update near the fp32 one."""
    got, fp32 = results[2]["kl_bf16"], results[1]["kl"]
    assert got["metrics"]["loss/kl"] == 0.0 and 0.4 < got["policy_share"] < 0.6
    for a, b in zip(fp32["delta"], got["delta"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-3)  # measured 7.7e-4, updates up to 0.075


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["HFGenerator", "LeanGenerator"])
def test_evaluation_generates_from_the_gathered_weights(results, engine: str) -> None:
    for name in UPDATES:
        one, two = results[1][name][f"eval/{engine}"], results[2][name][f"eval/{engine}"]
        assert set(one) == set(two) and "eval/greedy/accuracy" in one
        for key, value in one.items():
            assert two[key] == pytest.approx(value, abs=1e-12), (name, key)
        assert torch.equal(results[1][name][f"ids/{engine}"], results[2][name][f"ids/{engine}"]), name


@pytest.mark.slow
def test_save_and_resume_under_fsdp2_are_exact(results) -> None:
    for processes in (1, 2):
        assert results[processes]["resume"]["equal"], results[processes]["resume"]["max_diff"]
    files = results[2]["resume"]["files"]
    assert {"sharded/.metadata", "sharded/__0_0.distcp", "sharded/__1_0.distcp", "rng-0.pt", "rng-1.pt",
            "state.json"} <= set(files), files
    assert "model.safetensors" not in files and "optimizer.pt" not in files


@pytest.mark.slow
def test_a_sharded_checkpoint_resumes_in_one_unsharded_process(results) -> None:
    got = results[2]["resume"]
    model, tok = tiny()
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, TrainConfig(
        steps=2, prompts_per_step=4, group_size=4, output_dir=got["run"], progress=False))
    with pytest.warns(UserWarning, match="single process"):  # torch.distributed.checkpoint, without a group
        trainer.resume()
    assert trainer.step == 2
    for a, b in zip(trainer.model.parameters(), got["weights"], strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_the_final_save_holds_the_whole_weights(results) -> None:
    got = results[2]["resume"]
    saved = AutoModelForCausalLM.from_pretrained(got["final"])
    for a, b in zip(saved.parameters(), got["weights"], strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_fsdp_asked_but_not_granted_is_refused(results) -> None:
    message = results[2]["refused"]
    assert message is not None and "ACCELERATE_USE_FSDP" in message and "MULTI_CPU" in message, message


@pytest.mark.slow
def test_vllm_is_refused_under_fsdp2(results) -> None:
    message = results[2]["vllm_refused"]
    assert message is not None and "generator='vllm' is not supported under FSDP2" in message, message


def test_deepspeed_is_refused_with_what_works(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    model, tok = tiny()
    with pytest.raises(ConfigError, match=r"DeepSpeed is not supported.*FSDP2"):
        Trainer(model, tok, "grpo", rows(4), REWARDS, TrainConfig(steps=1, prompts_per_step=4, group_size=4,
                output_dir=str(tmp_path), progress=False))


def test_the_example_accelerate_config_asks_for_fsdp2_per_layer() -> None:
    env = launcher_environment(EXAMPLE)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
