"""The character tokenizer, the model config and the shipped warm start."""

import random

import pytest
import torch
from transformers import AutoTokenizer

from rlzoo.tasks import DEFAULT, evaluate, load_model
from rlzoo.tasks.arithmetic import make_split, solution_trace
from rlzoo.tasks.model import ALPHABET, ASSETS, build_tokenizer, new_model

# Greedy accuracy of the shipped warm start on make_split("eval", 64, seed=0), measured at
# 43/64 = 0.672 (0.716 on 500 prompts); the band leaves room for float differences across machines.
SHIPPED_GREEDY_BAND = (0.55, 0.85)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def test_round_trip_is_exact_without_spaces(tokenizer) -> None:
    rng = random.Random(0)
    texts = [ALPHABET, "140", "37+48+55="]
    texts += [
        solution_trace(rng.randint(10, 99), rng.randint(10, 99), rng.randint(10, 99), rng) for _ in range(50)
    ]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text)  # one token per character, the space included
        assert tokenizer.decode(ids) == text
    assert tokenizer.decode(tokenizer("#140")["input_ids"], skip_special_tokens=True) == "#140"


def test_special_tokens(tokenizer) -> None:
    assert len(tokenizer) == 4 + len(ALPHABET) == 24
    specials = [
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.unk_token_id,
    ]
    assert sorted(specials) == [0, 1, 2, 3]
    ids = tokenizer("12+3=")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == 6  # BOS prepended, EOS not appended
    assert tokenizer("x", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    assert tokenizer.decode([tokenizer.bos_token_id, 5, tokenizer.eos_token_id]) == "<bos>1<eos>"


def test_left_padding(tokenizer) -> None:
    enc = tokenizer(["12+34+56=", "1+2="], padding=True, return_tensors="pt")
    assert tokenizer.padding_side == "left"
    pad = tokenizer.pad_token_id
    # row 1 is 5 ids (BOS + 4 characters) in a width of 10: five pads first
    assert enc["input_ids"][1, :5].tolist() == [pad] * 5
    assert enc["attention_mask"].tolist() == [[1] * 10, [0] * 5 + [1] * 5]
    assert tokenizer.batch_decode(enc["input_ids"], skip_special_tokens=True) == ["12+34+56=", "1+2="]


def test_new_model_size_and_tied_embeddings(tokenizer) -> None:
    model = new_model(tokenizer)
    # embeddings 24*64 + 8 layers * (attention 4*64*64 + MLP 3*64*256 + two norms 2*64) + final norm 64
    expected = 24 * 64 + 8 * (4 * 64 * 64 + 3 * 64 * 256 + 2 * 64) + 64
    assert sum(p.numel() for p in model.parameters()) == expected == 526_912
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.config.eos_token_id == tokenizer.eos_token_id


def test_shipped_assets_load_offline_and_match_the_built_tokenizer(shipped, tokenizer) -> None:
    model, loaded = shipped
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in ASSETS.iterdir()}
    assert AutoTokenizer.from_pretrained(ASSETS, local_files_only=True).get_vocab() == tokenizer.get_vocab()
    assert (
        loaded.padding_side == "left"
        and loaded.decode(loaded("9+9=")["input_ids"], skip_special_tokens=True) == "9+9="
    )
    assert not model.training and model.dtype == torch.float32 and model.device.type == "cpu"
    assert DEFAULT.load_model is load_model and DEFAULT.max_completion_length == 96


def test_shipped_greedy_accuracy_is_in_the_useful_band(shipped) -> None:
    model, tokenizer = shipped
    metrics = evaluate(model, tokenizer, make_split("eval", 64, seed=0), greedy=True)
    lo, hi = SHIPPED_GREEDY_BAND
    assert lo <= metrics["accuracy"] <= hi, metrics
    assert metrics["truncated"] == 0.0 and 26 <= metrics["length"] <= 50, metrics  # shortest trace: 24


def test_loading_shows_no_weight_bar_and_leaves_the_setting_alone(capfd) -> None:
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    load_model()
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
