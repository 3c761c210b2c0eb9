"""LoRA-GA (Wang, Yu, Li; arXiv 2407.05000, sec. 3.2-3.3 and Algorithm 1), the paper's own
formulation, written here because PEFT's ``init_lora_weights="lora_ga"`` differs from it
(it multiplies B by the singular values and applies the stable scale to B only); PEFT's
version is kept as the separate method ``lora_ga_peft``.

For each adapted weight W (m x n):
  1. G = mean over the first N training examples of dL/dW on the unadapted model;
  2. U, S, V = svd(G) (randomised, q = 4r, ``svd_niter`` subspace iterations; ``exact_svd``
     for the full SVD), signs fixed by :mod:`reclaim.linalg`'s convention and the random test
     matrix seeded with the run's seed, so every machine gets the same A0, B0. The convention
     matters here: A0 takes v_1..v_r and B0 takes u_(r+1)..u_2r, so the backend's joint flip
     of a pair (u_k, v_k) reaches only one factor and changes B0 A0 and the training after;
  3. A0 = V[:, :r]^T, B0 = U[:, r:2r], so that one step of LoRA, proportional to
     B0 B0^T G + G A0^T A0, is the best rank-2r approximation of the full step's direction;
  4. stable output: A0 and B0 each times m^(1/4) / sqrt(gamma);
  5. s = alpha / sqrt(r) (rsLoRA);
  6. W <- W - s B0 A0, so the model computes the same function at step 0.
G is estimated with gradients enabled only on the target weights and no optimizer state;
each G is freed as soon as its layer is initialised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reclaim.adapters._base import AdapterContext, check_positive
from reclaim.adapters._lora import (
    LoraParams,
    ResidualLoraAdapter,
    check_rank,
    linear_targets,
    lora_layers,
    weight_matrix,
)
from reclaim.linalg import svd_lowrank_signed, svd_signed


@dataclass(frozen=True)
class LoraGAParams(LoraParams):
    gamma: float = 16.0
    grad_examples: int = 8
    grad_batch_size: int = 1
    svd_niter: int = 4
    exact_svd: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("gamma", self.gamma)
        check_rank("grad_examples", self.grad_examples)
        check_rank("grad_batch_size", self.grad_batch_size)


def estimate_gradients(model: Any, targets: list[str], ctx: AdapterContext, n_examples: int,
                       batch_size: int) -> dict[str, Any]:
    """Mean dL/dW (as out x in, float32) of each target over the first ``n_examples``."""
    import torch

    modules = dict(model.named_modules())
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for t in targets:
        modules[t].weight.requires_grad_(True)
    was_training = model.training
    model.eval()  # dropout off: a deterministic estimate of the expected gradient
    seen = 0
    try:
        with torch.enable_grad():
            for batch in ctx.train_batches(n_examples, batch_size):
                n = batch["labels"].shape[0]
                # weight each batch's mean loss by its size: the result is the per-example mean
                (ctx.loss_fn(model, batch) * (n / n_examples)).backward()
                seen += n
    finally:
        model.train(was_training)
        for n, p in model.named_parameters():
            p.requires_grad_(saved[n])
    if seen == 0:
        raise ValueError("LoRA-GA: no training examples for the gradient estimate")
    grads = {}
    for t in targets:
        w = modules[t].weight
        g = w.grad.detach().float() * (n_examples / seen)
        grads[t] = g.T if _is_conv1d(modules[t]) else g
        w.grad = None
    return grads


def _is_conv1d(module: Any) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def init_factors(grad: Any, r: int, gamma: float, niter: int, exact: bool,
                 seed: int = 0) -> tuple[Any, Any]:
    """A0 (r x n) and B0 (m x r) from the gradient's singular vectors, with the stable scale
    (arXiv 2407.05000, sec. 3.2-3.3). The SVD runs in float64 with reclaim.linalg's sign
    convention (``seed`` seeds the randomised SVD's test matrix); the factors come back in
    ``grad``'s dtype."""
    import torch

    m, n = grad.shape
    if 2 * r > min(m, n):
        raise ValueError(f"LoRA-GA needs 2r <= min(m, n); got r={r} for a {m}x{n} weight")
    if exact:
        U, _, Vh = svd_signed(grad, dtype=torch.float64)
    else:
        U, _, Vh = svd_lowrank_signed(grad, q=min(4 * r, m, n), niter=niter, seed=seed,
                                      dtype=torch.float64)
    factor = m**0.25 / math.sqrt(gamma)
    a0 = (Vh[:r] * factor).to(grad.dtype).contiguous()
    b0 = (U[:, r:2 * r] * factor).to(grad.dtype).contiguous()
    return a0, b0


class LoraGAAdapter(ResidualLoraAdapter):
    Params = LoraGAParams
    use_rslora = True

    def apply(self, model, params, ctx):  # type: ignore[no-untyped-def]
        import torch
        from peft import get_peft_model

        targets = linear_targets(model, params.target_modules, ctx.head_modules)
        grads = estimate_gradients(model, targets, ctx, params.grad_examples, params.grad_batch_size)
        model = get_peft_model(model, self.lora_config(model, params, ctx))
        with torch.no_grad():
            for name, layer in lora_layers(model).items():
                a0, b0 = init_factors(grads.pop(name), params.r, params.gamma, params.svd_niter,
                                      params.exact_svd, seed=ctx.seed)
                a_w, b_w = layer.lora_A["default"].weight, layer.lora_B["default"].weight
                a_w.copy_(a0.to(a_w))
                b_w.copy_(b0.to(b_w))
                s = layer.scaling["default"]
                w = weight_matrix(layer)
                w.sub_((s * (b0 @ a0)).to(w))
        self.record_initial(model)
        return model


ADAPTER = LoraGAAdapter()
