"""Wanda: pruning by weights and activations (Sun et al., arXiv 2306.11695, Sec. 3, eq. 1).

Score ``S_ij = |W_ij| * ||X_j||_2``, the input feature's L2 norm over all calibration tokens;
the lowest-scoring fraction ``sparsity`` is pruned **within each output row** (Sec. 3,
"comparison group"), with no weight update. N:M (Sec. 3): per row, per group of M consecutive
inputs, the N lowest scores. Block-sequential like the reference: a block's Linears are scored
together on the block's calibration inputs, pruned, and the block is re-run so that the next
block sees the pruned outputs. No input second moment is accumulated (Wanda needs only the
norms), so records carry the weight error, not the output error: that keeps Wanda as cheap as
the paper says it is (its pruning-speed comparison) on a 2-core machine.
"""

from __future__ import annotations

from typing import Any

from reclaim.compress._blocks import block_linears, compress_sequentially, decoder_blocks
from reclaim.compress._prune import PruneParams, Pruner, layer_record, mask_for
from reclaim.compress._torch import no_grad, torch


def wanda_score(w: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 from the per-input sum of squares over calibration tokens."""
    return w.detach().abs().float() * sq_norm.float().sqrt().unsqueeze(0)


class SquaredNorms:
    """Per-input sum of squares over calibration tokens (float64), for ||X_j||_2."""

    def __init__(self, width: int) -> None:
        self.sq = torch.zeros(width, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        self.sq += (x.double() ** 2).sum(dim=0)


class Wanda(Pruner):
    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: PruneParams,
                 seed: int) -> dict[str, Any]:
        path, blocks = decoder_blocks(model)
        self.check_layers({f"{path}.{i}.{n}": m for i, b in enumerate(blocks) for n, m in block_linears(b).items()},
                          params)

        def update(name: str, w: torch.Tensor, norms: SquaredNorms) -> tuple[torch.Tensor, dict[str, Any]]:
            mask = mask_for(wanda_score(w, norms.sq), params, per="row")
            w_hat = w.masked_fill(mask, 0.0)
            return w_hat, layer_record(w, w_hat, mask)

        # all of a block's Linears from the same inputs (no stages), as the reference does
        per_layer = compress_sequentially(model, calibration or [], "wanda blocks",
                                          lambda lin: SquaredNorms(lin.in_features), update, true_sequential=False)
        return {"layers": per_layer, "calibration_tokens": sum(int(c.numel()) for c in calibration or [])}


COMPRESSOR = Wanda()
