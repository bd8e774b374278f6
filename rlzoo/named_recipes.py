"""The named recipes: each a paper's combination, a subclass of :class:`rlzoo.recipes.Recipe` that
only changes defaults (registered on import by :mod:`rlzoo.recipes`)."""

from dataclasses import dataclass, field

from rlzoo.recipes import RECIPES, Recipe, Spec


@RECIPES.register("grpo")
@dataclass(frozen=True)
class GRPORecipe(Recipe):
    """GRPO (arXiv 2402.03300): group-normalised advantage, PPO clip, k3 KL in the loss (β 0.04)."""

    kl: Spec | None = "k3"
    kl_coef: float = 0.04
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("dr_grpo")
@dataclass(frozen=True)
class DrGRPORecipe(Recipe):
    """Dr. GRPO (arXiv 2503.20783): A = r - mean (no std), token sum over a constant budget."""

    advantage: Spec = field(default_factory=lambda: {"name": "grpo", "scale": "none"})
    aggregation: Spec = field(
        default_factory=lambda: {"name": "seq_sum_const", "constant": "$max_completion_length"}
    )


@RECIPES.register("agpo")
@dataclass(frozen=True)
class AGPORecipe(Recipe):
    """AGPO v1 (arXiv 2503.15952): ±1 for all-equal groups, length reward for correct answers."""

    advantage: Spec = "agpo"
    shapers: tuple[Spec, ...] = ("agpo_length",)


@RECIPES.register("agpo_v3")
@dataclass(frozen=True)
class AGPOv3Recipe(Recipe):
    """AGPO v2/v3 (arXiv 2503.15952): GRPO advantage, zero-advantage tokens masked, loss floored at 0."""

    mask_zero_advantage: bool = True
    loss_floor: float | None = 0.0


@RECIPES.register("rloo")
@dataclass(frozen=True)
class RLOORecipe(Recipe):
    """RLOO (arXiv 2402.14740): leave-one-out baseline, PPO clip, optional k1 KL in the reward."""

    advantage: Spec = "rloo"
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("remax")
@dataclass(frozen=True)
class ReMaxRecipe(Recipe):
    """ReMax (arXiv 2310.10505): REINFORCE with the reward of a greedy completion as the baseline."""

    advantage: Spec = "remax"
    loss: Spec = "reinforce"
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("reinforce_rej")
@dataclass(frozen=True)
class ReinforceRejRecipe(Recipe):
    """Reinforce-Rej (arXiv 2504.11343): drop all-equal groups, A = ±1 reward, PPO clip."""

    filters: tuple[Spec, ...] = ("reinforce_rej",)
    shapers: tuple[Spec, ...] = ("binary_correct",)
    advantage: Spec = "reinforce"


@RECIPES.register("dapo")
@dataclass(frozen=True)
class DAPORecipe(Recipe):
    """DAPO (arXiv 2503.14476): dynamic sampling, clip-higher 0.28, overlong shaping, token mean.

    The overlong window is the paper's proportion (Lmax 20480, Lcache 4096 = 20%) of the run's
    generation budget; dynamic sampling refills dropped groups for up to 3 extra rounds.
    """

    filters: tuple[Spec, ...] = ("dapo",)
    shapers: tuple[Spec, ...] = (
        {"name": "dapo_overlong", "max_length": "$max_completion_length", "cache_length": "$max_completion_length*0.2"},
    )
    loss: Spec = field(default_factory=lambda: {"name": "ppo_clip", "eps_low": 0.2, "eps_high": 0.28})
    refill_rounds: int = 3


@RECIPES.register("gspo")
@dataclass(frozen=True)
class GSPORecipe(Recipe):
    """GSPO (arXiv 2507.18071): sequence-level ratio, clip 3e-4/4e-4, one value per sequence."""

    loss: Spec = "gspo"
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("cispo")
@dataclass(frozen=True)
class CISPORecipe(Recipe):
    """CISPO (arXiv 2506.13585): clipped, detached importance weight on -A·logp, token mean."""

    loss: Spec = "cispo"


@RECIPES.register("gvpo")
@dataclass(frozen=True)
class GVPORecipe(Recipe):
    """GVPO (arXiv 2504.19599): regress β·log-ratio on centred rewards per group (β 0.1)."""

    advantage: Spec = field(default_factory=lambda: {"name": "grpo", "scale": "none"})
    loss: Spec = "gvpo"
    aggregation: Spec = "group_token_mean"


@RECIPES.register("maxrl")
@dataclass(frozen=True)
class MaxRLRecipe(Recipe):
    """MaxRL (arXiv 2602.02710): A = (r - mean)/mean (0 where mean <= 0), PPO clip, token mean, no KL.

    The estimator is the paper's (``maxrl``, ``denominator="mean"``); the rest is what the authors'
    scripts run on verl: PPO clip 0.2, ``token-mean`` aggregation, no KL in the loss or reward.
    """

    advantage: Spec = "maxrl"


@RECIPES.register("lite_ppo")
@dataclass(frozen=True)
class LitePPORecipe(Recipe):
    """Lite PPO (arXiv 2508.08221): group mean, batch std, PPO clip, token-level mean, no KL.

    ``grpo`` with ``scale="batch"`` is exactly the paper's advantage: ``(r - mean_group) /
    (std_batch + 1e-6)`` with the unbiased std of the raw rewards of the whole step, eps 1e-6 as
    ROLL, the paper's framework (TRL's ``scale_rewards="batch"`` is the same with eps 1e-4 and its
    generation batch as the batch). Constant groups get 0; a constant batch gives 0.
    """

    advantage: Spec = field(default_factory=lambda: {"name": "grpo", "scale": "batch"})


