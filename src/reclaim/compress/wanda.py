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

from tqdm.auto import tqdm

from reclaim.compress._blocks import (
    block_inputs,
    block_linears,
    capture_linear_inputs,
    decoder_blocks,
    run_block,
)
from reclaim.compress._prune import PruneParams, Pruner, layer_record, mask_for
from reclaim.compress._torch import no_grad, torch


def wanda_score(w: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 from the per-input sum of squares over calibration tokens."""
    return w.detach().abs().float() * sq_norm.float().sqrt().unsqueeze(0)


class Wanda(Pruner):
    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: PruneParams,
                 seed: int) -> dict[str, Any]:
        path, blocks = decoder_blocks(model)
        self.check_layers({f"{path}.{i}.{n}": m for i, b in enumerate(blocks) for n, m in block_linears(b).items()},
                          params)
        hidden, kwargs = block_inputs(model, calibration or [])
        per_layer: dict[str, Any] = {}
        for i, block in enumerate(tqdm(blocks, desc="wanda blocks")):
            lins = block_linears(block)
            sq = {n: torch.zeros(m.in_features, dtype=torch.float64) for n, m in lins.items()}

            def add(n: str, x: torch.Tensor, sq: dict = sq) -> None:
                sq[n] += (x.double() ** 2).sum(dim=0)

            capture_linear_inputs(block, list(lins), hidden, kwargs, add)
            for n, lin in lins.items():
                w = lin.weight
                mask = mask_for(wanda_score(w, sq[n]), params, per="row")
                w_hat = w.masked_fill(mask, 0.0)
                per_layer[f"{path}.{i}.{n}"] = layer_record(w, w_hat, mask)
                w.copy_(w_hat)
            hidden = run_block(block, hidden, kwargs)  # the next block sees the pruned outputs
        return {"layers": per_layer, "calibration_tokens": sum(int(c.numel()) for c in calibration or [])}


COMPRESSOR = Wanda()
