"""Rollout plumbing: EOS masking, left-padded prompts, joining and selecting groups."""

import torch

from rlzoo.tasks import build_tokenizer
from rlzoo.trainer.engines.base import (
    completion_mask,
    concat_rollouts,
    encode_prompts,
    eos_token_ids,
    rollout_from_ids,
    select_groups,
)

EOS = 9


def test_completion_mask_includes_first_eos_only() -> None:
    ids = torch.tensor([[5, 6, EOS, 7, EOS], [5, 5, 5, 5, 5], [EOS, 1, 1, 1, 1]])
    assert completion_mask(ids, (EOS,)).tolist() == [
        [True, True, True, False, False],
        [True] * 5,
        [True, False, False, False, False],
    ]


def test_rollout_from_ids_pads_after_eos_and_flags_truncation() -> None:
    tok = build_tokenizer()
    prompts = encode_prompts(tok, ["1+2=", "10+20="], torch.device("cpu"))
    assert prompts.mask[0].tolist()[:2] == [False, False]  # left padding
    assert tok.batch_decode(prompts.ids, skip_special_tokens=True) == ["1+2=", "10+20="]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    digit = tok.convert_tokens_to_ids("3")
    raw = torch.tensor([[digit, eos, digit], [digit, digit, digit]])
    r = rollout_from_ids(tok, prompts, raw)
    assert r.completion_ids.tolist() == [[digit, eos, pad], [digit, digit, digit]]
    assert r.lengths.tolist() == [2, 3] and r.truncated.tolist() == [False, True]
    assert r.texts == ["3", "333"] and r.group_size == 1


def test_select_and_concat_keep_groups_whole() -> None:
    tok = build_tokenizer()
    cpu = torch.device("cpu")
    a = rollout_from_ids(tok, encode_prompts(tok, ["1+1=", "2+2="], cpu), torch.arange(4 * 2).view(4, 2) % 5 + 4)
    b = rollout_from_ids(tok, encode_prompts(tok, ["33+33="], cpu), torch.full((2, 3), 5))
    picked = select_groups(a, torch.tensor([1]))
    assert picked.texts == a.texts[2:] and torch.equal(picked.prompt_ids, a.prompt_ids[1:])
    joined = concat_rollouts([picked, b], tok.pad_token_id)
    assert joined.prompt_ids.shape == (2, b.prompt_ids.shape[1]) and joined.completion_ids.shape == (4, 3)
    assert joined.texts == picked.texts + b.texts
    assert joined.lengths.tolist() == [*picked.lengths.tolist(), 3, 3]
    assert tok.batch_decode(joined.prompt_ids, skip_special_tokens=True) == ["2+2=", "33+33="]


def test_several_eos_tokens_end_a_completion() -> None:
    ids = torch.tensor([[5, 7, 6, EOS], [5, 6, 6, 6]])
    assert completion_mask(ids, (EOS, 7)).tolist() == [[True, True, False, False], [True] * 4]


def test_eos_ids_come_from_the_tokenizer_and_the_generation_config() -> None:
    from tests.trainer.helpers import tiny

    model, tok = tiny()
    model.generation_config.eos_token_id = [tok.eos_token_id, 7]
    assert eos_token_ids(tok) == (tok.eos_token_id,)
    assert eos_token_ids(tok, model) == (tok.eos_token_id, 7)


def test_long_prompts_keep_their_last_tokens_and_too_long_ones_are_refused() -> None:
    import pytest

    from rlzoo.errors import DataError

    tok = build_tokenizer()
    cpu = torch.device("cpu")
    whole = encode_prompts(tok, ["12+34+56=", "1="], cpu)
    cut = encode_prompts(tok, ["12+34+56=", "1="], cpu, max_length=4)
    assert cut.truncated.tolist() == [True, False] and cut.ids.shape[1] == 4
    assert cut.ids[0].tolist() == whole.ids[0, -4:].tolist()
    with pytest.raises(DataError, match=r"prompt 0 of this batch .* more than the model's 5 positions"):
        encode_prompts(tok, ["12+34+56=", "1="], cpu, max_positions=5)


def test_chat_prompts_go_through_the_chat_template_without_extra_special_tokens() -> None:
    import pytest

    from rlzoo.errors import DataError

    tok = build_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}={% endif %}"
    cpu = torch.device("cpu")
    chat = encode_prompts(tok, [[{"role": "user", "content": "1+2"}]], cpu)
    plain = encode_prompts(tok, ["1+2="], cpu)
    with_specials = tok("1+2=")["input_ids"]
    without = tok("1+2=", add_special_tokens=False)["input_ids"]
    assert plain.ids[0].tolist() == with_specials and chat.ids[0].tolist() == without
    with pytest.raises(DataError, match="mixes chat prompts"):
        encode_prompts(tok, ["1+2=", [{"role": "user", "content": "1+2"}]], cpu)
