"""Memory-safe log-probs (and entropy) of sampled tokens, chunked over rows.

The naive ``(logits / T).log_softmax(-1).gather(-1, labels)`` materialises a full ``[b, t, v]``
float32 log-softmax, keeps it for backward and allocates two more of that size in backward. Here
the rows (tokens) are processed in blocks of some MB of float32 logits: the forward keeps only the
per-row log-normaliser (and entropy), and a custom backward recomputes ``softmax`` block by block
and writes ``dlogp/dlogits = (onehot - softmax) / T`` straight into the gradient. From hidden states
the logits themselves are computed block by block and never exist at once.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from rlzoo.errors import ConfigError, DataError

__all__ = ["TokenLogProbs", "token_logprobs", "token_logprobs_from_hidden"]

# Bytes of float32 logits per block, by device. On CPU small blocks stay in cache (PITFALLS: 2-20
# MB), but every block runs ~10 multi-threaded ops and on a busy machine each op waits for its
# slowest thread: 32 MB is near the best either way (measured on 2 shared cores, see the benchmark).
# On CUDA larger blocks amortise kernel launches. From hidden states each block is a matmul that
# reads the whole [v, h] head, so blocks need rows: 32 MB is ~50 rows at a 152k vocabulary on CPU,
# 512 MB ~880 rows on CUDA. Peak memory beyond the gradients is a few blocks.
_BLOCK_BYTES = {
    "logits": {"cuda": 128 << 20, "other": 32 << 20},
    "hidden": {"cuda": 512 << 20, "other": 32 << 20},
}


@dataclass(frozen=True, eq=False)
class TokenLogProbs:
    """Float32 log-probs of the labels ``[b, t]`` and, when asked for, the entropy ``[b, t]``."""

    logp: Float[Tensor, "b t"]
    entropy: Float[Tensor, "b t"] | None = None


def _check_args(who: str, rows: Tensor, labels: Tensor, vocab: int, temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError(f"{who}: temperature={temperature!r} must be > 0")
    if not rows.is_floating_point():
        raise DataError(f"{who}: expects floating inputs, got {rows.dtype}")
    if labels.device != rows.device:
        raise DataError(f"{who}: labels are on {labels.device}, inputs on {rows.device}")
    bad = (labels < 0) | (labels >= vocab)
    if bool(bad.any()):
        pos = tuple(int(i) for i in bad.nonzero()[0])
        raise DataError(
            f"{who}: labels[{', '.join(map(str, pos))}] = {int(labels[pos])} is not a token id in "
            f"[0, {vocab}); put a valid id (e.g. the pad token) at padding positions and mask them"
        )


def _blocks(x: Tensor, rows: int) -> Iterator[tuple[int, int, Tensor]]:
    """``(start, stop, block)`` over the flattened ``[b * t]`` rows of ``x [b, t, d]``, ``rows`` at a time.

    A view, never a copy: when ``b`` and ``t`` cannot be merged (a slice of longer sequences) the
    blocks stay inside one sequence each.
    """
    b, t, d = x.shape
    try:
        flat = x.view(b * t, d)
    except RuntimeError:
        for i in range(b):
            for s in range(0, t, rows):
                yield i * t + s, i * t + min(s + rows, t), x[i, s : s + rows]
        return
    for s in range(0, b * t, rows):
        yield s, min(s + rows, b * t), flat[s : s + rows]


def _block_rows(kind: str, device: torch.device, vocab: int, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        if chunk_rows < 1:
            raise ConfigError(f"chunk_rows={chunk_rows} must be >= 1")
        return chunk_rows
    sizes = _BLOCK_BYTES[kind]
    return max(1, sizes.get(device.type, sizes["other"]) // (4 * vocab))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half and single precision inputs, float64 for float64 (so gradcheck works)."""
    return torch.promote_types(dtype, torch.float32)


def _scaled(logits: Tensor, temperature: float, fresh: bool) -> tuple[Tensor, bool]:
    """Logits in the compute dtype divided by the temperature, and whether the result is scratch.

    ``fresh``: ``logits`` is already a temporary of ours (a matmul result) that may be overwritten.
    """
    x = logits.to(_compute_dtype(logits.dtype))
    own = fresh or x is not logits
    if temperature != 1.0:
        x, own = (x.div_(temperature) if own else x / temperature), True
    return x, own


