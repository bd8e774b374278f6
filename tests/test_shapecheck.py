"""The suite runs with jaxtyping + beartype shape checking on for the whole package."""

import pytest
import torch
from jaxtyping import TypeCheckError

import rlzoo


def test_shape_mismatch_in_a_public_function_is_caught() -> None:
    groups = rlzoo.Groups(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.long))
    estimator = rlzoo.advantages.build("grpo")
    with pytest.raises(TypeCheckError):
        estimator(torch.zeros(2, 3))  # a tensor is not Groups
    assert estimator(groups).shape == (2, 3)


def test_checked_dataclass_fields() -> None:
    with pytest.raises((TypeCheckError, rlzoo.DataError)):
        rlzoo.Groups(torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.long))
