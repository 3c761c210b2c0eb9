"""The reweighting math of Sow et al., "Dynamic Loss-Based Sample Reweighting for Improved
Large Language Model Pretraining", ICLR 2025, arXiv 2502.06733 (Sec. 3, Algorithm 1 "Fully
Online Instance Reweighting"; reference code sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025
@edd6f15, src/trainer.py).

After ``burn_in`` steps of uniform weighting, every step:

1. l_i: the loss of example i (mean over its n_i loss terms, e.g. target tokens);
2. h_i = delta * (2 l_i - l_max - l_min) / max(l_max - l_min, 1e-6), in [-delta, delta]
   (delta = 1); the floor on the range is the reference code's, so a batch of equal losses
   gets h = 0 and uniform weights instead of a division by zero;
3. f(h_i) by the strategy: LinUpper min(h + delta, delta), Quadratic 1 - h^2 / delta^2,
   Extremes |h|, uniform 0;
4. w = softmax(f(h) / r) over the batch, computed without gradient (r -> infinity: uniform);
5. loss = sum_i w_i * B * (n_i / sum_j n_j) * l_i. With w_i = 1/B this is the mean over all
   loss terms, i.e. the unweighted loss.

Single process: the reference all-gathers the losses over ranks (global batch) and calls
``dist.get_world_size()`` unguarded; here the batch is the process's batch (world size 1).
torch is imported inside functions so that config validation stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reclaim.framings._base import Framing

DELTA = 1.0
RANGE_FLOOR = 1e-6  # the reference code's floor on l_max - l_min


@dataclass(frozen=True)
class ReweightParams:
    strategy: str
    r: float = 1.0      # softmax temperature (the reference's kl_reg); larger = closer to uniform
    burn_in: int = 0    # optimizer steps of uniform weighting first (the reference's burnout_steps)

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, (int, float)) or not (
                math.isfinite(self.r) and self.r > 0):
            raise ValueError(f"r must be a finite number > 0, got {self.r!r}")
        if isinstance(self.burn_in, bool) or not isinstance(self.burn_in, int) or self.burn_in < 0:
            raise ValueError(f"burn_in must be an integer >= 0 (optimizer steps), got {self.burn_in!r}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "r": float(self.r)}


def normalise(losses: torch.Tensor, delta: float = DELTA) -> torch.Tensor:
    """h_i in [-delta, delta] (step 2); all zeros when every loss is equal."""
    lo, hi = losses.min(), losses.max()
    return delta * (2 * losses - hi - lo) / (hi - lo).clamp(min=RANGE_FLOOR)


def softmax_weights(f: torch.Tensor, r: float) -> torch.Tensor:
    import torch

    return torch.softmax(f / r, dim=0)


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor,
                  counts: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i w_i * B * (n_i / sum_j n_j) * l_i (step 5); ``counts`` None: one term per example."""
    b = losses.shape[0]
    share = counts.to(losses.dtype) / counts.sum() if counts is not None else 1.0 / b
    return (weights * share * losses).sum() * b


class Strategy:
    """A shape f(h) on [-delta, delta]; its weights are softmax(f(h) / r) over the batch."""

    Params = ReweightParams

    def __init__(self, name: str, f: Callable[[torch.Tensor, float], torch.Tensor],
                 constant: bool = False) -> None:
        self.name, self.f = name, f
        self.constant = constant  # f does not depend on h: every batch is uniformly weighted

    def make_params(self, raw: dict[str, Any] | None) -> ReweightParams:
        raw = dict(raw or {})
        known = {"strategy", "r", "burn_in"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
        raw.setdefault("strategy", self.name)
        if raw["strategy"] != self.name:
            raise ValueError(f"strategy {raw['strategy']!r} given to the {self.name!r} strategy")
        return ReweightParams(**raw)

    def weights(self, losses: torch.Tensor, r: float) -> torch.Tensor:
        """w = softmax(f(h(l)) / r), detached: the weights scale the gradient, they carry none."""
        import torch

        with torch.no_grad():
            losses = losses.detach()
            if self.constant or losses.numel() < 2 or bool(losses.max() == losses.min()):
                return torch.full_like(losses, 1.0 / losses.numel())
            return softmax_weights(self.f(normalise(losses), DELTA), r)

    def hook(self, config: dict[str, Any], framing: Framing) -> LossHook:
        return LossHook(self, self.make_params(config), framing)


class LossHook:
    """The loss of a reweighted training job, step by step.

    During burn-in, and for a constant strategy, it is the framing's mean loss itself (the
    same numbers as an unweighted job); after it, the weighted sum of per-example losses.
    ``record()`` goes into result.json: the parameters and the weights' spread over the
    reweighted steps this process ran (a resumed job: those after the resume).
    """

    def __init__(self, strategy: Strategy, params: ReweightParams, framing: Framing) -> None:
        self.strategy, self.params, self.framing = strategy, params, framing
        self.steps = 0
        self.max_ratio = 0.0  # sum over steps of B * max_i w_i (1 = uniform)
        self.min_ratio = 0.0

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """``step``: optimizer steps already taken (0-based), so burn_in = k means k uniform steps."""
        if step < self.params.burn_in or self.strategy.constant:
            return self.framing.loss(model, batch)
        losses, counts = self.framing.example_losses(model, batch)
        w = self.strategy.weights(losses, self.params.r)
        self.steps += 1
        self.max_ratio += float(w.max()) * w.numel()
        self.min_ratio += float(w.min()) * w.numel()
        return weighted_loss(losses, w, counts)

    def record(self) -> dict[str, Any]:
        n = self.steps
        return {**self.params.as_dict(), "delta": DELTA, "reweighted_steps_in_process": n,
                "mean_max_weight_x_batch": self.max_ratio / n if n else None,
                "mean_min_weight_x_batch": self.min_ratio / n if n else None}
