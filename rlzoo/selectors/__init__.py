"""Token selectors (``PolicyBatch -> Selection``: a keep mask ``[b, t]``), composed by the Objective.

A selector says which counted tokens keep their per-token *policy* loss. Any selector combines with
any policy loss: :class:`rlzoo.losses.Objective` (``selectors=(...)``) multiplies the policy loss by
the AND of every selector's keep mask after the loss computed it. Loss denominators still count
every token of the mask (a dropped token weighs 0, it does not leave the normalisers), and the
reference-KL term is never masked. A selector that keeps every token changes nothing.

Markers that selectors declare (class attributes; absent means False), read by the Objective's
``needs_*`` properties, which the trainer reads:

- ``needs_entropy``: reads ``batch.entropy`` (the current policy's per-token entropy, detached).
- ``needs_entropy_threshold``: reads ``batch.entropy_threshold``, a quantile over the whole
  optimiser step, and offers ``threshold(entropies)`` to compute it; without one it falls back to
  the micro-batch's own quantile (exact when a step is one micro-batch on one process).
- ``uses_rollout_logp``: reads ``batch.rollout_logp`` (the inference engine's log-probs) when
  given, else ``batch.old_logp``.
- ``masks_entropy_bonus``: its keep mask also gates the entropy bonus (top-ρ entropy, as TRL).
"""

from rlzoo.registry import Registry

SELECTORS: Registry = Registry("token selector", entry_point_group="rlzoo.selectors")

build = SELECTORS.build

# Each module registers its components on import.
from rlzoo.selectors import entropy, off_policy  # noqa: E402
from rlzoo.selectors._quantile import linear_quantile  # noqa: E402

__all__ = ["SELECTORS", "build", "entropy", "linear_quantile", "off_policy"]
