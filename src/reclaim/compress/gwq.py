"""GWQ: gradient-aware weight quantization (arXiv 2411.00850), as fake quantization.

**The algorithm is a reading of the paper's abstract** (notes, Sec. 3.4; no official code was
found, and every GWQ number is unverified): the gradients of the language-model loss with
respect to the weights, from one back-propagation (or a few) of calibration samples in fp32,
locate the outliers; per weight matrix the top ``outlier_fraction`` (1 %) by |dL/dW| stay in
16 bits, and the rest is quantized group-wise with the shared quantizer (RTN):

    W_hat = Q(W * (1 - M)) + W * M,

where the masked entries are zeroed before the group ranges are taken, so the outliers no
longer stretch their groups' grids.

``select`` gives the ablations that make the claim testable at an equal bit budget (the same
fraction kept in 16 bits, chosen differently): ``gradient`` (GWQ), ``magnitude`` (|W|),
``activation`` (|W_ij| * ||X_j||, the Wanda/AWQ saliency, input norms over all calibration
tokens of the unquantized model in one forward pass), ``hessian`` (the OBS saliency
w_ij^2 / [H^-1]_jj with H = 2 X^T X / N + damping, Hassibi & Stork 1993 as SparseGPT uses it,
arXiv 2301.00774 Sec. 3; the Hessian-based outlier selection the GWQ abstract argues against,
SpQR/OWQ) and ``random`` (seeded).

``rest`` quantizes the other 99 %: ``rtn`` (the formula above) or ``gptq`` (the notes' other
reading: GPTQ's column loop, block by block on the quantized earlier blocks' outputs, with the
kept weights' rounding error zero, reclaim.compress.gptq ``keep``). Saliencies are computed on
the unquantized model before any weight changes.

Storage accounting (``stored_bits`` per layer, recorded as ``outlier_accounting``): the dense
grid's codes and per-group scale/zero for every position (the outliers' codes included, as a
dense kernel stores them), plus per kept weight a 16-bit value and a ceil(log2(in))-bit
column index, plus one 32-bit row pointer per output row (CSR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reclaim.compress._base import Compressor, QuantParams, weight_error
from reclaim.compress._blocks import compress_sequentially, compressible_linears
from reclaim.compress._quant import fake_quant
from reclaim.compress._torch import no_grad, torch
from reclaim.compress.gptq import HessianAccumulator, check_obs_params, gptq_quantize

SELECT = ("gradient", "magnitude", "activation", "hessian", "random")
REST = ("rtn", "gptq")
ACCOUNTING = ("dense grid codes + per-group scale/zero for every weight, plus per 16-bit outlier its value "
              "(16 bits) and a ceil(log2(in_features))-bit column index, plus a 32-bit row pointer per row (CSR)")


@dataclass(frozen=True)
class GWQParams(QuantParams):
    outlier_fraction: float = 0.01
    select: str = "gradient"
    grad_samples: int = 1
    rest: str = "rtn"
    damp: float = 0.01          # hessian saliency and rest gptq: H += damp * mean(diag H) * I
    block_size: int = 128       # rest gptq: the OBS column block

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rest not in REST:
            raise ValueError(f"rest: unknown {self.rest!r} ({', '.join(REST)})")
        check_obs_params(self.damp, self.block_size)
        f = self.outlier_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ValueError(f"outlier_fraction must be a number in [0, 1), got {f!r}")
        if self.select not in SELECT:
            raise ValueError(f"select: unknown {self.select!r} ({', '.join(SELECT)})")
        if not isinstance(self.grad_samples, int) or self.grad_samples < 1:
            raise ValueError(f"grad_samples must be an integer >= 1, got {self.grad_samples!r}")


def top_mask(saliency: torch.Tensor, fraction: float) -> torch.Tensor:
    """True at the ``round(fraction * numel)`` largest entries (ties: lower flat index first)."""
    k = int(round(fraction * saliency.numel()))
    mask = torch.zeros(saliency.numel(), dtype=torch.bool)
    if k:
        order = torch.argsort(saliency.flatten().double(), descending=True, stable=True)
        mask[order[:k]] = True
    return mask.view_as(saliency)


def quantize_with_outliers(w: torch.Tensor, mask: torch.Tensor, params: QuantParams, name: str) -> torch.Tensor:
    """Q(W * (1 - M)) + W * M."""
    w_hat = fake_quant(w.masked_fill(mask, 0.0), params.quant, name)
    return torch.where(mask, w, w_hat)


def outlier_bits(shape: tuple[int, ...], n_outliers: int) -> float:
    """Extra bits per weight for the 16-bit outliers (ACCOUNTING)."""
    out, inp = shape
    return (n_outliers * (16 + math.ceil(math.log2(max(inp, 2)))) + 32 * out) / (out * inp)


def gradient_saliency(model: torch.nn.Module, layers: dict[str, torch.nn.Linear],
                      samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """|dL/dW| of the mean next-token loss, summed over ``samples``, fp32 backward."""
    req = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = None
        for lin in layers.values():
            lin.weight.requires_grad_(True)
        with torch.enable_grad():
            for ids in samples:
                model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        return {name: lin.weight.grad.detach().abs().clone() for name, lin in layers.items()}
    finally:
        for p, r in req.items():
            p.grad = None
            p.requires_grad_(r)


@no_grad
def input_norms(model: torch.nn.Module, layers: dict[str, torch.nn.Linear],
                samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """||X_j||_2 per input column over every calibration token, one forward pass per sample."""
    sq = {name: torch.zeros(lin.in_features, dtype=torch.float64) for name, lin in layers.items()}

    def add(name: str, x: torch.Tensor) -> None:  # a forward hook returning a tensor replaces the output
        sq[name].add_((x.reshape(-1, x.shape[-1]).double() ** 2).sum(0))

    handles = [lin.register_forward_hook(lambda _m, inp, _o, n=name: add(n, inp[0])) for name, lin in layers.items()]
    try:
        for ids in samples:
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {n: v.sqrt().float() for n, v in sq.items()}


@no_grad
def input_hessians(model: torch.nn.Module, layers: dict[str, torch.nn.Linear],
                   samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """H = 2 X^T X / N per Linear over every calibration token of the unquantized model."""
    accs = {name: HessianAccumulator(lin.in_features) for name, lin in layers.items()}
    handles = [lin.register_forward_hook(lambda _m, inp, _o, n=name: accs[n].add(inp[0]))
               for name, lin in layers.items()]
    try:
        for ids in samples:
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {n: a.h for n, a in accs.items()}


def hessian_saliency(w: torch.Tensor, h: torch.Tensor, damp: float) -> torch.Tensor:
    """w_ij^2 / [H^-1]_jj, H damped as GPTQ damps it (dead inputs get H_jj = 1)."""
    h = h.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    h += damp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    hinv_diag = torch.diag(torch.cholesky_inverse(torch.linalg.cholesky(h)))
    return (w.double() ** 2 / hinv_diag.unsqueeze(0)).float()


class GWQ(Compressor):
    Params = GWQParams

    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: GWQParams,
                 seed: int) -> dict[str, Any]:
        layers = compressible_linears(model)
        for name, lin in layers.items():
            params.quant.check(name, lin.weight)
        samples = list(calibration or [])
        if params.select == "gradient":
            if not samples:
                raise ValueError("gwq: select 'gradient' needs calibration samples")
            saliency = gradient_saliency(model, layers, samples[: params.grad_samples])
        elif params.select == "activation":
            norms = input_norms(model, layers, samples)
            saliency = {n: lin.weight.detach().abs() * norms[n] for n, lin in layers.items()}
        elif params.select == "hessian":
            hess = input_hessians(model, layers, samples)
            saliency = {n: hessian_saliency(lin.weight.detach(), hess[n], params.damp) for n, lin in layers.items()}
            del hess
        elif params.select == "magnitude":
            saliency = {n: lin.weight.detach().abs() for n, lin in layers.items()}
        else:
            saliency = {}
            for i, (n, lin) in enumerate(layers.items()):
                g = torch.Generator().manual_seed(seed * 100_003 + i)
                saliency[n] = torch.rand(lin.weight.shape, generator=g)
        masks = {id(lin.weight): top_mask(saliency.pop(name), params.outlier_fraction) for name, lin in layers.items()}

        def record(w: torch.Tensor, w_hat: torch.Tensor, k: int) -> dict[str, Any]:
            return {"weight_error": weight_error(w, w_hat), "outliers": k,
                    "stored_bits": params.quant.stored_bits(tuple(w.shape)) + outlier_bits(tuple(w.shape), k)}

        if params.rest == "gptq":
            if not samples:
                raise ValueError("gwq: rest 'gptq' needs calibration samples")

            def update(name: str, w: torch.Tensor, acc: HessianAccumulator) -> tuple[torch.Tensor, dict[str, Any]]:
                mask = masks[id(w)]
                w_hat = gptq_quantize(w, acc.h, params.quant, params.damp, params.block_size, keep=mask)
                return w_hat, record(w, w_hat, int(mask.sum()))

            per_layer = compress_sequentially(model, samples, "gwq+gptq blocks",
                                              lambda lin: HessianAccumulator(lin.in_features), update)
        else:
            per_layer = {}
            with torch.no_grad():
                for name, lin in layers.items():
                    w = lin.weight
                    mask = masks[id(w)]
                    w_hat = quantize_with_outliers(w.detach(), mask, params, name)
                    per_layer[name] = record(w, w_hat, int(mask.sum()))
                    w.copy_(w_hat)
        used = {"gradient": min(params.grad_samples, len(samples)), "activation": len(samples),
                "hessian": len(samples)}.get(params.select, 0)
        if params.rest == "gptq":
            used = len(samples)
        return {"layers": per_layer, "select": params.select, "rest": params.rest, "outlier_accounting": ACCOUNTING,
                "calibration_samples_used": used,
                "algorithm_source": "a reading of the abstract of arXiv 2411.00850 (no official code; unverified)"}


COMPRESSOR = GWQ()
