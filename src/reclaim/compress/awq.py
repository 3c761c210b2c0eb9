"""AWQ: activation-aware weight quantization (Lin et al., arXiv 2306.00978, Sec. 3.2-3.3), as
fake quantization.

Per block, on calibration inputs propagated through the unquantized model:

1. Scale search (Sec. 3.2, eq. 4-5). For each group of Linears that share an input (q/k/v;
   gate/up; down; o only if the value projection has o's shape, since the reference folds o's
   scale into v and cannot for grouped-query attention), with ``s_x`` the mean |x| per input
   channel: for alpha on a grid of ``n_grid`` points in [0, 1), ``s = s_x^alpha`` normalised by
   sqrt(max s * min s), weights ``Q(W diag(s)) diag(s)^-1``, and the loss is the mean squared
   difference of the group's parent output (the attention or MLP module; a lone Linear's own
   output) from the unquantized one. alpha = 0 is s = 1, i.e. RTN, so the search never loses
   to RTN on its own objective.
2. Clip search (the reference's auto-clip): for every Linear except q/k, per output row and
   group, a symmetric clip ``max|w| * (1 - k/n_grid)`` for k < max_shrink * n_grid, chosen by
   the group's output error on ``clip_tokens`` evenly strided calibration tokens, on the
   scaled weights and scaled inputs.
3. RTN with the shared quantizer on the scaled, clipped weights.

The stored weight is ``Q(clip(W diag(s))) diag(s)^-1``: the reference folds ``diag(s)^-1`` into
the preceding RMSNorm or Linear for integer kernels, which computes the same function; a dense
fake-quantized weight is what the perplexity evaluation needs. The scale-folding map is
Llama-family (q/k/v/o/gate/up/down projections); other architectures are refused by name.
Written in plain torch: llm-awq is CUDA-only and AutoAWQ deprecated (notes, Sec. 3.9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from reclaim.compress._base import Compressor, QuantParams, weight_error
from reclaim.compress._blocks import (
    block_inputs,
    block_linears,
    common_parent,
    decoder_blocks,
    linear_stages,
    run_block,
    submodule,
)
from reclaim.compress._quant import QuantSpec, fake_quant, grid_params, quantize_with
from reclaim.compress._torch import no_grad, torch

LLAMA_LINEARS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@dataclass(frozen=True)
class AWQParams(QuantParams):
    n_grid: int = 20
    max_shrink: float = 0.5
    clip_tokens: int = 512
    clip: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.n_grid, int) or self.n_grid < 1:
            raise ValueError(f"n_grid must be an integer >= 1, got {self.n_grid!r}")
        if not 0 <= self.max_shrink < 1:
            raise ValueError(f"max_shrink must be in [0, 1), got {self.max_shrink!r}")
        if not isinstance(self.clip_tokens, int) or self.clip_tokens < 1:
            raise ValueError(f"clip_tokens must be an integer >= 1, got {self.clip_tokens!r}")


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def scalable(stage: list[str], lins: dict[str, torch.nn.Linear]) -> bool:
    """Whether the reference can fold this group's scale into the op before it."""
    leaves = {_leaf(n) for n in stage}
    if leaves == {"o_proj"}:
        v = next(m for n, m in lins.items() if _leaf(n) == "v_proj")
        return tuple(v.weight.shape) == tuple(lins[stage[0]].weight.shape)
    return True


def awq_scales(x_mean: torch.Tensor, alpha: float) -> torch.Tensor:
    s = x_mean.clamp(min=1e-4) ** alpha
    return s / (s.max() * s.min()).sqrt()


