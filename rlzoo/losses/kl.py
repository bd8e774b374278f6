"""Per-token KL estimators k1, k2, k3 (Schulman, "Approximating KL Divergence", 2020) and k3_iw.

The same component serves as a loss term (``Objective(kl=..., kl_coef=...)``) and, detached and
summed over each sequence by the trainer, as a reward-side penalty. ``d = ref_logp - logp``.

An estimator with the class marker ``needs_old_logp = True`` (k3_iw) is called as
``kl(logp, ref_logp, old_logp=old_logp)``; the others as ``kl(logp, ref_logp)``.
"""

from dataclasses import dataclass
from typing import ClassVar

from jaxtyping import Float
from torch import Tensor

from rlzoo.errors import DataError
from rlzoo.losses import KL_ESTIMATORS
from rlzoo.losses._common import LOG_RATIO_CLAMP, k3_value
from rlzoo.params import component_label


@dataclass(frozen=True)
class _KLEstimator:
    straight_through: bool = False

    def value(self, d: Float[Tensor, "b t"]) -> Float[Tensor, "b t"]:
        raise NotImplementedError

    def __call__(self, logp: Float[Tensor, "b t"], ref_logp: Float[Tensor, "b t"]) -> Float[Tensor, "b t"]:
        d = ref_logp - logp
        value = self.value(d)
        if not self.straight_through:
            return value
        k2 = 0.5 * d.square()
        return value.detach() + (k2 - k2.detach())


@KL_ESTIMATORS.register("k1")
@dataclass(frozen=True)
class K1(_KLEstimator):
    """k1 = -d = logp - ref_logp, d = ref_logp - logp (Schulman 2020).

    Implementation details:

    1. Unbiased for KL(pi || ref) on samples of pi, but negative on some tokens; the usual
       reward-side penalty (REINFORCE++, RLOO).
    2. ``straight_through=True`` keeps the value and takes k2's gradient (verl's ``k1+``).
    3. Values at padding positions are whatever the inputs give: mask them (the Objective does).
    """

    def value(self, d: Float[Tensor, "b t"]) -> Float[Tensor, "b t"]:
        return -d


@KL_ESTIMATORS.register("k2")
@dataclass(frozen=True)
class K2(_KLEstimator):
    """k2 = d²/2, d = ref_logp - logp (Schulman 2020).

    Implementation details:

    1. Biased, always >= 0; as a loss its expected gradient is that of the reverse KL.
    2. ``straight_through`` changes nothing here (value and gradient are already k2's).
    3. Values at padding positions are whatever the inputs give: mask them (the Objective does).
    """

    def value(self, d: Float[Tensor, "b t"]) -> Float[Tensor, "b t"]:
        return 0.5 * d.square()


@KL_ESTIMATORS.register("k3")
@dataclass(frozen=True)
class K3(_KLEstimator):
    """k3 = exp(d) - d - 1, d = ref_logp - logp (Schulman 2020; GRPO arXiv 2402.03300 Eq. 4, β = 0.04).

    Implementation details:

    1. Unbiased for KL(pi || ref) on samples of pi and always >= 0; as a loss its expected
       gradient is that of the forward KL.
    2. ``exp`` sees ``d`` clamped at 20 (the ratio's clamp), so a collapsed token gives a large
       finite value instead of inf; verl instead clamps the k3 value itself to [-10, 10].
    3. ``straight_through=True`` keeps the value and takes k2's gradient (verl's ``low_var_kl+``).
    4. Values at padding positions are whatever the inputs give: mask them (the Objective does).
    """

    def value(self, d: Float[Tensor, "b t"]) -> Float[Tensor, "b t"]:
        return k3_value(d)


@KL_ESTIMATORS.register("k3_iw")
@dataclass(frozen=True)
class K3ImportanceWeighted:
    """k3_iw = r·k3, r = exp(logp - old_logp) NOT detached, k3 = exp(d) - d - 1 (DeepSeek-V3.2 arXiv 2512.02556).

    Implementation details:

    1. The "unbiased KL" of DeepSeek-V3.2: tokens are sampled from π_old, not π, so k3 is
       importance-weighted. The ratio keeps its gradient: ∇(r·k3) = r·(logp - ref_logp)·∇logp,
       the importance-weighted gradient of KL(π || ref); detaching r would bias it.
    2. TRL's ``use_bias_correction_kl`` (default True in TRL 1.16, with β > 0) with the default
       token-level importance sampling. With ``importance_sampling_level="sequence"`` TRL multiplies by the
       geometric-mean sequence ratio instead; that variant is not offered.
    3. Called as ``kl(logp, ref_logp, old_logp=old_logp)`` (class marker ``needs_old_logp``);
       without ``old_logp`` it raises. Reward-side use is pointless: at collection time
       ``old_logp == logp``, so r = 1 and the value is k3's.
    4. ``old_logp`` is detached; the log-ratio is clamped to ±20 before ``exp`` and ``exp(d)``
       sees ``d`` clamped at 20 (as in k3), so a collapsed token stays finite.
    5. Values at padding positions are whatever the inputs give: mask them (the Objective does).
    """

    needs_old_logp: ClassVar[bool] = True

    def __call__(
        self,
        logp: Float[Tensor, "b t"],
        ref_logp: Float[Tensor, "b t"],
        old_logp: Float[Tensor, "b t"] | None = None,
    ) -> Float[Tensor, "b t"]:
        if old_logp is None:
            raise DataError(
                f"{component_label(self)}: needs old_logp, the log-probs of the policy that sampled the tokens: "
                "call it as kl(logp, ref_logp, old_logp=old_logp)"
            )
        ratio = (logp - old_logp.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp()
        return ratio * k3_value(ref_logp - logp)
