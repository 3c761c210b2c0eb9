"""Forward gradient (ZO-Bench, Zhang et al., arXiv 2402.11592, Sec. 3 "Forward-Grad"; Baydin
et al., "Gradients without Backpropagation", arXiv 2202.08587): SGD on (grad L . z) z with
z ~ N(0, I), where the directional derivative grad L . z is computed exactly by forward-mode
AD (``torch.func.jvp``): one forward pass carrying a tangent beside every value, no backward
pass, no activations saved for one.

Unlike the two-point estimate of ZO-SGD (``_zo.py``), each draw is exact, not a finite
difference, so the estimator is unbiased (E[z z^T] = I) and needs no ``eps``. Its memory
cost over inference: the tangents, one parameter-sized z per trainable tensor (the jvp's
inputs, drawn with ``_zo.directions``' seeds), and a tangent beside each live activation,
freed op by op as in inference (on the tiny BERT at 8 x 32: 2.4x the no-grad forward's
activation bytes); ZO-SGD instead holds one regenerated ``chunk`` of z at a time. There are
no gradients and no saved activations, so it stays below first-order fine-tuning. The update
is ZO-SGD's in-place SGD with coefficient g = grad L . z, regenerating the same z chunk by chunk.

Attention: torch's fused SDPA kernels (CPU flash, CUDA flash / memory-efficient) have no
forward-mode rule (NotImplementedError under jvp), so for the step the model's attention is
switched to transformers' "eager" implementation (restored afterwards), and any other SDPA
call is pinned to SDPA's math backend, which is composed of ops that have one. Checked on
tiny BERT and LLaMA models, where both fail under jvp with "sdpa" and work with "eager".
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reclaim.optim._zo import ZerothOrder, _groups, direction_seed, directions

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch
    from torch import nn

    from reclaim.optim._base import StepContext


@dataclass(frozen=True)
class ForwardGradParams:
    chunk: int = 1 << 20     # elements of z drawn at once (the tangent is filled, the update applied, per chunk)

    def __post_init__(self) -> None:
        if self.chunk < 0:
            raise ValueError(f"chunk must be >= 0 (0: whole tensors), got {self.chunk}")


def tangent(p: torch.Tensor, seed: int, index: int, chunk: int) -> torch.Tensor:
    """The whole z of parameter ``index``: the chunks ``_zo.directions`` regenerates, in place."""
    import torch

    out = torch.empty_like(p)
    flat, a = out.view(-1), 0
    for _, z in directions(p, seed, index, chunk):
        flat[a:a + z.numel()].copy_(z)
        a += z.numel()
    return out


@contextmanager
def forward_mode_attention(model: nn.Module) -> Iterator[None]:
    """Attention kernels with forward-mode rules for the duration: "eager" attention in the
    model's config (and its sub-configs), SDPA's math backend for any other SDPA call."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = before is not None and before != "eager"
    if switch:
        config._attn_implementation = "eager"  # type: ignore[union-attr]
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        if switch:
            config._attn_implementation = before  # type: ignore[union-attr]


def directional_derivative(model: nn.Module, batch: dict[str, Any], ctx: StepContext, step: int,
                           seed: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad L . z, L): the exact directional derivative along z(seed) of the loss to optimise
    (``ctx.loss_fn``'s second value) with respect to the trainable parameters, and that loss,
    from one jvp (no backward, no autograd graph)."""
    import torch
    from torch import nn
    from torch.func import functional_call, jvp

    class _Loss(nn.Module):  # loss_fn calls the model itself: reparametrise it through a parent
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self) -> torch.Tensor:
            return ctx.loss_fn(self.inner, batch, step)[1]

    wrapper = _Loss(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = ["inner." + n for n, _ in named]
    primals = tuple(p.detach() for _, p in named)
    tangents = tuple(tangent(p, seed, i, chunk) for i, (_, p) in enumerate(named))

    def loss_of(*params: torch.Tensor) -> torch.Tensor:
        return functional_call(wrapper, dict(zip(names, params, strict=True)), ())

    with torch.no_grad(), forward_mode_attention(model):
        loss, d = jvp(loss_of, primals, tangents)
    return d.detach(), loss.detach()


class ForwardGrad(ZerothOrder):
    Params = ForwardGradParams

    def step(self, model: nn.Module, batch: dict[str, Any], optimizer: Any, params: ForwardGradParams,
             step: int, ctx: StepContext) -> torch.Tensor:
        import torch

        seed = direction_seed(ctx.seed, step)
        d, loss = directional_derivative(model, batch, ctx, step, seed, params.chunk)
        g = float(d)
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = _groups(optimizer)
        with torch.no_grad():
            for i, p in enumerate(trainable):
                self.update(p, i, g, seed, params.chunk, groups[id(p)], optimizer)
        return loss


def forward_gradient_estimate(model: nn.Module, batch: dict[str, Any], ctx: StepContext, seed: int,
                              chunk: int = 1 << 20) -> list[torch.Tensor]:
    """(grad L . z) z for every trainable tensor (materialised: for tests and analysis)."""
    d, _ = directional_derivative(model, batch, ctx, 0, seed, chunk)
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [tangent(p, seed, i, chunk) * d for i, p in enumerate(trainable)]


STRATEGY = ForwardGrad()
