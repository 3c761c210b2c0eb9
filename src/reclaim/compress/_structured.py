"""What the structured pruning methods share (FLAP, Wanda-sp, magnitude-sp; An et al., arXiv
2312.11983, Sec. 3): removing whole MLP channels of Llama-family blocks, the calibration
statistics of the channels (the inputs of ``down_proj``), and FLAP's bias compensation.

A pruned channel j is removed as fake pruning: row j of ``gate_proj`` and ``up_proj`` and
column j of ``down_proj`` are zeroed (SiLU(0) * 0 = 0, so the channel contributes nothing),
which computes exactly what the physically smaller model computes. Bias compensation adds the
removed channels' mean contribution ``W_down[:, pruned] @ mean(x_pruned)`` as a bias of
``down_proj``: a Llama MLP has none, so the model's config gets ``mlp_bias = True`` and every
MLP Linear a bias (zero for gate/up), and the saved model reloads with transformers' Llama.

Attention heads are not pruned: the smoke subject (SmolLM2) has grouped-query attention (9
query heads share 3 KV heads), where FLAP's per-head removal does not apply as written
(CASIA-IVA-Lab/FLAP#14); every record says so in its ``scope``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reclaim.compress._base import Compressor, weight_error
from reclaim.compress._blocks import block_inputs, capture_linear_inputs, decoder_blocks, run_block
from reclaim.compress._torch import nn, no_grad, torch

MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass(frozen=True)
class StructuredParams:
    sparsity: float = 0.2   # the fraction of MLP channels (= of MLP weights) removed

    def __post_init__(self) -> None:
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ValueError(f"sparsity must be a number in [0, 1), got {s!r}")


def mlp_parts(block: nn.Module, where: str) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    """gate, up and down projections of a Llama-family MLP; other blocks are refused by name."""
    try:
        parts = tuple(block.get_submodule(n) for n in MLP)
    except AttributeError:
        raise ValueError(f"{where}: structured MLP pruning needs a Llama-family MLP "
                         f"({', '.join(MLP)}); {type(block).__name__} has none") from None
    return parts  # type: ignore[return-value]


class ChannelStats:
    """Running per-channel sum and sum of squares of a Linear's inputs (float64)."""

    def __init__(self, width: int) -> None:
        self.s = torch.zeros(width, dtype=torch.float64)
        self.ss = torch.zeros(width, dtype=torch.float64)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        self.s += x.sum(dim=0)
        self.ss += (x ** 2).sum(dim=0)
        self.n += x.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        return self.s / max(self.n, 1)

    @property
    def var(self) -> torch.Tensor:
        """Unbiased per-channel variance: FLAP's fluctuation V_j."""
        return ((self.ss - self.n * self.mean ** 2) / max(self.n - 1, 1)).clamp(min=0)

    @property
    def sq_norm(self) -> torch.Tensor:
        """||X_j||^2 over all calibration tokens (Wanda's input norm, squared)."""
        return self.ss


@no_grad
def channel_stats(model: nn.Module, calibration: list[torch.Tensor],
                  prune_block: Callable[[int, nn.Module, ChannelStats], None] | None = None) -> list[ChannelStats]:
    """Per block, the statistics of the MLP channels (``down_proj``'s inputs). Without
    ``prune_block`` the calibration is propagated through the unpruned model (FLAP); with it,
    each block is pruned after its statistics are taken and re-run, so that later blocks see
    pruned outputs (block-sequential, as Wanda)."""
    path, blocks = decoder_blocks(model)
    hidden, block_kwargs = block_inputs(model, calibration)
    out: list[ChannelStats] = []
    for i, block in enumerate(blocks):
        kwargs = block_kwargs[i]
        st = ChannelStats(mlp_parts(block, f"{path}.{i}")[2].in_features)
        outs = capture_linear_inputs(block, [MLP[2]], hidden, kwargs, lambda _n, x, st=st: st.add(x))
        if prune_block is not None:
            prune_block(i, block, st)
            outs = run_block(block, hidden, kwargs)
        hidden = outs
        out.append(st)
    return out


def enable_mlp_bias(model: nn.Module) -> None:
    """Give every MLP Linear a (zero) bias and set ``config.mlp_bias``, so that a compensation
    bias on ``down_proj`` is saved and reloads with transformers' Llama."""
    path, blocks = decoder_blocks(model)
    for i, block in enumerate(blocks):
        for lin in mlp_parts(block, f"{path}.{i}"):
            if lin.bias is None:
                lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype), requires_grad=False)
    model.config.mlp_bias = True


def bias_compensation(w_down: torch.Tensor, mean: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """The removed channels' mean contribution to down_proj's output: W[:, pruned] @ mean(x)[pruned]
    (FLAP, baseline bias compensation)."""
    return (w_down.double()[:, pruned] @ mean.double()[pruned]).to(w_down.dtype)


@no_grad
def prune_channels(block: nn.Module, where: str, pruned: torch.Tensor, mean: torch.Tensor | None = None
                   ) -> dict[str, dict[str, Any]]:
    """Zero the pruned channels' gate/up rows and down columns (adding the compensation bias
    first when ``mean`` is given); returns the three layers' records."""
    gate, up, down = mlp_parts(block, where)
    k, c = int(pruned.sum()), int(pruned.numel())
    before = {n: lin.weight.detach().clone() for n, lin in zip(MLP, (gate, up, down), strict=True)}
    if mean is not None and k:
        down.bias += bias_compensation(down.weight, mean, pruned)
    for lin in (gate, up):
        lin.weight[pruned, :] = 0
        if lin.bias is not None:
            lin.bias[pruned] = 0
    down.weight[:, pruned] = 0
    return {f"{where}.{n}": {"sparsity": k / c, "weight_error": weight_error(before[n], lin.weight),
                             "channels_pruned": k, "channels": c}
            for n, lin in zip(MLP, (gate, up, down), strict=True)}


def lowest_channels(score: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the k lowest-scoring channels (stable: ties go to the lower index)."""
    mask = torch.zeros(score.numel(), dtype=torch.bool)
    mask[torch.sort(score.flatten(), stable=True).indices[:k]] = True
    return mask.reshape(score.shape)


def scope(model: nn.Module, pruned: int, total: int, extra: str = "") -> str:
    """What was pruned, for every row of the claim table."""
    cfg = model.config
    heads, kv = getattr(cfg, "num_attention_heads", None), getattr(cfg, "num_key_value_heads", None)
    gqa = f"; grouped-query attention ({heads} query heads share {kv} KV heads)" if kv and heads and kv < heads else ""
    return (f"MLP channels only ({pruned} of {total}: gate/up rows, down columns){extra}; "
            f"attention heads not pruned{gqa}")


class StructuredPruner(Compressor):
    Params: type = StructuredParams
    quantizes = False