@RECIPES.register("raft_pp")
@dataclass(frozen=True)
class RAFTPPRecipe(Recipe):
    """RAFT++ (arXiv 2504.11343): A = 1 on accepted (correct) samples, 0 otherwise, PPO clip, mean over accepted tokens.

    Combines the ``binary_correct`` shaper (±1), the ``raft`` estimator (``max(r, 0)``: 1 for a
    correct completion, 0 for a wrong one) and PPO clip 0.2 (RAFT is plain SFT on the accepted
    samples; RAFT++ adds the importance ratio and its clip). ``mask_zero_advantage`` takes the
    rejected samples out of the token-mean denominator, so the loss is normalised over the accepted
    tokens [the paper's exact normalisation is unverified].
    """

    shapers: tuple[Spec, ...] = ("binary_correct",)
    advantage: Spec = "raft"
    mask_zero_advantage: bool = True


@RECIPES.register("grpo_trl")
@dataclass(frozen=True)
class GRPOTRLRecipe(Recipe):
    """TRL 1.16's GRPOTrainer defaults: GRPO advantage with eps 1e-4, PPO clip 0.2, token mean (loss_type="dapo"), no KL.

    ``GRPOConfig`` defaults: ``scale_rewards="group"`` with TRL's unbiased std and ``+ 1e-4``;
    ``epsilon=0.2`` with ``epsilon_high`` falling back to it; ``loss_type="dapo"``, which divides the
    summed token losses by the active tokens of the whole accumulated batch (``token_mean``);
    ``beta=0.0`` (no KL, no reference model); ``top_entropy_quantile=1.0`` and
    ``off_policy_mask_threshold=None`` (no selector); ``mask_truncated_completions=False``;
    ``num_iterations=1``. Its ``use_bias_correction_kl=True`` acts once ``beta > 0``: the per-token k3
    is multiplied by the (non-detached) importance ratio, so set ``kl`` to the importance-weighted
    k3 estimator with ``kl_coef=beta`` (plain ``k3`` is TRL's ``use_bias_correction_kl=False``).
    Differences: rlzoo clamps the log-ratio at ±20 and gives all-equal groups exactly 0.
    """

    advantage: Spec = field(default_factory=lambda: {"name": "grpo", "eps": 1e-4})


@RECIPES.register("gmpo")
@dataclass(frozen=True)
class GMPORecipe(Recipe):
    """GMPO (arXiv 2507.20673): GRPO advantage, geometric-mean sequence ratio clipped in log space (0.4), mean over sequences.

    The loss is sequence-level, so it is averaged over sequences (``seq_mean_token_mean``), as the
    paper's mean over L_i. No KL: TRL's ``GMPOConfig`` has β = 0 (verl's example adds a low-variance
    KL with coefficient 0.001: ``kl=k3, kl_coef=0.001``).
    """

    loss: Spec = "gmpo"
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("dppo")
@dataclass(frozen=True)
class DPPORecipe(Recipe):
    """DPPO (arXiv 2602.04879): GRPO advantage, the binary-TV trust-region mask (0.2) instead of the ratio clip, token mean.

    ``dppo_tv`` as SkyRL and prime-rl (no cap on the ratio, the paper's advice), anchored to
    ``old_logp``; the paper anchors to the behaviour policy: ``loss.anchor=rollout`` when the engine
    returns its log-probs. ``loss=dppo_kl`` is the binary-KL variant (0.05).
    """

    loss: Spec = "dppo_tv"


@RECIPES.register("clip_cov")
@dataclass(frozen=True)
class ClipCovRecipe(Recipe):
    """Clip-Cov (arXiv 2505.22617): GRPO advantage, PPO clip with a random 2e-4 of high-covariance tokens detached, token mean.

    The authors' recipes loosen PPO's clip to [0, 2] (ε = 1) next to Clip-Cov, as here; they ran it
    inside DAPO's recipe (add ``filters=[dapo]`` and its overlong shaper for that).
    """

    loss: Spec = field(default_factory=lambda: {"name": "clip_cov", "eps_low": 1.0, "eps_high": 1.0})


@RECIPES.register("kl_cov")
@dataclass(frozen=True)
class KLCovRecipe(Recipe):
    """KL-Cov (arXiv 2505.22617): GRPO advantage, -A·r with a |logp - old_logp| penalty (β 1) on the top 2e-4 tokens by covariance, token mean.

    No ratio clip (KL-Cov replaces it). The fraction is verl's and the authors' 32B value (0.02 %);
    their 7B runs used 0.2 % (``loss.fraction=2e-3``).
    """

    loss: Spec = "kl_cov"


@RECIPES.register("luspo")
@dataclass(frozen=True)
class LUSPORecipe(Recipe):
    """LUSPO (arXiv 2602.05261): GRPO advantage, GSPO's clipped sequence ratio (2e-3 / 2.5e-3) weighted by length: Σ_i |o_i|·ℓ_i / B.

    ``seq_mean_token_sum`` turns the per-sequence loss on every token into the paper's
    length-weighted mean, as TRL's ``loss_type="luspo"``.
    """

    loss: Spec = "luspo"
    aggregation: Spec = "seq_mean_token_sum"


@RECIPES.register("vespo")
@dataclass(frozen=True)
class VESPORecipe(Recipe):
    """VESPO (arXiv 2602.10693): GRPO advantage, -φ(w)·A·logp with a gamma-shaped weight of the sequence ratio, token mean.

    TRL's defaults (k, λ) = (2, 3) for A >= 0 and (3, 2) for A < 0, aggregated like its ``dapo``.
    """

    loss: Spec = "vespo"
