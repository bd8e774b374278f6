"""Plain REINFORCE: the policy gradient with no importance ratio."""

from dataclasses import dataclass
from typing import ClassVar

from rlzoo.losses import POLICY_LOSSES
from rlzoo.losses._common import Level, PolicyTerm, importance_ratio, sampler_metrics, token_inputs
from rlzoo.types import PolicyBatch


@POLICY_LOSSES.register("reinforce")
@dataclass(frozen=True)
class Reinforce:
    """REINFORCE: ℓ = -A·logp (Williams 1992; the loss of RAFT and GPG, arXiv 2504.11343, 2504.02546).

    Implementation details:

    1. No ratio and no clip: correct on-policy (one optimisation pass per batch); with several
       passes use a ratio-based loss.
    2. The ``ratio/*`` and ``kl/sampler`` metrics still report how far the current policy is from
       the sampler.
    3. Advantages are detached; padding positions are zeroed before any arithmetic.
    """

    uses_advantages: ClassVar[bool] = True
    level: ClassVar[Level] = "token"

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, old_logp, adv, mask = token_inputs(batch)
        ratio = importance_ratio(logp, old_logp, mask, "token").detach()
        return PolicyTerm(-adv * logp, sampler_metrics(batch, ratio, mask))