def _forward_block(
    x: Tensor, own: bool, labels: Tensor, entropy: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Log-normaliser, label log-prob and entropy of logits ``x [r, v]``: one pass of exp.

    ``own``: ``x`` is a temporary this function may overwrite (one block of scratch instead of two).
    """
    top = x.amax(-1)
    z = x.sub_(top[:, None]) if own else x - top[:, None]
    picked = z.gather(-1, labels[:, None]).squeeze(-1)
    e = z.exp() if entropy else z.exp_()
    total = e.sum(-1)
    log_total = total.log()
    lse, logp = top + log_total, picked - log_total
    if not entropy:
        return lse, logp, None
    # H = log(sum e) - sum(e z) / sum(e), the dot product batched (no [r, v] temporary).
    return lse, logp, log_total - (e[:, None, :] @ z[:, :, None]).view(-1) / total


def _backward_block(
    x: Tensor,
    own: bool,
    labels: Tensor,
    lse: Tensor,
    ent: Tensor | None,
    g: Tensor,
    g_ent: Tensor | None,
    temperature: float,
) -> Tensor:
    """d(loss)/d(logits) of one block: ``(g * (onehot - p) - g_ent * p * (log p + H)) / T``."""
    if g_ent is None or ent is None:
        p = x.sub_(lse[:, None]) if own else x - lse[:, None]
        grad = p.exp_().mul_(-g[:, None])
    else:
        p = (x - lse[:, None]).exp_()
        # log p + H = x - (lse - H); grad = -p * (g + g_ent * (log p + H)) + g * onehot
        shifted = x.sub_((lse - ent)[:, None]) if own else x - (lse - ent)[:, None]
        grad = p.mul_(shifted.mul_(g_ent[:, None]).add_(g[:, None])).neg_()
    grad.scatter_add_(-1, labels[:, None], g[:, None])
    return grad.div_(temperature) if temperature != 1.0 else grad


Piece = tuple[int, int, Tensor, Tensor, bool]  # start, stop, source rows, scaled logits, scratch


def _logit_pieces(logits: Tensor, rows: int, temperature: float) -> Iterator[Piece]:
    for s, e, block in _blocks(logits, rows):
        yield s, e, block, *_scaled(block, temperature, fresh=False)


def _hidden_pieces(hidden: Tensor, weight: Tensor, rows: int, temperature: float) -> Iterator[Piece]:
    for s, e, block in _blocks(hidden, rows):
        yield s, e, block, *_scaled(block @ weight.T, temperature, fresh=True)


def _forward_all(
    pieces: Iterator[Piece], labels: Tensor, like: Tensor, entropy: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row log-normaliser, label log-prob and entropy (empty unless asked for) over all pieces."""
    lse = like.new_empty(labels.shape[0], dtype=_compute_dtype(like.dtype))
    logp = torch.empty_like(lse)
    ent = torch.empty_like(lse) if entropy else lse.new_empty(0)
    for s, e, _, x, own in pieces:
        lse[s:e], logp[s:e], h = _forward_block(x, own, labels[s:e], entropy)
        if h is not None:
            ent[s:e] = h
    return lse, logp, ent


def _grads(
    ctx: Any,
    pieces: Iterator[Piece],
    labels: Tensor,
    lse: Tensor,
    ent: Tensor,
    g_logp: Tensor | None,
    g_ent: Tensor | None,
) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """``(start, stop, source rows, dloss/dlogits)`` piece by piece."""
    g = lse.new_zeros(lse.shape[0]) if g_logp is None else g_logp.reshape(-1).to(lse.dtype)
    ge = g_ent.reshape(-1).to(lse.dtype) if (ctx.entropy and g_ent is not None) else None
    for s, e, src, x, own in pieces:
        h, gh = (None, None) if ge is None else (ent[s:e], ge[s:e])
        yield s, e, src, _backward_block(x, own, labels[s:e], lse[s:e], h, g[s:e], gh, ctx.temperature)


class _LogitsLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, labels: Tensor, temperature: float, entropy: bool, rows: int
    ) -> Any:
        b, t, _ = logits.shape
        flat_labels = labels.reshape(-1)
        lse, logp, ent = _forward_all(_logit_pieces(logits, rows, temperature), flat_labels, logits, entropy)
        ctx.save_for_backward(logits, flat_labels, lse, ent)
        ctx.temperature, ctx.rows, ctx.entropy = temperature, rows, entropy
        ctx.set_materialize_grads(False)
        return logp.view(b, t), ent.view(b, t) if entropy else ent

    @staticmethod
    def backward(ctx: Any, g_logp: Tensor | None, g_ent: Tensor | None) -> Any:
        logits, labels, lse, ent = ctx.saved_tensors
        if g_logp is None and g_ent is None:
            return None, None, None, None, None
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        grad_rows = grad.view(lse.shape[0], -1)
        pieces = _logit_pieces(logits, ctx.rows, ctx.temperature)
        for s, e, _, grad_x in _grads(ctx, pieces, labels, lse, ent, g_logp, g_ent):
            grad_rows[s:e] = grad_x
        return grad, None, None, None, None


