"""YAML text loads with YAML 1.2 floats: 1e-5 is a number, 50 an int, abc a string."""

import math

import pytest
import yaml

from rlzoo.trainer import TrainConfig
from rlzoo.yamlio import load

# The forms of issue 12, each with the value and type it must load as (PyYAML alone: '1e-5' a str).
FORMS = [("1e-5", 1e-5), ("-1e-4", -1e-4), ("5E-6", 5e-6), ("1.0e37", 1e37), ("3", 3), ("0.5", 0.5), ("abc", "abc")]


@pytest.mark.parametrize(("text", "value"), FORMS)
def test_issue_forms_load_with_their_type(text: str, value: object) -> None:
    loaded = load(text)
    assert loaded == value and type(loaded) is type(value)


def test_other_yaml_1_2_floats_and_what_stays_as_it_was() -> None:
    assert [load(t) for t in ("+1e3", ".5", "1.", "-2.5E+2", ".inf", "-.inf", "-7", "0")] == [
        1000.0, 0.5, 1.0, -250.0, math.inf, -math.inf, -7, 0
    ]
    assert math.isnan(load(".nan"))
    assert [type(load(t)) for t in ("-7", "0", "50")] == [int, int, int]
    # not numbers in YAML 1.2: junk after the exponent, and YAML 1.1's underscores in floats
    assert [load(t) for t in ("1e5x", "1e", "e5", "1_000.5")] == ["1e5x", "1e", "e5", "1_000.5"]
    assert load("{lr: 1e-3, betas: [0.9, 9.99e-1], flag: true, cap: null}") == {
        "lr": 1e-3, "betas": [0.9, 0.999], "flag": True, "cap": None
    }
    assert yaml.safe_load("1e-5") == "1e-5"  # PyYAML's own loader is unchanged


def test_loader_stays_safe() -> None:
    with pytest.raises(yaml.YAMLError):
        load("!!python/object/apply:os.system ['echo unsafe']")


def test_train_config_file_reads_exponents(tmp_path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("learning_rate: 1e-5\nweight_decay: 1.0E-2\nsteps: 50\n")
    cfg = TrainConfig.from_yaml(path)
    assert (cfg.learning_rate, cfg.weight_decay, cfg.steps) == (1e-5, 1e-2, 50) and type(cfg.steps) is int
