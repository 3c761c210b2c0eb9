"""Quadratic, f(h) = 1 - h^2 / delta^2 (arXiv 2502.06733, Sec. 3; ``mid`` in the reference
code): favours mid-range losses, down-weights both the easiest and the hardest examples."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reclaim.reweight._base import Strategy

if TYPE_CHECKING:
    import torch


def f(h: torch.Tensor, delta: float) -> torch.Tensor:
    return 1 - h**2 / delta**2


STRATEGY = Strategy("quadratic", f)
