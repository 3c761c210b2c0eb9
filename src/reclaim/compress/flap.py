"""FLAP: fluctuation-based adaptive structured pruning (An et al., AAAI 2024, arXiv 2312.11983,
Sec. 3), as fake pruning of MLP channels (``modules: mlp``) or of MLP channels and attention
KV groups (``modules: attention+mlp``, the paper's AL-AM).

1. Calibration is propagated through the unpruned model; for each MLP channel j (an input of
   ``down_proj``) and, with attention, each attention channel j (an input of ``o_proj``) the
   mean ``x̄_j`` and the fluctuation ``V_j``, the unbiased variance over calibration tokens,
   are kept.
2. Fluctuation metric WIFV: ``S_j = V_j * ||W[:, j]||^2``, the fluctuation of the channel
   weighted by its down_proj / o_proj column's squared norm (``metric: WIFN`` is the paper's
   norm-based ablation, ``mean_i |W_ij| * ||X_j||``). An attention unit is one KV group (one
   head under MHA; n_rep query heads and their KV head under GQA, CASIA-IVA-Lab/FLAP#14),
   scored by the sum of its n_rep * head_dim o_proj channels' scores.
3. Adaptive structure search: scores are standardised, ``(S - mean) / std``, within each
   layer and module (the attention groups of layer i; the MLP channels of layer i), all units
   of all layers are sorted globally and removed lowest first until the removed weights reach
   ``sparsity`` of the blocks' attention + MLP weights (``structure: AL``). A unit counts the
   weights it removes: an MLP channel 3 * hidden, a KV group (2 * n_rep + 2) * head_dim *
   hidden (q rows n_rep * d_h, k and v rows d_h each, o columns n_rep * d_h). For MHA LLaMA-7B
   (n_rep = 1, d_h = 128) a head is 4 * 128 / 3 = 512/3 channels, the paper's ratio.
   ``structure: UL`` removes the same fraction of groups and of channels in every layer. With
   ``modules: mlp`` only MLP channels are ranked and ``sparsity`` is their share.
4. Baseline bias compensation: ``b = W[:, pruned] @ x̄_pruned`` becomes ``down_proj``'s
   (``config.mlp_bias``) and ``o_proj``'s (``config.attention_bias``) bias, so each pruned
   module's output equals the unpruned one's on average over the calibration tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.compress._blocks import decoder_blocks
from reclaim.compress._structured import (
    ATTENTION,
    MLP,
    ChannelStats,
    StructuredParams,
    StructuredPruner,
    attention_shape,
    enable_attention_bias,
    enable_mlp_bias,
    linear_input_stats,
    lowest_channels,
    lowest_weighted,
    mlp_parts,
    prune_channels,
    prune_kv_groups,
    scope,
)
from reclaim.compress._torch import no_grad, torch

MODULES = ("mlp", "attention+mlp")


@dataclass(frozen=True)
class FLAPParams(StructuredParams):
    """``modules: mlp`` (the default) is left out of the instance's ``__dict__``, which the job
    id hashes (reclaim.plan.compress_job), so MLP-only FLAP jobs keep the ids they had before
    attention pruning existed; reading ``params.modules`` still gives ``mlp``."""

    metric: str = "WIFV"
    structure: str = "AL"
    bias_compensation: bool = True
    modules: str = "mlp"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metric not in ("WIFV", "WIFN"):
            raise ValueError(f"metric: unknown {self.metric!r} (WIFV, WIFN)")
        if self.structure not in ("AL", "UL"):
            raise ValueError(f"structure: unknown {self.structure!r} (AL: adaptive across layers, UL: uniform)")
        if self.modules not in MODULES:
            raise ValueError(f"modules: unknown {self.modules!r} (mlp, attention+mlp: the paper's AL-AM)")
        if self.modules == "mlp":
            object.__delattr__(self, "modules")  # falls back to the class default "mlp"

    @property
    def attention(self) -> bool:
        return self.modules == "attention+mlp"


def standardise(score: torch.Tensor) -> torch.Tensor:
    """(S - mean) / std within one layer and module (FLAP, adaptive structure search), so
    layers' and modules' scores are comparable; a single unit has nothing to compare with: 0."""
    s = score.double()
    if s.numel() < 2:
        return torch.zeros_like(s)
    return (s - s.mean()) / s.std().clamp(min=1e-30)


def channel_scores(w: torch.Tensor, st: ChannelStats, metric: str) -> torch.Tensor:
    """Per input channel of ``w`` (down_proj / o_proj): WIFV ``V_j ||W[:, j]||^2`` or WIFN
    ``mean_i |W_ij| ||X_j||``."""
    w = w.detach().double()
    if metric == "WIFV":
        return st.var * (w ** 2).sum(dim=0)
    return w.abs().mean(dim=0) * st.sq_norm.sqrt()


class FLAP(StructuredPruner):
    Params = FLAPParams

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: FLAPParams,
                 seed: int) -> dict[str, Any]:
        path, blocks = decoder_blocks(model)
        downs = [mlp_parts(b, f"{path}.{i}")[2] for i, b in enumerate(blocks)]
        shapes = [attention_shape(b, f"{path}.{i}") for i, b in enumerate(blocks)] if params.attention else []
        names = [MLP[2], ATTENTION[3]] if params.attention else [MLP[2]]
        stats = linear_input_stats(model, calibration or [], names)
        scores = [channel_scores(down.weight, st[MLP[2]], params.metric) for st, down in zip(stats, downs, strict=True)]
        if not params.attention:
            masks = self._mlp_masks(scores, params)
            groups: list[torch.Tensor] = [torch.zeros(0, dtype=torch.bool) for _ in blocks]
        else:
            heads = [channel_scores(b.get_submodule(ATTENTION[3]).weight, st[ATTENTION[3]], params.metric)
                     .reshape(sh.kv_heads, sh.group_width).sum(dim=1)
                     for b, st, sh in zip(blocks, stats, shapes, strict=True)]
            groups, masks = self._am_masks(heads, scores, shapes, params)
        if params.bias_compensation:
            enable_mlp_bias(model)
            if params.attention:
                enable_attention_bias(model)
        per_layer: dict[str, Any] = {}
        for i, (block, mask, st) in enumerate(zip(blocks, masks, stats, strict=True)):
            where = f"{path}.{i}"
            if params.attention:
                per_layer.update(prune_kv_groups(block, where, groups[i],
                                                 st[ATTENTION[3]].mean if params.bias_compensation else None))
            per_layer.update(prune_channels(block, where, mask,
                                            st[MLP[2]].mean if params.bias_compensation else None))
        pruned, total = sum(int(m.sum()) for m in masks), sum(m.numel() for m in masks)
        n_rep = [sh.n_rep for sh in shapes] or [0] * len(blocks)
        comp = ("o_proj and down_proj" if params.attention else "down_proj") if params.bias_compensation else ""
        how = (f", {params.metric} {'global over layers (AL)' if params.structure == 'AL' else 'per layer (UL)'}"
               f"{' and modules (AM)' if params.attention and params.structure == 'AL' else ''}"
               f"{', bias compensation in ' + comp if comp else ', no bias compensation'}")
        gsum = (sum(int(g.sum()) for g in groups), sum(g.numel() for g in groups)) if params.attention else None
        return {"layers": per_layer, "scope": scope(model, pruned, total, how, gsum),
                "channels_pruned_per_block": [int(m.sum()) for m in masks],
                "kv_groups_pruned_per_block": [int(g.sum()) for g in groups],
                "heads_pruned_per_block": [int(g.sum()) * r for g, r in zip(groups, n_rep, strict=True)],
                "calibration_tokens": sum(int(c.numel()) for c in calibration or [])}

    @staticmethod
    def _mlp_masks(scores: list[torch.Tensor], params: FLAPParams) -> list[torch.Tensor]:
        """MLP channels only: the lowest ``sparsity`` share of all standardised channels (AL) or
        of each layer's (UL)."""
        if params.structure == "AL":
            flat = torch.cat([standardise(s) for s in scores])
            return list(lowest_channels(flat, int(flat.numel() * params.sparsity)).split([s.numel() for s in scores]))
        return [lowest_channels(s, int(s.numel() * params.sparsity)) for s in scores]

    @staticmethod
    def _am_masks(heads: list[torch.Tensor], channels: list[torch.Tensor], shapes: list[Any],
                  params: FLAPParams) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """KV-group and MLP-channel masks per layer: AL-AM (global, weighted by the weights each
        unit removes) or UL (the same fraction of groups and of channels in every layer)."""
        if params.structure == "UL":
            return ([lowest_channels(h, int(h.numel() * params.sparsity)) for h in heads],
                    [lowest_channels(c, int(c.numel() * params.sparsity)) for c in channels])
        parts, weights = [], []
        for h, c, sh in zip(heads, channels, shapes, strict=True):
            parts += [standardise(h), standardise(c)]
            weights += [torch.full((h.numel(),), sh.group_weights, dtype=torch.float64),
                        torch.full((c.numel(),), 3 * sh.hidden, dtype=torch.float64)]
        weight = torch.cat(weights)
        mask = lowest_weighted(torch.cat(parts), weight, params.sparsity * float(weight.sum()))
        split = list(mask.split([p.numel() for p in parts]))
        return split[0::2], split[1::2]


COMPRESSOR = FLAP()
