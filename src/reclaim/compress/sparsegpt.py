"""SparseGPT (Frantar & Alistarh, arXiv 2301.00774, Sec. 3, Algorithm 1), as fake pruning.

The GPTQ column loop (reclaim.compress.gptq) with pruning instead of rounding. Per Linear, from
its calibration inputs: ``H = 2 X^T X / N``, dead inputs zeroed, ``H += damp * mean(diag H) I``
(damp 0.01), ``U = chol(H^-1)^T``. Columns go left to right in blocks of ``block_size``:

- adaptive mask selection (Sec. 3.3): at the start of each block the mask is chosen from the
  current (already updated) weights by the OBS saliency ``w_ij^2 / U_jj^2``, the
  ``int(rows * block * sparsity)`` lowest of the block's columns together; with an N:M pattern
  (Sec. 3.4) the N lowest of each row's M-column group, chosen when the loop reaches the group;
- each column's pruned weights become 0 and its error ``(w - w_masked) / U_jj`` is spread over
  the row's not-yet-processed columns through U's row (inside the block at once, to later
  blocks lazily after it), exactly as GPTQ spreads rounding error.

Block-sequential: block i is calibrated on the outputs of the already pruned blocks before it;
the Linears inside a block are pruned together on the block's inputs (the reference), or in call
order with ``true_sequential``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.compress._blocks import block_linears, compress_sequentially, decoder_blocks
from reclaim.compress._prune import PruneParams, Pruner, layer_mask, layer_record, lowest_mask
from reclaim.compress._torch import no_grad, torch
from reclaim.compress.gptq import HessianAccumulator, check_obs_params


@dataclass(frozen=True)
class SparseGPTParams(PruneParams):
    damp: float = 0.01
    block_size: int = 128
    true_sequential: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_obs_params(self.damp, self.block_size)
        nm = self.nm
        if nm and self.block_size % nm[1]:
            raise ValueError(f"block_size {self.block_size} must be a multiple of M={nm[1]} for pattern {self.pattern}")


CHUNK = 16  # columns solved at once once their mask is fixed (speed only: same numbers)


def _masked_chunk(w1: torch.Tensor, u1: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The column loop over a chunk whose mask is fixed, solved at once: with S a row's pruned
    columns, the loop's errors satisfy ``e_i U_ii + sum_{k<i, k in S} e_k U_ki = w_i`` for i in S
    (and ``e_i = 0`` elsewhere), a triangular system per row. Returns the chunk's pruned weights
    (kept columns carrying the in-chunk updates) and the errors ``e`` the loop would produce."""
    mf = m.to(w1.dtype)
    strict = torch.triu(u1, diagonal=1)
    # A_r^T = U^T (.) m m^T + diag(1 - m): lower triangular, one per row
    a = u1.t().unsqueeze(0) * mf.unsqueeze(2) * mf.unsqueeze(1) + torch.diag_embed(1 - mf)
    e = torch.linalg.solve_triangular(a, (w1 * mf).unsqueeze(2), upper=False).squeeze(2)
    q = (w1 - e @ strict) * (1 - mf)
    return q, e


@no_grad
def sparsegpt_prune(weight: torch.Tensor, h: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None,
                    damp: float = 0.01, block_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``weight`` (out, in) given the input second moment ``h`` (in, in); returns the
    updated weights (pruned entries exactly 0) and the mask (True = pruned).

    Within a block the mask is fixed once chosen (the whole block for unstructured sparsity,
    each M-column group for N:M), so the column-by-column loop over such a chunk is solved as
    one batched triangular system (``_masked_chunk``): the same numbers as Algorithm 1's loop,
    without a Python step per column."""
    w = weight.detach().float().clone()
    h = h.detach().float().clone()
    rows, cols = w.shape
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols)
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h.double()))
    u = torch.linalg.cholesky(hinv, upper=True).float()
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        d1 = torch.diag(u1)
        m1 = mask[:, i1:i2]  # a view: filling it fills the layer's mask
        if nm is None:  # adaptive mask selection over the block's columns together
            m1 |= layer_mask(w1 ** 2 / d1.unsqueeze(0) ** 2, sparsity)
            chunks = [(j, min(j + CHUNK, i2 - i1)) for j in range(0, i2 - i1, CHUNK)]
        else:  # each row's N lowest of M, chosen when the loop reaches the group
            chunks = [(j, min(j + nm[1], i2 - i1)) for j in range(0, i2 - i1, nm[1])]
        for j0, j1 in chunks:
            if nm is not None:
                m1[:, j0:j1] |= lowest_mask(w1[:, j0:j1] ** 2 / d1[j0:j1].unsqueeze(0) ** 2, nm[0])
            q, e = _masked_chunk(w1[:, j0:j1], u1[j0:j1, j0:j1], m1[:, j0:j1])
            q1[:, j0:j1] = q
            err1[:, j0:j1] = e
            w1[:, j1:] -= e @ u1[j0:j1, j1:]
        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return w.to(weight.dtype), mask


def sparsegpt_prune_loop(weight: torch.Tensor, h: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None,
                         damp: float = 0.01, block_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 literally, one column at a time: the reference the tests check
    ``sparsegpt_prune`` against."""
    w = weight.detach().float().clone()
    h = h.detach().float().clone()
    rows, cols = w.shape
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h.double())), upper=True).float()
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1, u1 = w[:, i1:i2].clone(), u[i1:i2, i1:i2]
        q1, err1 = torch.zeros_like(w1), torch.zeros_like(w1)
        d1 = torch.diag(u1)
        m1 = mask[:, i1:i2]
        if nm is None:
            m1 |= layer_mask(w1 ** 2 / d1.unsqueeze(0) ** 2, sparsity)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                m1[:, i:i + nm[1]] |= lowest_mask(w1[:, i:i + nm[1]] ** 2 / d1[i:i + nm[1]].unsqueeze(0) ** 2, nm[0])
            q1[:, i] = w1[:, i].masked_fill(m1[:, i], 0.0)
            e = (w1[:, i] - q1[:, i]) / u1[i, i]
            w1[:, i:] -= e.unsqueeze(1) @ u1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return w.to(weight.dtype), mask


class SparseGPT(Pruner):
    Params = SparseGPTParams

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: SparseGPTParams,
                 seed: int) -> dict[str, Any]:
        path, blocks = decoder_blocks(model)
        self.check_layers({f"{path}.{i}.{n}": m for i, b in enumerate(blocks) for n, m in block_linears(b).items()},
                          params)

        def update(name: str, w: torch.Tensor, acc: HessianAccumulator) -> tuple[torch.Tensor, dict[str, Any]]:
            w_hat, mask = sparsegpt_prune(w, acc.h, params.sparsity, params.nm, params.damp, params.block_size)
            return w_hat, layer_record(w, w_hat, mask, acc.h)

        per_layer = compress_sequentially(model, calibration or [], "sparsegpt blocks",
                                          lambda lin: HessianAccumulator(lin.in_features), update,
                                          params.true_sequential)
        return {"layers": per_layer, "calibration_tokens": sum(int(c.numel()) for c in calibration or [])}


COMPRESSOR = SparseGPT()
