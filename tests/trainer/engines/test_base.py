"""Rollout plumbing: EOS masking, left-padded prompts, joining and selecting groups."""

import torch

from rlzoo.tasks import build_tokenizer
from rlzoo.trainer.engines.base import (
    completion_mask,
    concat_rollouts,
    rollout_from_ids,
    select_groups,
    tokenize_prompts,
)

EOS = 9


def test_completion_mask_includes_first_eos_only() -> None:
    ids = torch.tensor([[5, 6, EOS, 7, EOS], [5, 5, 5, 5, 5], [EOS, 1, 1, 1, 1]])
    assert completion_mask(ids, EOS).tolist() == [
        [True, True, True, False, False],
        [True] * 5,
        [True, False, False, False, False],
    ]


def test_rollout_from_ids_pads_after_eos_and_flags_truncation() -> None:
    tok = build_tokenizer()
    prompt_ids, prompt_mask = tokenize_prompts(tok, ["1+2=", "10+20="], torch.device("cpu"))
    assert prompt_mask[0].tolist()[:2] == [False, False]  # left padding
    assert tok.batch_decode(prompt_ids, skip_special_tokens=True) == ["1+2=", "10+20="]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    digit = tok.convert_tokens_to_ids("3")
    raw = torch.tensor([[digit, eos, digit], [digit, digit, digit]])
    r = rollout_from_ids(tok, prompt_ids, prompt_mask, raw)
    assert r.completion_ids.tolist() == [[digit, eos, pad], [digit, digit, digit]]
    assert r.lengths.tolist() == [2, 3] and r.truncated.tolist() == [False, True]
    assert r.texts == ["3", "333"] and r.group_size == 1


def test_select_and_concat_keep_groups_whole() -> None:
    tok = build_tokenizer()
    p1, m1 = tokenize_prompts(tok, ["1+1=", "2+2="], torch.device("cpu"))
    a = rollout_from_ids(tok, p1, m1, torch.arange(4 * 2).view(4, 2) % 5 + 4)  # g = 2
    p2, m2 = tokenize_prompts(tok, ["33+33="], torch.device("cpu"))
    b = rollout_from_ids(tok, p2, m2, torch.full((2, 3), 5))
    picked = select_groups(a, torch.tensor([1]))
    assert picked.texts == a.texts[2:] and torch.equal(picked.prompt_ids, a.prompt_ids[1:])
    joined = concat_rollouts([picked, b], tok.pad_token_id)
    assert joined.prompt_ids.shape == (2, b.prompt_ids.shape[1]) and joined.completion_ids.shape == (4, 3)
    assert joined.texts == picked.texts + b.texts
    assert joined.lengths.tolist() == [*picked.lengths.tolist(), 3, 3]
    assert tok.batch_decode(joined.prompt_ids, skip_special_tokens=True) == ["2+2=", "33+33="]
