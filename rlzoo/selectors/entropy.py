"""Top-ρ entropy token selection ("Beyond the 80/20 rule")."""

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.errors import DataError
from rlzoo.params import check, component_label
from rlzoo.selectors import SELECTORS
from rlzoo.selectors._quantile import linear_quantile
from rlzoo.types import PolicyBatch, Selection


@SELECTORS.register("top_entropy")
@dataclass(frozen=True)
class TopEntropy:
    """Top-ρ entropy tokens: keep K_t = 1[H_t ≥ τ], τ = quantile_{1-ρ}(H of the step's tokens) (arXiv 2506.01939).

    Implementation details:

    1. ``rho = 0.2`` (the paper); TRL's ``top_entropy_quantile`` defaults to 1.0 (off). ``rho = 1``
       keeps every token, ``rho = 0`` only the maximum-entropy token(s).
    2. H_t is the current policy's entropy (``batch.entropy``), detached: selection moves no gradient.
    3. τ is a linear-interpolation quantile (``torch.quantile``'s) over every counted token of the
       whole optimiser step, every micro-batch and process: the trainer computes it once with
       ``Objective.entropy_threshold`` and hands it in as ``batch.entropy_threshold``. Without it
       (None) the micro-batch's own counted tokens give τ, which is the step's quantile when the
       step is one micro-batch on one process. TRL takes one τ per micro-batch, gathered across
       processes but not across gradient-accumulation steps; the paper speaks of a batch-level τ.
    4. Ties: ``≥`` keeps every token tied with τ, so more than a fraction ρ may be kept (all
       tokens when all entropies are equal). No counted token: τ = +inf and nothing is kept.
    5. The keep mask multiplies the per-token policy loss; the denominators still count every
       token (TRL does not renormalise). The entropy bonus uses the same mask
       (``masks_entropy_bonus``); the reference-KL term is not masked.
    6. Metrics: ``select/top_entropy/kept`` (fraction of counted tokens kept) and
       ``select/top_entropy/threshold`` (τ; NaN when there is no counted token).
    """

    rho: float = 0.2

    needs_entropy: ClassVar[bool] = True
    needs_entropy_threshold: ClassVar[bool] = True
    masks_entropy_bonus: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check(self, "rho", 0 <= self.rho <= 1, "must be in [0, 1] (the fraction of tokens kept; 0.2 in the paper)")

    def threshold(self, entropy: Float[Tensor, " N"]) -> Float[Tensor, ""]:
        """τ over the given entropies (those of every counted token of the step); +inf if there are none."""
        return linear_quantile(entropy, 1 - self.rho)

    def __call__(self, batch: PolicyBatch) -> Selection:
        if batch.entropy is None:
            raise DataError(f"{component_label(self)}: needs batch.entropy (the policy's per-token entropy)")
        mask, entropy = batch.mask, batch.entropy.detach()
        tau = batch.entropy_threshold
        if tau is None:
            tau = self.threshold(entropy[mask])
        keep = (entropy >= tau) & mask
        with torch.no_grad():
            kept = keep.sum() / mask.sum().clamp_min(1)
            shown = torch.where(torch.isfinite(tau), tau, torch.nan).to(kept.dtype)
        return Selection(keep, {"select/top_entropy/kept": kept, "select/top_entropy/threshold": shown})
