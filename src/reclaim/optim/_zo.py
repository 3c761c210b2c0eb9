"""Zeroth-order steps (ZO-Bench, Zhang et al., arXiv 2402.11592, Sec. 3; MeZO, Malladi et al.,
arXiv 2305.17333, Alg. 1): the gradient is estimated from two forward passes along a random
direction z, and no backward pass runs, so no activations are kept for one.

Two-point SPSA with q = 1: theta + eps z -> l+, theta - eps z -> l-, restore; the projected
gradient is g = (l+ - l-) / (2 eps). z is never stored: each parameter tensor's slice is
regenerated from a per-(step, tensor) seed when it is needed (MeZO's seed trick), so the
extra memory is one tensor-sized z at a time. The update goes one tensor at a time through an
ordinary torch optimizer (its ``.grad`` set to g z, or the variant's transform, then
``optimizer.step()`` with only that tensor holding a gradient), so the learning-rate
schedule, weight decay and checkpointing work as for first-order training, and ZO-Adam's
two moment buffers are plain optimizer state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reclaim.optim._base import StepContext, Strategy

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class ZOParams:
    eps: float = 1e-3   # perturbation scale (ZO-Bench sweeps 1e-3, 1e-4, 1e-5)

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")


def direction_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**62)


def _z(p: torch.Tensor, seed: int, index: int) -> torch.Tensor:
    import torch

    g = torch.Generator(device=p.device).manual_seed(seed + 7919 * index)
    return torch.randn(p.shape, generator=g, device=p.device, dtype=p.dtype)


def perturb(params: list[torch.Tensor], seed: int, scale: float) -> None:
    """theta += scale * z, one tensor at a time."""
    for i, p in enumerate(params):
        p.data.add_(_z(p, seed, i), alpha=scale)


def projected_gradient(model: nn.Module, batch: dict[str, Any], ctx: StepContext, step: int,
                       params: list[torch.Tensor], seed: int, eps: float) -> tuple[float, float]:
    """(g, recorded loss): the two-point estimate along z(seed) and the mean of the two losses."""
    import torch

    with torch.no_grad():
        perturb(params, seed, eps)
        plus = float(ctx.loss_fn(model, batch, step)[1])
        perturb(params, seed, -2 * eps)
        minus = float(ctx.loss_fn(model, batch, step)[1])
        perturb(params, seed, eps)
    return (plus - minus) / (2 * eps), (plus + minus) / 2


class ZerothOrder(Strategy):
    """Base for the ZO variants; subclasses choose the optimizer and the per-tensor gradient."""

    Params = ZOParams
    first_order = False

    def gradient(self, g: float, z: torch.Tensor) -> torch.Tensor:
        return z.mul_(g)

    def build_optimizer(self, model: Any, params: Any, adapter: Any, adapter_params: Any,
                        lr: float, weight_decay: float) -> Any:
        import torch

        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD(trainable, lr=lr, weight_decay=weight_decay)

    def step(self, model: nn.Module, batch: dict[str, Any], optimizer: Any, params: ZOParams,
             step: int, ctx: StepContext) -> torch.Tensor:
        import torch

        trainable = [p for p in model.parameters() if p.requires_grad]
        seed = direction_seed(ctx.seed, step)
        g, loss = projected_gradient(model, batch, ctx, step, trainable, seed, params.eps)
        for i, p in enumerate(trainable):
            p.grad = self.gradient(g, _z(p, seed, i))
            optimizer.step()  # only p holds a gradient: the optimizer updates p alone
            p.grad = None
        return torch.tensor(loss)


def zo_gradient_estimate(model: nn.Module, batch: dict[str, Any], ctx: StepContext, seed: int,
                         eps: float) -> list[torch.Tensor]:
    """g z for every trainable tensor (materialised: for tests and analysis, not training)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    g, _ = projected_gradient(model, batch, ctx, 0, trainable, seed, eps)
    return [_z(p, seed, i) * g for i, p in enumerate(trainable)]
