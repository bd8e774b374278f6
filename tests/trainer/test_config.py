"""TrainConfig validates everything at once, before a model is loaded."""

import pytest

from rlzoo.errors import ConfigError
from rlzoo.trainer import TrainConfig


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(steps=0, group_size=0, top_p=1.5, learning_rate=0.0, temperature=-1.0)
    msg = str(err.value)
    for part in ("steps=0 must be >= 1", "group_size=0 must be >= 1", "top_p=1.5 must be in (0, 1]",
                 "learning_rate=0.0 must be > 0", "temperature=-1.0 must be >= 0"):
        assert part in msg


def test_from_dict_checks_names_and_types(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"stepz": 3, "group_size": "eight"})
    msg = str(err.value)
    assert "unknown parameter 'stepz' (did you mean 'steps'?)" in msg
    assert "parameter 'group_size' expects int, got 'eight'" in msg
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nreport_to: [tensorboard]\nlearning_rate: 1\n")
    cfg = TrainConfig.from_yaml(path)
    assert (cfg.steps, cfg.report_to, cfg.learning_rate) == (7, ("tensorboard",), 1.0)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_a_mistyped_option_gets_the_closest_one() -> None:
    with pytest.raises(ConfigError, match=r"got 'cosin' \(str\) \(did you mean 'cosine'\?\)"):
        TrainConfig.from_dict({"lr_schedule": "cosin"})


def test_the_default_generator_is_auto_and_a_misspelt_one_is_refused() -> None:
    assert TrainConfig().generator == "auto"
    with pytest.raises(ConfigError, match=r"did you mean 'lean'"):
        TrainConfig.from_dict({"generator": "lena"})
