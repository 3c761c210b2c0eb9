"""GPTQ (Frantar et al., arXiv 2210.17323, Sec. 4, Algorithm 1), as fake quantization.

Per Linear, from its calibration inputs X: ``H = 2 X^T X / N``; dead inputs (H_jj = 0) get
their weight column zeroed; ``H += damp * mean(diag H) * I``; ``U = chol(H^-1)^T`` (upper).
Columns are quantized left to right in blocks; each column's rounding error, divided by
U_jj, is spread over the not-yet-quantized columns of its row through U's row (the OBS
update), inside the block at once and to the later blocks lazily after it. With groups, a
group's scale and zero point come from the current, already-updated weights when the loop
reaches its first column (Sec. 4, "lazy batch updates"; the grouped variant of Sec. 5). With
``act_order`` columns go in decreasing diag(H) order (the reference's "act-order"), and a
group is a run of ``group_size`` columns in that order.

Blocks are processed sequentially: block i is calibrated on the outputs of the already
quantized blocks before it; with ``true_sequential`` the Linears inside a block also go in
call order (q/k/v, then o, then gate/up, then down), each stage seeing the quantized earlier
stages. Written in plain torch: the reference calls ``torch.cuda.synchronize()``
unconditionally and cannot run on a CPU, and the maintained libraries need CUDA or conflict
with our pins (notes, Sec. 3.9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.compress._base import Compressor, QuantParams, output_error, weight_error
from reclaim.compress._blocks import block_linears, compress_sequentially, decoder_blocks
from reclaim.compress._quant import QuantSpec, grid_params, quantize_with
from reclaim.compress._torch import no_grad, torch


@dataclass(frozen=True)
class GPTQParams(QuantParams):
    damp: float = 0.01
    block_size: int = 128
    act_order: bool = False
    true_sequential: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_obs_params(self.damp, self.block_size)


def check_obs_params(damp: float, block_size: int) -> None:
    """The damping and column-block size of the OBS column loop (GPTQ, SparseGPT)."""
    if not 0 <= damp < 1:
        raise ValueError(f"damp must be in [0, 1), got {damp!r}")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")


class HessianAccumulator:
    """Running ``2/N * sum x x^T`` over calibration tokens, in float32 like the reference."""

    def __init__(self, width: int) -> None:
        self.h = torch.zeros(width, width, dtype=torch.float32)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        m = x.shape[0]
        self.h *= self.n / (self.n + m)
        self.n += m
        x = (2 / self.n) ** 0.5 * x
        self.h += x.t() @ x


def _params_for(w: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row scale and zero over the columns of ``w`` (a group, or the whole row)."""
    return grid_params(w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True), spec.bits, spec.sym)


@no_grad
def gptq_quantize(weight: torch.Tensor, h: torch.Tensor, spec: QuantSpec, damp: float = 0.01,
                  block_size: int = 128, act_order: bool = False, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize ``weight`` (out, in) given the input second moment ``h`` (in, in); returns the
    dequantized weights. Supports per-tensor, per-channel and grouped specs. ``keep`` (bool,
    like ``weight``) marks weights kept unquantized (GWQ's 16-bit outliers): their rounding
    error is zero, they carry the error updates of earlier columns, and a group's grid is taken
    with them zeroed, as GWQ's RTN path takes it."""
    if spec.axis == "input_channel":
        raise ValueError("gptq: axis 'input_channel' is not supported (GPTQ quantizes column by column)")
    w = weight.detach().float().clone()
    h = h.detach().float().clone()
    cols = w.shape[1]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    kept = torch.zeros_like(w, dtype=torch.bool) if keep is None else keep.clone()
    if spec.axis == "tensor":
        wz = w.masked_fill(kept, 0.0)
        scale, zero = grid_params(wz.min().reshape(1, 1), wz.max().reshape(1, 1), spec.bits, spec.sym)
    elif spec.axis == "channel":
        scale, zero = _params_for(w.masked_fill(kept, 0.0), spec)
    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(h), descending=True, stable=True)
        w, h, kept = w[:, perm], h[perm][:, perm], kept[:, perm]
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols)
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h.double()))
    u = torch.linalg.cholesky(hinv, upper=True).float()
    q = torch.zeros_like(w)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if spec.axis == "group" and col % spec.group_size == 0:
                # the group's grid from the current weights: the in-block part already carries
                # this block's updates, the rest the lazy updates of earlier blocks
                end = col + spec.group_size
                cur = torch.cat([w1[:, i:], w[:, i2:end]], dim=1)[:, : spec.group_size]
                scale, zero = _params_for(cur.masked_fill(kept[:, col:col + cur.shape[1]], 0.0), spec)
            wc = w1[:, i]
            qc = quantize_with(wc.unsqueeze(1), scale, zero, spec.bits).squeeze(1)
            qc = torch.where(kept[:, col], wc, qc)
            q[:, col] = qc
            e = (wc - qc) / u1[i, i]
            w1[:, i:] -= e.unsqueeze(1) @ u1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    if perm is not None:
        q = q[:, torch.argsort(perm)]
    return q.to(weight.dtype)


class GPTQ(Compressor):
    Params = GPTQParams

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: GPTQParams,
                 seed: int) -> dict[str, Any]:
        path, blocks = decoder_blocks(model)
        for i, block in enumerate(blocks):
            for name, lin in block_linears(block).items():
                params.quant.check(f"{path}.{i}.{name}", lin.weight)
        def update(name: str, w: torch.Tensor, acc: HessianAccumulator) -> tuple[torch.Tensor, dict[str, Any]]:
            w_hat = gptq_quantize(w, acc.h, params.quant, params.damp, params.block_size, params.act_order)
            return w_hat, {"weight_error": weight_error(w, w_hat), "output_error": output_error(w, w_hat, acc.h),
                           "stored_bits": params.quant.stored_bits(tuple(w.shape))}

        per_layer = compress_sequentially(model, calibration or [], "gptq blocks",
                                          lambda lin: HessianAccumulator(lin.in_features), update,
                                          params.true_sequential)
        return {"layers": per_layer, "calibration_tokens": sum(int(c.numel()) for c in calibration or [])}


COMPRESSOR = GPTQ()
