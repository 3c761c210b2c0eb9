"""Wanda-sp: the structured Wanda baseline of FLAP (An et al., arXiv 2312.11983, its experiments;
Wanda: Sun et al., arXiv 2306.11695, eq. 1), MLP channels only, as fake pruning.

A channel j's score is its ``down_proj`` column's Wanda scores averaged over the output rows,
``mean_i |W_ij| * ||X_j||_2``; every layer loses the same fraction ``sparsity`` of its
channels (no adaptive structure) and nothing compensates them. Block-sequential like Wanda:
each block is pruned after its statistics are taken and re-run, so later blocks see pruned
outputs.
"""

from __future__ import annotations

from typing import Any

from reclaim.compress._blocks import decoder_blocks
from reclaim.compress._structured import (
    ChannelStats,
    StructuredParams,
    StructuredPruner,
    channel_stats,
    lowest_channels,
    mlp_parts,
    prune_channels,
    scope,
)
from reclaim.compress._torch import no_grad, torch


class WandaSP(StructuredPruner):
    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: StructuredParams,
                 seed: int) -> dict[str, Any]:
        path, _ = decoder_blocks(model)
        per_layer: dict[str, Any] = {}
        counts: list[int] = []

        def prune(i: int, block: torch.nn.Module, st: ChannelStats) -> None:
            down = mlp_parts(block, f"{path}.{i}")[2]
            score = down.weight.detach().double().abs().mean(dim=0) * st.sq_norm.sqrt()
            mask = lowest_channels(score, int(score.numel() * params.sparsity))
            counts.append(int(mask.sum()))
            per_layer.update(prune_channels(block, f"{path}.{i}", mask))

        stats = channel_stats(model, calibration or [], prune)
        total = sum(st.s.numel() for st in stats)
        return {"layers": per_layer, "scope": scope(model, sum(counts), total, ", uniform per layer, no compensation"),
                "channels_pruned_per_block": counts,
                "calibration_tokens": sum(int(c.numel()) for c in calibration or [])}


COMPRESSOR = WandaSP()
