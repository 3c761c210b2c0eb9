"""Extremes, f(h) = |h| (arXiv 2502.06733, Sec. 3): favours both tails of the batch's losses,
the easiest and the hardest examples, over the mid-range."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reclaim.reweight._base import Strategy

if TYPE_CHECKING:
    import torch


def f(h: torch.Tensor, delta: float) -> torch.Tensor:
    return h.abs()


STRATEGY = Strategy("extremes", f)
