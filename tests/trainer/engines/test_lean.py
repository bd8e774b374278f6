"""LeanGenerator against Hugging Face generate: same tokens greedily, same sampling rule."""

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from rlzoo.errors import ConfigError
from rlzoo.tasks import build_tokenizer
from rlzoo.trainer import HFGenerator, Trainer
from rlzoo.trainer.engines.base import Prompts, encode_prompts
from rlzoo.trainer.engines.lean import LeanGenerator, _pick
from tests.trainer.helpers import REWARDS, config, rows, tiny

# Different prompt lengths, so the batch is left-padded.
PROMPTS = ["1+2=", "37+48+55=", "9+9=", "12+3+45=", "5=", "80+7+66="]


def encoded(tok, prompts: list[str]) -> Prompts:
    return encode_prompts(tok, prompts, torch.device("cpu"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These ops are tiny: one thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def llama(seed: int, **changes) -> LlamaForCausalLM:
    """A 2-layer Llama over the char tokenizer; ``changes`` edit its config (GQA, biases, RoPE).

    Large random weights (std 1) make greedy continuations depend on the prompt.
    """
    tok = build_tokenizer()
    base = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "intermediate_size": 48,
        "max_position_embeddings": 128,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "initializer_range": 1.0,
    }
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**(base | changes))).eval()


def varied_stop(model, tok, max_new_tokens: int) -> str:
    """A character that greedy decoding first emits at many different steps, to act as the EOS.

    A random model rarely emits its real EOS greedily; with this one the rows finish apart.
    """
    ids = HFGenerator()(
        model, tok, encoded(tok, PROMPTS), group_size=1, max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0
    ).completion_ids

    def distinct_first_steps(token: int) -> int:
        hits = ids == token
        return len(set(hits.int().argmax(1)[hits.any(1)].tolist()))

    return tok.convert_ids_to_tokens(max(range(4, len(tok)), key=distinct_first_steps))


CASES = {
    "mha": {},
    "gqa": {"num_key_value_heads": 2},
    "mqa_biases": {"num_key_value_heads": 1, "attention_bias": True, "mlp_bias": True},
    "llama3_rope": {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 32}},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_identical_to_generate(case: str) -> None:
    model = llama(0, **CASES[case])
    if case == "mqa_biases":  # random biases, so a wrong placement shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                torch.nn.init.normal_(p, std=0.5)
    tok = build_tokenizer()
    tok.eos_token = varied_stop(model, tok, 40)
    kwargs = {"group_size": 1, "max_new_tokens": 40, "temperature": 0.0, "top_p": 1.0}
    ref = HFGenerator()(model, tok, encoded(tok, PROMPTS), **kwargs)
    got = LeanGenerator()(model, tok, encoded(tok, PROMPTS), **kwargs)
    lengths = set(ref.lengths.tolist())
    assert len(lengths) >= 3, f"rows should stop at different steps (so finished rows get dropped): {lengths}"
    assert torch.equal(got.completion_ids, ref.completion_ids)
    assert not got.completion_ids.is_inference()  # sampled in inference mode, handed out as ordinary ids
    assert torch.equal(got.completion_mask, ref.completion_mask)
    assert got.texts == ref.texts
    assert torch.equal(got.truncated, ref.truncated)


def test_same_seed_same_samples_as_generate() -> None:
    """Before any row finishes, both draw one multinomial over all rows per step: identical samples."""
    model, tok = llama(1), build_tokenizer()
    tok.eos_token = "<unk>"  # an id this model gives probability ~1/28 per step
    kwargs = {"group_size": 4, "max_new_tokens": 3, "temperature": 0.7, "top_p": 0.8}
    torch.manual_seed(5)
    ref = HFGenerator()(model, tok, encoded(tok, PROMPTS), **kwargs)
    torch.manual_seed(5)
    got = LeanGenerator()(model, tok, encoded(tok, PROMPTS), **kwargs)
    assert torch.equal(got.completion_ids, ref.completion_ids)


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.9), (1.3, 0.5), (1.0, 0.05)])
def test_pick_is_hf_sampling(temperature: float, top_p: float) -> None:
    """Same filtered distribution and the same draws as HF's warpers + softmax + multinomial."""
    logits = torch.randn(64, 28, generator=torch.Generator().manual_seed(0)) * 3
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    probs = warpers(None, logits.clone()).softmax(-1)
    torch.manual_seed(11)
    expected = torch.multinomial(probs, 1).squeeze(1)
    torch.manual_seed(11)
    assert torch.equal(_pick(logits, temperature, top_p), expected)


def test_top_p_keeps_the_nucleus() -> None:
    """probs 0.5, 0.3, 0.15, 0.05 with top_p 0.75: the tail 0.05+0.15 = 0.2 <= 0.25 is dropped."""
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(4000, 4)
    torch.manual_seed(0)
    counts = torch.bincount(_pick(logits, 1.0, 0.75), minlength=4).float() / 4000
    assert counts[2:].sum() == 0
    # renormalised nucleus: 0.5/0.8 = 0.625, 0.3/0.8 = 0.375; 4000 draws: sd ~0.008
    assert abs(counts[0] - 0.625) < 0.04 and abs(counts[1] - 0.375) < 0.04


def test_first_token_follows_the_model() -> None:
    """Empirical first-token frequencies over 4000 samples match the model's softmax (|diff| < 0.03)."""
    model, tok = llama(2), build_tokenizer()
    ids = tok(["37+48+55="], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = (model(ids).logits[0, -1] / 1.5).softmax(-1)
    torch.manual_seed(3)
    out = LeanGenerator()(model, tok, encoded(tok, ["37+48+55="]), group_size=4000, max_new_tokens=1, temperature=1.5, top_p=1.0)
    freq = torch.bincount(out.completion_ids[:, 0], minlength=probs.numel()).float() / 4000
    assert (freq - probs).abs().max() < 0.03  # binomial sd <= 0.008


def test_trains_with_the_trainer_when_the_config_names_it(tmp_path) -> None:
    model, tok = tiny()
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, config(tmp_path, steps=1, generator="lean"))
    assert isinstance(trainer.generator, LeanGenerator)
    (h,) = trainer.train()
    assert 1 <= h["length/mean"] <= 12 and h["time/generate"] > 0


def test_other_architectures_are_refused(tmp_path) -> None:
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=28, n_positions=32))
    with pytest.raises(ConfigError, match=r"LeanGenerator: model_type 'gpt2' is not supported.*HFGenerator"):
        LeanGenerator()(model, build_tokenizer(), encoded(build_tokenizer(), PROMPTS), group_size=2, max_new_tokens=4, temperature=1.0, top_p=1.0)
    with pytest.raises(ConfigError, match=r"model_type 'gpt2' is not supported.*generator='hf'"):
        Trainer(model, build_tokenizer(), "grpo", rows(8), REWARDS, config(tmp_path, generator="lean"))
