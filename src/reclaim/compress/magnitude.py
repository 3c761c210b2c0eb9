"""Magnitude pruning, the baseline of Wanda (Sun et al., arXiv 2306.11695, Sec. 4, Table 2)
and SparseGPT (arXiv 2301.00774, Sec. 5): no calibration, the score is |W_ij|.

Unstructured: one threshold per weight matrix, zeroing its ``int(numel * sparsity)`` smallest
|W| (the comparison group of the Wanda paper's magnitude baseline, not per output row; Wanda's
Sec. 5 shows per-row grouping alone helps magnitude a lot). N:M: in each row, per group of M
consecutive inputs, zero the N smallest |W|.
"""

from __future__ import annotations

from typing import Any

from reclaim.compress._blocks import compressible_linears
from reclaim.compress._prune import PruneParams, Pruner, layer_record, mask_for
from reclaim.compress._torch import no_grad, torch


class Magnitude(Pruner):
    needs_calibration = False

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: PruneParams,
                 seed: int) -> dict[str, Any]:
        layers = compressible_linears(model)
        self.check_layers(layers, params)
        per_layer = {}
        for name, lin in layers.items():
            w = lin.weight
            mask = mask_for(w.abs(), params, per="layer")
            w_hat = w.masked_fill(mask, 0.0)
            per_layer[name] = layer_record(w, w_hat, mask)
            w.copy_(w_hat)
        return {"layers": per_layer}


COMPRESSOR = Magnitude()
