"""Rollout corrections (``PolicyBatch -> Correction``): importance weights for the gap between the
inference engine that sampled the completions and the trainer that scores them (ALGORITHMS.md II.7).

An engine such as vLLM samples with its own kernels and precision, so the log-probs it sampled a
token with (``batch.rollout_logp``) differ from the trainer's (``batch.old_logp``, the policy that
sampled, recomputed by the trainer). A correction turns that gap into a weight per token, which
:class:`rlzoo.losses.Objective` (``correction=...``) multiplies into the per-token *policy* loss
after the loss computed it (after clipping): the KL and entropy terms and the loss normalisers are
unchanged. Without ``rollout_logp`` (an engine that does not report them: HF ``generate``, the lean
loop) a correction is a no-op, as TRL applies its correction only with vLLM.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from jaxtyping import Float
from torch import Tensor

from rlzoo.registry import Registry


@dataclass(frozen=True)
class Correction:
    """What a rollout correction returns: a weight per token (1 where nothing changes) and metrics.

    Args:
        weight: detached, multiplies the per-token policy loss; 0 drops a token (mask modes).
        metrics: detached scalar tensors (micro-batch values).
    """

    weight: Float[Tensor, "b t"]
    metrics: Mapping[str, Tensor] = field(default_factory=dict)


CORRECTIONS: Registry = Registry("rollout correction", entry_point_group="rlzoo.corrections")

build = CORRECTIONS.build

# Each module registers its components on import.
from rlzoo.corrections import importance  # noqa: E402

__all__ = ["CORRECTIONS", "Correction", "build", "importance"]
