"""FLAP: fluctuation-based adaptive structured pruning (An et al., AAAI 2024, arXiv 2312.11983,
Sec. 3), MLP channels only, as fake pruning.

1. Calibration is propagated through the unpruned model; for each MLP channel j
   (an input of ``down_proj``) the mean ``x̄_j`` and the fluctuation ``V_j``, the unbiased
   variance over calibration tokens, are kept.
2. Fluctuation metric WIFV: ``S_j = V_j * ||W_down[:, j]||^2``, the fluctuation of the
   channel weighted by its column's squared norm (``metric: WIFN`` is the paper's
   norm-based ablation, ``mean_i |W_ij| * ||X_j||``).
3. Adaptive structure search: each layer's scores are standardised, ``(S - mean) / std``
   within the layer, and the lowest ``sparsity`` fraction of all channels of all layers is
   removed globally, so layers lose different numbers of channels (``structure: AL``;
   ``UL`` removes the same fraction in every layer). The paper's AL-AM also ranks attention
   heads against channels; here only MLP channels are pruned (GQA subject), so AL-AM reduces
   to AL over the MLP modules.
4. Baseline bias compensation: ``b = W_down[:, pruned] @ x̄_pruned`` becomes
   ``down_proj``'s bias (``config.mlp_bias = True``), so the pruned model's MLP output equals
   the unpruned one's on average over the calibration tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.compress._blocks import decoder_blocks
from reclaim.compress._structured import (
    StructuredParams,
    StructuredPruner,
    channel_stats,
    enable_mlp_bias,
    lowest_channels,
    mlp_parts,
    prune_channels,
    scope,
)
from reclaim.compress._torch import no_grad, torch


@dataclass(frozen=True)
class FLAPParams(StructuredParams):
    metric: str = "WIFV"
    structure: str = "AL"
    bias_compensation: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metric not in ("WIFV", "WIFN"):
            raise ValueError(f"metric: unknown {self.metric!r} (WIFV, WIFN)")
        if self.structure not in ("AL", "UL"):
            raise ValueError(f"structure: unknown {self.structure!r} (AL: adaptive across layers, UL: uniform)")


def standardise(score: torch.Tensor) -> torch.Tensor:
    """(S - mean) / std within one layer (FLAP, adaptive structure search), so layers' scores are comparable."""
    s = score.double()
    return (s - s.mean()) / s.std().clamp(min=1e-30)


class FLAP(StructuredPruner):
    Params = FLAPParams

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: FLAPParams,
                 seed: int) -> dict[str, Any]:
        path, blocks = decoder_blocks(model)
        downs = [mlp_parts(b, f"{path}.{i}")[2] for i, b in enumerate(blocks)]
        stats = channel_stats(model, calibration or [])
        scores = []
        for st, down in zip(stats, downs, strict=True):
            w = down.weight.detach().double()
            if params.metric == "WIFV":
                scores.append(st.var * (w ** 2).sum(dim=0))
            else:
                scores.append(w.abs().mean(dim=0) * st.sq_norm.sqrt())
        if params.structure == "AL":
            flat = torch.cat([standardise(s) for s in scores])
            masks = lowest_channels(flat, int(flat.numel() * params.sparsity)).split([s.numel() for s in scores])
        else:
            masks = [lowest_channels(s, int(s.numel() * params.sparsity)) for s in scores]
        if params.bias_compensation:
            enable_mlp_bias(model)
        per_layer: dict[str, Any] = {}
        for i, (block, mask, st) in enumerate(zip(blocks, masks, stats, strict=True)):
            per_layer.update(prune_channels(block, f"{path}.{i}", mask,
                                            st.mean if params.bias_compensation else None))
        pruned, total = sum(int(m.sum()) for m in masks), sum(m.numel() for m in masks)
        how = (f", {params.metric} {'global over layers (AL)' if params.structure == 'AL' else 'per layer (UL)'}"
               f"{', bias compensation in down_proj' if params.bias_compensation else ', no bias compensation'}")
        return {"layers": per_layer, "scope": scope(model, pruned, total, how),
                "channels_pruned_per_block": [int(m.sum()) for m in masks],
                "calibration_tokens": sum(int(c.numel()) for c in calibration or [])}


COMPRESSOR = FLAP()
