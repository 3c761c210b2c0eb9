"""Zeroth-order steps (ZO-Bench, Zhang et al., arXiv 2402.11592, Sec. 3; MeZO, Malladi et al.,
arXiv 2305.17333, Alg. 1): the gradient is estimated from two forward passes along a random
direction z, and no backward pass runs, so no activations are kept for one.

Two-point SPSA with q = 1: theta + eps z -> l+, theta - eps z -> l-, restore; the projected
gradient is g = (l+ - l-) / (2 eps). z is never stored: it is regenerated from a per-(step,
tensor, chunk) seed whenever it is needed (MeZO's seed trick). MeZO's reference draws each
parameter tensor's whole z at once, so its extra memory is the largest tensor (MiniLM's word
embedding: 44.7 MiB, a third of its inference peak); here z is drawn ``chunk`` elements at a
time (``chunk: 0`` restores the reference's whole-tensor draws), and the update is applied
chunk by chunk in place: SGD as p <- p (1 - lr wd) - lr c z (c = g, or sign(g) for the Sign
variant), AdamW with its moments kept as torch's AdamW keeps them (``exp_avg``,
``exp_avg_sq``, ``step`` in ``optimizer.state``), so the memory probe, checkpoints and the
learning-rate schedule see an ordinary optimizer. The optimizer object holds the parameter
groups (learning rate, weight decay) and the state; its own ``step()`` is never called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reclaim.optim._base import StepContext, Strategy

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class ZOParams:
    eps: float = 1e-3        # perturbation scale (ZO-Bench sweeps 1e-3, 1e-4, 1e-5)
    chunk: int = 1 << 20     # elements of z drawn at once; 0 = a whole tensor at a time (MeZO)

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.chunk < 0:
            raise ValueError(f"chunk must be >= 0 (0: whole tensors), got {self.chunk}")


def direction_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**62)


def _spans(n: int, chunk: int) -> list[tuple[int, int]]:
    size = n if chunk <= 0 else chunk
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _z(p: torch.Tensor, seed: int, index: int, part: int, n: int) -> torch.Tensor:
    import torch

    g = torch.Generator(device=p.device).manual_seed(seed + 7919 * index + 104_729 * part)
    return torch.randn(n, generator=g, device=p.device, dtype=p.dtype)


def directions(p: torch.Tensor, seed: int, index: int, chunk: int):  # -> Iterator[(flat slice, z)]
    """(the parameter's flat slice, its z) chunk by chunk."""
    flat = p.data.view(-1)
    for part, (a, b) in enumerate(_spans(flat.numel(), chunk)):
        yield flat[a:b], _z(p, seed, index, part, b - a)


def perturb(params: list[torch.Tensor], seed: int, scale: float, chunk: int) -> None:
    """theta += scale * z."""
    for i, p in enumerate(params):
        for sl, z in directions(p, seed, i, chunk):
            sl.add_(z, alpha=scale)


def projected_gradient(model: nn.Module, batch: dict[str, Any], ctx: StepContext, step: int,
                       params: list[torch.Tensor], seed: int, eps: float, chunk: int) -> tuple[float, float]:
    """(g, recorded loss): the two-point estimate along z(seed) and the mean of the two losses."""
    import torch

    with torch.no_grad():
        perturb(params, seed, eps, chunk)
        plus = float(ctx.loss_fn(model, batch, step)[1])
        perturb(params, seed, -2 * eps, chunk)
        minus = float(ctx.loss_fn(model, batch, step)[1])
        perturb(params, seed, eps, chunk)
    return (plus - minus) / (2 * eps), (plus + minus) / 2


def _groups(optimizer: Any) -> dict[int, dict[str, Any]]:
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


class ZerothOrder(Strategy):
    """ZO-SGD; subclasses change the coefficient on z (Sign) or the update rule (Adam)."""

    Params = ZOParams
    first_order = False

    def coefficient(self, g: float) -> float:
        return g

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
        g, loss = projected_gradient(model, batch, ctx, step, trainable, seed, params.eps, params.chunk)
        groups = _groups(optimizer)
        with torch.no_grad():
            for i, p in enumerate(trainable):
                self.update(p, i, g, seed, params.chunk, groups[id(p)], optimizer)
        return torch.tensor(loss)

    def update(self, p: torch.Tensor, index: int, g: float, seed: int, chunk: int, group: dict[str, Any],
               optimizer: Any) -> None:
        """SGD without momentum, as torch.optim.SGD computes it: grad = c z + wd p, p -= lr grad."""
        lr, wd = float(group["lr"]), float(group.get("weight_decay", 0.0))
        if wd:
            p.data.mul_(1 - lr * wd)
        c = self.coefficient(g)
        for sl, z in directions(p, seed, index, chunk):
            sl.add_(z, alpha=-lr * c)


def zo_gradient_estimate(model: nn.Module, batch: dict[str, Any], ctx: StepContext, seed: int,
                         eps: float, chunk: int = 1 << 20) -> list[torch.Tensor]:
    """g z for every trainable tensor (materialised: for tests and analysis, not training)."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    g, _ = projected_gradient(model, batch, ctx, 0, trainable, seed, eps, chunk)
    out = []
    for i, p in enumerate(trainable):
        out.append(torch.cat([z for _, z in directions(p, seed, i, chunk)]).view_as(p) * g)
    return out


def adamw_update(p: torch.Tensor, index: int, g: float, seed: int, chunk: int, group: dict[str, Any],
                 state: dict[str, Any]) -> None:
    """torch.optim.AdamW's update (decoupled weight decay, bias-corrected moments) with the
    gradient g z, applied chunk by chunk."""
    import torch

    lr, wd = float(group["lr"]), float(group.get("weight_decay", 0.0))
    beta1, beta2 = group.get("betas", (0.9, 0.999))
    eps_adam = float(group.get("eps", 1e-8))
    if not state:
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["step"] += 1
    t = float(state["step"])
    if wd:
        p.data.mul_(1 - lr * wd)
    bc1, bc2 = 1 - beta1**t, 1 - beta2**t
    step_size = lr / bc1
    m_flat, v_flat = state["exp_avg"].view(-1), state["exp_avg_sq"].view(-1)
    for part, (sl, z) in enumerate(directions(p, seed, index, chunk)):
        a = part * (chunk if chunk > 0 else 0)
        m, v = m_flat[a:a + z.numel()], v_flat[a:a + z.numel()]
        z.mul_(g)  # the gradient chunk
        m.mul_(beta1).add_(z, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(z, z, value=1 - beta2)
        denom = (v.sqrt() / math.sqrt(bc2)).add_(eps_adam)
        sl.addcdiv_(m, denom, value=-step_size)
