"""Structured magnitude pruning of MLP channels: a calibration-free reference beside FLAP and
Wanda-sp (An et al., arXiv 2312.11983). It is not a row of FLAP's table; it is here because it
costs nothing and shows how much the calibration-based scores add.

A channel j's score is the squared L2 norm of all its weights, ``||gate_j||^2 + ||up_j||^2 +
||W_down[:, j]||^2``; every layer loses the same fraction ``sparsity`` of its channels and
nothing compensates them.
"""

from __future__ import annotations

from typing import Any

from reclaim.compress._blocks import decoder_blocks
from reclaim.compress._structured import (
    StructuredParams,
    StructuredPruner,
    lowest_channels,
    mlp_parts,
    prune_channels,
    scope,
)
from reclaim.compress._torch import no_grad, torch


class MagnitudeSP(StructuredPruner):
    needs_calibration = False

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: StructuredParams,
                 seed: int) -> dict[str, Any]:
        path, blocks = decoder_blocks(model)
        per_layer: dict[str, Any] = {}
        counts: list[int] = []
        for i, block in enumerate(blocks):
            gate, up, down = mlp_parts(block, f"{path}.{i}")
            score = ((gate.weight.double() ** 2).sum(dim=1) + (up.weight.double() ** 2).sum(dim=1)
                     + (down.weight.double() ** 2).sum(dim=0))
            mask = lowest_channels(score, int(score.numel() * params.sparsity))
            counts.append(int(mask.sum()))
            per_layer.update(prune_channels(block, f"{path}.{i}", mask))
        return {"layers": per_layer, "channels_pruned_per_block": counts,
                "scope": scope(model, sum(counts), sum(mlp_parts(b, "")[2].in_features for b in blocks),
                               ", uniform per layer, no compensation")}


COMPRESSOR = MagnitudeSP()