class _HiddenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, hidden: Tensor, weight: Tensor, labels: Tensor, temperature: float, entropy: bool, rows: int
    ) -> Any:
        b, t, _ = hidden.shape
        flat_labels = labels.reshape(-1)
        lse, logp, ent = _forward_all(
            _hidden_pieces(hidden, weight, rows, temperature), flat_labels, hidden, entropy
        )
        ctx.save_for_backward(hidden, weight, flat_labels, lse, ent)
        ctx.temperature, ctx.rows, ctx.entropy = temperature, rows, entropy
        ctx.set_materialize_grads(False)
        return logp.view(b, t), ent.view(b, t) if entropy else ent

    @staticmethod
    def backward(ctx: Any, g_logp: Tensor | None, g_ent: Tensor | None) -> Any:
        hidden, weight, labels, lse, ent = ctx.saved_tensors
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if (g_logp is None and g_ent is None) or not (want_h or want_w):
            return None, None, None, None, None, None
        grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if want_h else None
        grad_h_rows = grad_h.view(lse.shape[0], -1) if grad_h is not None else None
        # float32 accumulator for the head's gradient (a bf16 sum over blocks would lose bits)
        grad_w = torch.zeros(weight.shape, dtype=lse.dtype, device=weight.device) if want_w else None
        pieces = _hidden_pieces(hidden, weight, ctx.rows, ctx.temperature)
        for s, e, block, grad_x in _grads(ctx, pieces, labels, lse, ent, g_logp, g_ent):
            gx = grad_x.to(hidden.dtype)
            if grad_h_rows is not None:
                grad_h_rows[s:e] = gx @ weight
            if grad_w is not None and gx.dtype == grad_w.dtype:
                grad_w.addmm_(gx.T, block)
            elif grad_w is not None:
                grad_w += gx.T @ block
        return grad_h, None if grad_w is None else grad_w.to(weight.dtype), None, None, None, None


def token_logprobs(
    logits: Float[Tensor, "b t v"],
    labels: Int[Tensor, "b t"],
    *,
    temperature: float = 1.0,
    entropy: bool = False,
    chunk_rows: int | None = None,
) -> TokenLogProbs:
    """``log softmax(logits / T)[labels]`` (and the entropy) without a full ``[b, t, v]`` log-softmax.

    Exact against ``(logits.float() / T).log_softmax(-1).gather(-1, labels[..., None])`` and
    differentiable (also through the entropy). Any float dtype in, float32 out; the gradient to
    ``logits`` has their dtype. Rows are processed ``chunk_rows`` at a time (default: 32 MB of
    float32 logits per block on CPU, 128 MB on CUDA). Labels must be token ids in ``[0, v)`` everywhere, padding included.
    """
    v = logits.shape[-1]
    _check_args("token_logprobs", logits, labels, v, temperature)
    rows = _block_rows("logits", logits.device, v, chunk_rows)
    logp, ent = _LogitsLogProbs.apply(logits, labels, float(temperature), entropy, rows)
    return TokenLogProbs(logp, ent if entropy else None)


def token_logprobs_from_hidden(
    hidden: Float[Tensor, "b t h"],
    weight: Float[Tensor, "v h"],
    labels: Int[Tensor, "b t"],
    *,
    temperature: float = 1.0,
    entropy: bool = False,
    chunk_rows: int | None = None,
) -> TokenLogProbs:
    """:func:`token_logprobs` of ``logits = hidden @ weight.T`` computed block by block (an LM head).

    Full ``[b, t, v]`` logits never exist: forward and backward recompute one block of rows at a
    time (default 32 MB of float32 logits on CPU, 512 MB on CUDA). Gradients flow to ``hidden`` and ``weight``; the
    matmuls run in the inputs' dtype (as the model's own head would), the softmax in float32.
    """
    if weight.dtype != hidden.dtype or weight.device != hidden.device:
        raise DataError(
            f"token_logprobs_from_hidden: weight is {weight.dtype} on {weight.device}, hidden "
            f"{hidden.dtype} on {hidden.device}; they must match"
        )
    v = weight.shape[0]
    _check_args("token_logprobs_from_hidden", hidden, labels, v, temperature)
    rows = _block_rows("hidden", hidden.device, v, chunk_rows)
    logp, ent = _HiddenLogProbs.apply(hidden, weight, labels, float(temperature), entropy, rows)
    return TokenLogProbs(logp, ent if entropy else None)
