"""The linear-interpolation quantile of ``torch.quantile``, without its 2**24-element limit (registers nothing)."""

import torch
from jaxtyping import Float
from torch import Tensor


def linear_quantile(values: Float[Tensor, " N"], q: float) -> Float[Tensor, ""]:
    """The ``q``-quantile of ``values`` with linear interpolation, ``+inf`` when there are none.

    Bit for bit what ``torch.quantile(values, q)`` (interpolation="linear") gives: the rank
    ``q · (N - 1)`` is formed in the values' dtype, and the two neighbours are combined with
    ``lerp``. One sort, no host synchronisation, and no limit on ``N`` (``torch.quantile`` refuses
    more than 2**24 elements, which a large step's tokens exceed; past it the rank is formed in
    float64). Half-precision values are computed in float32.
    """
    values = values.detach().flatten()
    if not values.is_floating_point() or values.dtype in (torch.float16, torch.bfloat16):
        values = values.float()  # torch.quantile takes float32 and float64 only
    n = values.numel()
    if n == 0:
        return values.new_tensor(float("inf"))
    ordered = values.sort().values
    # the rank in the values' dtype, as torch.quantile; beyond its 2**24 limit float32 cannot hold it exactly
    rank = torch.tensor(q, dtype=values.dtype if n <= 2**24 else torch.float64, device=values.device) * (n - 1)
    below = rank.long()
    above = rank.ceil().long()
    return ordered[below].lerp(ordered[above], (rank - below).to(values.dtype))
