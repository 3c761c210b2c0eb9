"""LinUpper, f(h) = min(h + delta, delta) (arXiv 2502.06733, Sec. 3): down-weights the batch's
low-loss (easy, redundant) examples and treats everything above the mid-range alike, so no
single high-loss (possibly noisy) example dominates. The paper's recommended strategy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reclaim.reweight._base import Strategy

if TYPE_CHECKING:
    import torch


def f(h: torch.Tensor, delta: float) -> torch.Tensor:
    return (h + delta).clamp(max=delta)


STRATEGY = Strategy("linupper", f)
