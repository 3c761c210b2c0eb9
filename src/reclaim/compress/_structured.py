"""What the structured pruning methods share (FLAP, Wanda-sp, magnitude-sp; An et al., arXiv
2312.11983, Sec. 3): removing whole MLP channels and whole attention KV groups of
Llama-family blocks, the calibration statistics of their units (the inputs of ``down_proj``
and ``o_proj``), and FLAP's bias compensation.

A pruned channel j is removed as fake pruning: row j of ``gate_proj`` and ``up_proj`` and
column j of ``down_proj`` are zeroed (SiLU(0) * 0 = 0, so the channel contributes nothing),
which computes exactly what the physically smaller model computes. Bias compensation adds the
removed channels' mean contribution ``W_down[:, pruned] @ mean(x_pruned)`` as a bias of
``down_proj``: a Llama MLP has none, so the model's config gets ``mlp_bias = True`` and every
MLP Linear a bias (zero for gate/up), and the saved model reloads with transformers' Llama.

An attention unit is one KV group: one KV head and the ``n_rep = heads / kv_heads`` query
heads that read it (one head under multi-head attention). FLAP's per-head removal does not
apply to grouped-query attention as written (CASIA-IVA-Lab/FLAP#14: removing a query head
leaves its KV head serving the others, removing a KV head orphans n_rep query heads), so a
group goes as a whole: its q rows (n_rep * head_dim), k and v rows (head_dim each) and o_proj
columns (n_rep * head_dim) are zeroed, which is what the physically smaller model computes
(its heads never enter o_proj). Compensation goes into ``o_proj``'s bias, with
``config.attention_bias = True`` (zero q/k/v biases). Wanda-sp and magnitude-sp prune MLP
channels only; every record's ``scope`` says what was pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reclaim.compress._base import Compressor, weight_error
from reclaim.compress._blocks import block_inputs, capture_linear_inputs, decoder_blocks, run_block
from reclaim.compress._torch import nn, no_grad, torch

MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")


@dataclass(frozen=True)
class StructuredParams:
    sparsity: float = 0.2   # the share of MLP weights removed (FLAP AL-AM: of attention + MLP weights)

    def __post_init__(self) -> None:
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ValueError(f"sparsity must be a number in [0, 1), got {s!r}")


def _llama_parts(block: nn.Module, names: tuple[str, ...], what: str, where: str) -> tuple[nn.Linear, ...]:
    """The named Linears of a Llama-family block; other blocks are refused by name."""
    try:
        return tuple(block.get_submodule(n) for n in names)  # type: ignore[misc]
    except AttributeError:
        raise ValueError(f"{where}: {what} needs a Llama-family block ({', '.join(names)}); "
                         f"{type(block).__name__} has none") from None


def mlp_parts(block: nn.Module, where: str) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    """gate, up and down projections of a Llama-family MLP."""
    return _llama_parts(block, MLP, "structured MLP pruning", where)  # type: ignore[return-value]


def attention_parts(block: nn.Module, where: str) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
    """q, k, v and o projections of a Llama-family attention."""
    return _llama_parts(block, ATTENTION, "attention pruning", where)  # type: ignore[return-value]


@dataclass(frozen=True)
class AttentionShape:
    """Head layout of one attention: query head h reads KV head ``h // n_rep`` (transformers'
    ``repeat_kv``), so KV group g is query heads ``g*n_rep .. g*n_rep + n_rep - 1``."""

    heads: int
    kv_heads: int
    head_dim: int
    hidden: int

    @property
    def n_rep(self) -> int:
        return self.heads // self.kv_heads

    @property
    def group_width(self) -> int:
        """o_proj input channels (= q rows) of one KV group."""
        return self.n_rep * self.head_dim

    @property
    def group_weights(self) -> int:
        """Weights one KV group removes: q rows n_rep*d_h, k and v rows d_h each, o columns
        n_rep*d_h, each of length ``hidden``."""
        return (2 * self.n_rep + 2) * self.head_dim * self.hidden

    def channels(self, groups: torch.Tensor) -> torch.Tensor:
        """Mask over q rows / o_proj columns from a mask over KV groups."""
        return groups.repeat_interleave(self.group_width)

    def kv_rows(self, groups: torch.Tensor) -> torch.Tensor:
        """Mask over k / v rows from a mask over KV groups."""
        return groups.repeat_interleave(self.head_dim)


def attention_shape(block: nn.Module, where: str) -> AttentionShape:
    q, k, _, o = attention_parts(block, where)
    attn = block.get_submodule("self_attn")
    d = getattr(attn, "head_dim", None)
    if not d:
        raise ValueError(f"{where}.self_attn: no head_dim attribute; cannot group its heads")
    if q.out_features % d or k.out_features % d or (q.out_features // d) % (k.out_features // d):
        raise ValueError(f"{where}.self_attn: q ({q.out_features}) / k ({k.out_features}) widths do not "
                         f"split into KV groups of head_dim {d}")
    return AttentionShape(q.out_features // d, k.out_features // d, d, o.out_features)


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
def linear_input_stats(model: nn.Module, calibration: list[torch.Tensor], names: list[str],
                       prune_block: Callable[[int, nn.Module, dict[str, ChannelStats]], None] | None = None
                       ) -> list[dict[str, ChannelStats]]:
    """Per block, the statistics of the named Linears' inputs (one calibration pass for all of
    them). Without ``prune_block`` the calibration is propagated through the unpruned model
    (FLAP); with it, each block is pruned after its statistics are taken and re-run, so that
    later blocks see pruned outputs (block-sequential, as Wanda)."""
    _, blocks = decoder_blocks(model)
    hidden, block_kwargs = block_inputs(model, calibration)
    out: list[dict[str, ChannelStats]] = []
    for i, block in enumerate(blocks):
        kwargs = block_kwargs[i]
        lins = {n: block.get_submodule(n) for n in names}
        st = {n: ChannelStats(lin.in_features) for n, lin in lins.items()}
        outs = capture_linear_inputs(block, names, hidden, kwargs, lambda n, x, st=st: st[n].add(x))
        if prune_block is not None:
            prune_block(i, block, st)
            outs = run_block(block, hidden, kwargs)
        hidden = outs
        out.append(st)
    return out


def channel_stats(model: nn.Module, calibration: list[torch.Tensor],
                  prune_block: Callable[[int, nn.Module, ChannelStats], None] | None = None) -> list[ChannelStats]:
    """Per block, the statistics of the MLP channels (``down_proj``'s inputs); see
    ``linear_input_stats``."""
    path, blocks = decoder_blocks(model)
    for i, block in enumerate(blocks):
        mlp_parts(block, f"{path}.{i}")  # refuse non-Llama MLPs by name before any pass
    inner = None if prune_block is None else (lambda i, b, st: prune_block(i, b, st[MLP[2]]))
    return [st[MLP[2]] for st in linear_input_stats(model, calibration, [MLP[2]], inner)]


def _zero_biases(model: nn.Module, parts: Callable[[nn.Module, str], tuple[nn.Linear, ...]]) -> None:
    """Give every Linear ``parts(block, prefix)`` names, in every block, a (zero) bias."""
    path, blocks = decoder_blocks(model)
    for i, block in enumerate(blocks):
        for lin in parts(block, f"{path}.{i}"):
            if lin.bias is None:
                lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype), requires_grad=False)


def enable_mlp_bias(model: nn.Module) -> None:
    """Give every MLP Linear a (zero) bias and set ``config.mlp_bias``, so that a compensation
    bias on ``down_proj`` is saved and reloads with transformers' Llama."""
    _zero_biases(model, mlp_parts)
    model.config.mlp_bias = True


def enable_attention_bias(model: nn.Module) -> None:
    """Give q/k/v/o of every attention a (zero) bias and set ``config.attention_bias``, so that a
    compensation bias on ``o_proj`` is saved and reloads with transformers' Llama."""
    _zero_biases(model, attention_parts)
    model.config.attention_bias = True


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


@no_grad
def prune_kv_groups(block: nn.Module, where: str, pruned: torch.Tensor, mean: torch.Tensor | None = None
                    ) -> dict[str, dict[str, Any]]:
    """Zero the pruned KV groups' q/k/v rows (and bias entries) and o_proj columns, adding
    ``W_o[:, pruned] @ mean[pruned]`` to o_proj's bias first when ``mean`` (of o_proj's inputs)
    is given; returns the four layers' records."""
    shape = attention_shape(block, where)
    parts = attention_parts(block, where)
    q, k, v, o = parts
    g, n = int(pruned.sum()), int(pruned.numel())
    ch, kv = shape.channels(pruned), shape.kv_rows(pruned)
    before = {name: lin.weight.detach().clone() for name, lin in zip(ATTENTION, parts, strict=True)}
    if mean is not None and g:
        o.bias += bias_compensation(o.weight, mean, ch)
    for lin, rows in ((q, ch), (k, kv), (v, kv)):
        lin.weight[rows, :] = 0
        if lin.bias is not None:
            lin.bias[rows] = 0
    o.weight[:, ch] = 0
    return {f"{where}.{name}": {"sparsity": g / n, "weight_error": weight_error(before[name], lin.weight),
                                "kv_groups_pruned": g, "kv_groups": n, "heads_pruned": g * shape.n_rep,
                                "heads": shape.heads}
            for name, lin in zip(ATTENTION, parts, strict=True)}


def lowest_weighted(score: torch.Tensor, weight: torch.Tensor, budget: float) -> torch.Tensor:
    """Mask of the lowest-scoring units (stable: ties go to the lower index), as many as fit in
    ``budget``: the longest prefix of the ascending order whose summed ``weight`` is <= budget.
    FLAP's AL-AM cut, where a unit's weight is the number of parameters it removes."""
    order = torch.sort(score.flatten(), stable=True).indices
    spent = torch.cumsum(weight.flatten()[order].double(), dim=0)
    k = int((spent <= budget * (1 + 1e-12)).sum())
    mask = torch.zeros(score.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask.reshape(score.shape)


def lowest_channels(score: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the k lowest-scoring channels (stable: ties go to the lower index)."""
    mask = torch.zeros(score.numel(), dtype=torch.bool)
    mask[torch.sort(score.flatten(), stable=True).indices[:k]] = True
    return mask.reshape(score.shape)


def scope(model: nn.Module, pruned: int, total: int, extra: str = "",
          groups: tuple[int, int] | None = None) -> str:
    """What was pruned, for every row of the claim table; ``groups`` = (KV groups pruned, KV
    groups in all) when attention was pruned too."""
    cfg = model.config
    heads, kv = getattr(cfg, "num_attention_heads", None), getattr(cfg, "num_key_value_heads", None)
    gqa = f"; grouped-query attention ({heads} query heads share {kv} KV heads)" if kv and heads and kv < heads else ""
    mlp = f"({pruned} of {total}: gate/up rows, down columns)"
    if groups is None:
        return f"MLP channels only {mlp}{extra}; attention heads not pruned{gqa}"
    if gqa:
        n_rep = heads // kv
        attn = (f"attention KV groups ({n_rep} query heads + 1 KV head each; {groups[0]} of {groups[1]}: "
                f"q/k/v rows, o columns)")
    else:
        attn = f"attention heads ({groups[0]} of {groups[1]}: q/k/v rows, o columns)"
    return f"MLP channels {mlp} and {attn}{extra}{gqa}"


class StructuredPruner(Compressor):
    Params: type = StructuredParams
    quantizes = False

