"""Combining the metrics of a step's parts (micro-batches, optimiser steps)."""

import math

from rlzoo.trainer.metrics import ADDITIVE, combine_parts


def test_loss_shares_add_extremes_are_kept_the_rest_average() -> None:
    parts = [
        {"loss/policy": 0.25, "rollout/logp_diff_max": 0.1, "correction/ratio_min": 0.9, "clip/frac": 0.2},
        {"loss/policy": 0.5, "rollout/logp_diff_max": 0.3, "correction/ratio_min": 0.7, "clip/frac": 0.4},
    ]
    out = combine_parts(parts, ADDITIVE)
    assert out == {"loss/policy": 0.75, "rollout/logp_diff_max": 0.3, "correction/ratio_min": 0.7,
                   "clip/frac": 0.30000000000000004}
    assert combine_parts(parts)["loss/policy"] == 0.375  # without ``add``: a mean (over optimiser steps)


def test_nan_parts() -> None:
    out = combine_parts([{"correction/ratio_max": math.nan, "x": math.nan}, {"correction/ratio_max": 2.0, "x": 1.0}])
    assert out["correction/ratio_max"] == 2.0  # an extreme of the known values
    assert math.isnan(out["x"])  # a mean over a NaN part stays NaN
    assert math.isnan(combine_parts([{"adv/max": math.nan}])["adv/max"])