@no_grad
def clip_search(w: torch.Tensor, x: torch.Tensor, spec: QuantSpec, n_grid: int, max_shrink: float) -> torch.Tensor:
    """Per (row, group) clip value for ``w`` (out, in) given inputs ``x`` (tokens, in)."""
    out, inp = w.shape
    g = spec.group_size if spec.axis == "group" else inp
    wg = w.float().reshape(out, inp // g, g)                          # out, groups, g
    xg = x.float().t().reshape(inp // g, g, -1)                       # groups, g, tokens
    org = torch.einsum("ogk,gkt->ogt", wg, xg)
    org_max = wg.abs().amax(dim=2, keepdim=True)
    best_err = torch.full(org_max.shape, float("inf"))
    best = org_max.clone()
    for k in range(int(max_shrink * n_grid)):
        mx = org_max * (1 - k / n_grid)
        cur = torch.clamp(wg, -mx, mx)
        scale, zero = grid_params(cur.amin(dim=2, keepdim=True), cur.amax(dim=2, keepdim=True), spec.bits, spec.sym)
        q = quantize_with(cur, scale, zero, spec.bits)
        err = (torch.einsum("ogk,gkt->ogt", q, xg) - org).pow(2).mean(dim=2, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, mx, best)
    return best  # out, groups, 1


class AWQ(Compressor):
    Params = AWQParams

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: AWQParams,
                 seed: int) -> dict[str, Any]:
        path, blocks = decoder_blocks(model)
        for i, block in enumerate(blocks):
            lins = block_linears(block)
            unknown = {_leaf(n) for n in lins} - LLAMA_LINEARS
            if unknown:
                raise ValueError(f"awq: {type(block).__name__} has Linears {sorted(unknown)}; the scale-folding "
                                 "map is written for Llama-family blocks (q/k/v/o/gate/up/down_proj)")
            for name, lin in lins.items():
                params.quant.check(f"{path}.{i}.{name}", lin.weight)
        spec = params.quant
        hidden, block_kwargs = block_inputs(model, calibration or [])
        per_layer: dict[str, Any] = {}
        for i, block in enumerate(tqdm(blocks, desc="awq blocks")):
            kwargs = block_kwargs[i]
            lins = block_linears(block)
            stages = linear_stages(block, hidden[0], kwargs[0])
            parents = {tuple(st): common_parent(block, st) for st in stages}
            feats: dict[str, list[torch.Tensor]] = {n: [] for n in lins}
            calls: dict[str, list[tuple[tuple, dict, torch.Tensor]]] = {p: [] for p in parents.values()}
            handles = [lins[n].register_forward_hook(
                lambda _m, a, _o, n=n, feats=feats: feats[n].append(a[0].reshape(-1, a[0].shape[-1]))) for n in lins]
            handles += [submodule(block, p).register_forward_hook(
                lambda _m, a, kw, o, p=p, calls=calls: calls[p].append((a, kw, o[0] if isinstance(o, tuple) else o)),
                with_kwargs=True) for p in set(parents.values())]
            try:
                next_hidden = run_block(block, hidden, kwargs)  # the unquantized block's outputs
            finally:
                for h in handles:
                    h.remove()
            x = {n: torch.cat(v) for n, v in feats.items()}
            scales: dict[str, torch.Tensor] = {}
            for stage in stages:
                key = tuple(stage)
                if not scalable(stage, lins):
                    for n in stage:
                        scales[n] = torch.ones(lins[n].in_features)
                        per_layer[f"{path}.{i}.{n}"] = {"alpha": None, "scaled": False}
                    continue
                alpha, s = self._search(block, parents[key], calls[parents[key]], stage, lins, x[stage[0]], params)
                for n in stage:
                    scales[n] = s
                    per_layer[f"{path}.{i}.{n}"] = {"alpha": alpha, "scaled": True}
            for n, lin in lins.items():
                s = scales[n]
                w_scaled = lin.weight.float() * s
                clip_ratio = None
                if params.clip and _leaf(n) not in ("q_proj", "k_proj"):
                    xs = x[n] / s
                    step = max(1, xs.shape[0] // params.clip_tokens)
                    mx = clip_search(w_scaled, xs[::step][: params.clip_tokens], spec, params.n_grid,
                                     params.max_shrink)
                    out, inp = w_scaled.shape
                    g = spec.group_size if spec.axis == "group" else inp
                    wg = w_scaled.reshape(out, inp // g, g)
                    org_max = wg.abs().amax(dim=2, keepdim=True)
                    clip_ratio = float((mx / org_max.clamp(min=1e-12)).mean())
                    w_scaled = torch.clamp(wg, -mx, mx).reshape(out, inp)
                w_hat = (fake_quant(w_scaled, spec, n) / s).to(lin.weight.dtype)
                rec = per_layer.setdefault(f"{path}.{i}.{n}", {})
                rec.update({"weight_error": weight_error(lin.weight, w_hat), "mean_clip_ratio": clip_ratio,
                            "stored_bits": spec.stored_bits(tuple(lin.weight.shape))})
                lin.weight.copy_(w_hat)
            hidden = next_hidden
        return {"layers": per_layer, "calibration_tokens": sum(int(c.numel()) for c in calibration or [])}

    @staticmethod
    def _search(block: torch.nn.Module, parent: str, calls: list[tuple[tuple, dict, torch.Tensor]], stage: list[str],
                lins: dict[str, torch.nn.Linear], x: torch.Tensor, params: AWQParams) -> tuple[float, torch.Tensor]:
        module = submodule(block, parent)
        x_mean = x.abs().float().mean(dim=0)
        # one batched call per alpha: the calibration windows share their length, and the
        # parent's other arguments (rotary embeddings, causal mask) broadcast over the batch
        args0, kw0, _ = calls[0]
        batch_args = (torch.cat([c[0][0] for c in calls]), *args0[1:]) if args0 else ()
        kw = dict(kw0)
        if not args0:
            kw["hidden_states"] = torch.cat([c[1]["hidden_states"] for c in calls])
        org = torch.cat([c[2] for c in calls]).float()
        originals = {n: lins[n].weight.detach().clone() for n in stage}
        best = (float("inf"), 0.0, torch.ones_like(x_mean))
        try:
            for k in range(params.n_grid):
                alpha = k / params.n_grid
                s = awq_scales(x_mean, alpha)
                for n in stage:
                    lins[n].weight.copy_((fake_quant(originals[n].float() * s, params.quant, n) / s)
                                         .to(originals[n].dtype))
                out = module(*batch_args, **kw)
                out = out[0] if isinstance(out, tuple) else out
                loss = float((org - out.float()).pow(2).mean())
                if loss < best[0]:
                    best = (loss, alpha, s)
        finally:
            for n in stage:
                lins[n].weight.copy_(originals[n])
        return best[1], best[2]


COMPRESSOR = AWQ()
