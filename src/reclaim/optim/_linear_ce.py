"""Linear cross-entropy over vocabulary chunks: the CPU form of Cut Cross-Entropy.

CCE (Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", ICLR 2025,
arXiv 2411.09009, Sec. 3-4) computes the token loss l_i = LSE_v(C_v . e_i) - C_{y_i} . e_i
from the hidden states E (N x D) and the classifier C (V x D) without ever holding the N x V
logits: the forward pass keeps a running log-sum-exp per token over vocabulary blocks (Sec.
4.2), and the backward pass recomputes each block's logits, turns them into
S = softmax - onehot with the saved LSE and accumulates dE += S C_block and
dC_block = S^T E (Sec. 4.3). The paper's kernels keep each block in on-chip SRAM (Triton,
GPU only; `cut-cross-entropy` does not import without triton). Here a block is an ordinary
N x ``chunk`` tensor, so the residual memory is one tile instead of the N x V logits (and
the log-softmax copy), and the result is exact up to fp32 rounding (no gradient filtering,
no Kahan sums: both are speed and bf16-accuracy devices of the GPU kernels).

Written from the paper's description (and the reference notes, section 4.7); no code is
taken from apple/ml-cross-entropy. Rows whose target is ``ignore_index`` contribute nothing
to the loss or to either gradient, so they are dropped before the block loop (a label-word
batch keeps a handful of its B x T rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100
DEFAULT_CHUNK = 4096


def check_chunk(chunk: Any) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1 (vocabulary entries per block), got {chunk!r}")
    return chunk


def _function() -> Any:
    """The autograd Function, built on first use (torch is imported lazily, as elsewhere)."""
    global _FN
    if _FN is None:
        _FN = _build()
    return _FN


_FN: Any = None


def _build() -> Any:
    import torch

    class ChunkedLinearCE(torch.autograd.Function):
        """Per-token losses (N,) from E (N x D), C (V x D), targets (N,); 0 at ignored rows."""

        @staticmethod
        def forward(ctx: Any, e: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,  # type: ignore[override]
                    chunk: int) -> torch.Tensor:
            n, v = e.shape[0], c.shape[0]
            valid = targets != IGNORE_INDEX
            rows = valid.nonzero().squeeze(1) if not bool(valid.all()) else None
            ev = e if rows is None else e.index_select(0, rows)
            y = targets if rows is None else targets.index_select(0, rows)
            lse = torch.full((ev.shape[0],), float("-inf"), dtype=ev.dtype, device=ev.device)
            target_logit = torch.zeros_like(lse)
            for c0 in range(0, v, chunk):
                c1 = min(c0 + chunk, v)
                tile = ev @ c[c0:c1].t()                       # the only N x chunk tensor
                hit = ((y >= c0) & (y < c1)).nonzero().squeeze(1)
                target_logit[hit] = tile[hit, y[hit] - c0]
                m = tile.amax(dim=1)
                m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
                s = tile.sub_(m.unsqueeze(1)).exp_().sum(dim=1)  # in place: no second tile
                lse = torch.logaddexp(lse, m + s.log())
                del tile  # freed before the next block's tile exists
            losses = lse - target_logit
            ctx.save_for_backward(e, c, targets, lse)
            ctx.chunk = chunk
            ctx.rows = rows
            if rows is None:
                return losses
            out = torch.zeros(n, dtype=losses.dtype, device=losses.device)
            return out.index_copy_(0, rows, losses)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
            e, c, targets, lse = ctx.saved_tensors
            rows, chunk = ctx.rows, ctx.chunk
            need_e, need_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            ev = e if rows is None else e.index_select(0, rows)
            y = targets if rows is None else targets.index_select(0, rows)
            g = (grad if rows is None else grad.index_select(0, rows)).to(ev.dtype).unsqueeze(1)
            de = torch.zeros_like(ev) if need_e else None
            dc = torch.zeros_like(c) if need_c else None
            v = c.shape[0]
            for c0 in range(0, v, chunk):
                c1 = min(c0 + chunk, v)
                cc = c[c0:c1]
                p = (ev @ cc.t()).sub_(lse.unsqueeze(1)).exp_()  # softmax block, recomputed
                hit = ((y >= c0) & (y < c1)).nonzero().squeeze(1)
                p[hit, y[hit] - c0] -= 1.0                       # S = softmax - onehot
                p.mul_(g)                                        # d loss_i / d logits, row-scaled
                if de is not None:
                    de.addmm_(p, cc)
                if dc is not None:
                    torch.mm(p.t(), ev, out=dc[c0:c1])
                del p
            if de is not None and rows is not None:
                de = torch.zeros_like(e).index_copy_(0, rows, de)
            return de, dc, None, None

    return ChunkedLinearCE


def chunked_token_losses(e: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                         chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Per-token cross-entropy (N,) of logits E C^T against ``targets`` (0 where ignored),
    never materialising the N x V logits. E: (N, D), C: (V, D), both float32."""
    check_chunk(chunk)
    if e.dim() != 2 or c.dim() != 2 or e.shape[1] != c.shape[1]:
        raise ValueError(f"hidden states {tuple(e.shape)} and classifier {tuple(c.shape)} must be "
                         "(N, D) and (V, D)")
    if targets.shape != (e.shape[0],):
        raise ValueError(f"targets {tuple(targets.shape)} must be ({e.shape[0]},)")
    return _function().apply(e, c, targets, chunk)


def chunked_linear_cross_entropy(e: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                                 chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Mean token cross-entropy over the non-ignored targets: ``F.cross_entropy(E @ C.T,
    targets, ignore_index=-100)`` (NaN when every target is ignored, as there)."""
    losses = chunked_token_losses(e, c, targets, chunk)
    n = (targets != IGNORE_INDEX).sum()
    return losses.sum() / n


def plain_linear_cross_entropy(e: torch.Tensor, c: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The baseline: logits materialised, then ``F.cross_entropy``."""
    import torch.nn.functional as F

    return F.cross_entropy(e @ c.t(), targets, ignore_index=IGNORE_INDEX)


def predicted_extra_bytes(n: int, v: int, d: int, chunk: int, itemsize: int = 4) -> dict[str, int]:
    """Bytes each loss adds above E, C and the targets, from shapes alone (large terms only).

    plain forward: the logits and the log-softmax output F.cross_entropy saves (2 N V);
    plain forward + backward: log-softmax output, its incoming gradient and the logits'
    gradient at once (3 N V). chunked forward: one N x chunk tile; chunked forward + backward:
    the tile, dC (V x D) and dE (N x D). O(N) vectors are left out."""
    k = min(chunk, v)
    return {"plain_forward": 2 * n * v * itemsize, "plain_forward_backward": 3 * n * v * itemsize,
            "chunked_forward": n * k * itemsize,
            "chunked_forward_backward": (n * k + v * d + n * d) * itemsize}
