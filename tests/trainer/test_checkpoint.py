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


def test_saving_a_saved_step_again_changes_nothing(tmp_path) -> None:
    model, opt = state(0)
    first = save(tmp_path, 3, model, opt)
    stamp = (first / "state.json").stat().st_mtime_ns
    assert save(tmp_path, 3, model, opt) == first
    assert (first / "state.json").stat().st_mtime_ns == stamp and latest_checkpoint(tmp_path) == first


@pytest.mark.parametrize("pointer", ["step-000009", "../..", "/etc", "", "step-000002"])
def test_a_broken_latest_falls_back_to_the_newest_complete_checkpoint(tmp_path, pointer: str) -> None:
    model, opt = state(0)
    save(tmp_path, 1, model, opt)
    newest = save(tmp_path, 2, model, opt)
    if pointer == "step-000002":  # it names a folder that lost a file
        (newest / "optimizer.pt").unlink()
        newest = tmp_path / "step-000001"
    (tmp_path / "latest").write_text(pointer)
    assert latest_checkpoint(tmp_path) == newest


def test_only_the_newest_checkpoints_are_kept(tmp_path) -> None:
    model, opt = state(0)
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model=model, optimizer=opt, state={}, rank=0, is_main=True,
                        barrier=lambda: None, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000004", "step-000005"]


def test_non_finite_weights_are_never_saved(tmp_path) -> None:
    model, opt = state(0)
    good = save(tmp_path, 1, model, opt)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(ConfigError, match=r"step 2: 1 parameter\(s\) hold NaN or inf \(first: weight\)"):
        save(tmp_path, 2, model, opt)
    assert latest_checkpoint(tmp_path) == good and not (tmp_path / "step-000002").exists()
