"""Checkpoints: atomic, complete, and restored with weights-only loading."""

import random

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt


def save(root, step, model, opt):
    return save_checkpoint(root, step, model=model, optimizer=opt, state={"data_position": 7},
                           rank=0, is_main=True, barrier=lambda: None)


def test_round_trip_restores_everything(tmp_path) -> None:
    model, opt = state(0)
    random.seed(3)
    torch.manual_seed(4)
    path = save(tmp_path, 5, model, opt)
    expected = (random.random(), torch.rand(2))
    model2, opt2 = state(1)
    info = load_checkpoint(path, model=model2, optimizer=opt2, rank=0)
    assert info["step"] == 5 and info["data_position"] == 7
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True))
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], opt2.state_dict()["state"][0]["exp_avg"])
    assert (random.random(), torch.rand(2))[0] == expected[0]


def test_crash_mid_write_leaves_latest_intact(tmp_path) -> None:
    model, opt = state(0)
    good = save(tmp_path, 1, model, opt)
    (tmp_path / "step-000002.tmp").mkdir()  # a write that died half way
    (tmp_path / "step-000002.tmp" / "model.safetensors").write_bytes(b"garbage")
    assert latest_checkpoint(tmp_path) == good
    assert save(tmp_path, 2, model, opt) == latest_checkpoint(tmp_path)  # the next save cleans up


def test_incomplete_checkpoint_is_named(tmp_path) -> None:
    model, opt = state(0)
    path = save(tmp_path, 1, model, opt)
    (path / "optimizer.pt").unlink()
    with pytest.raises(ConfigError, match=r"incomplete: missing optimizer\.pt"):
        load_checkpoint(path, model=model, optimizer=opt, rank=0)
