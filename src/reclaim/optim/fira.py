"""Fira (Chen et al., arXiv 2410.01623, Sec. 3): GaLore's low-rank Adam plus the residual
gradient S = G - P R, which GaLore discards, applied with a per-column scale taken from the
low-rank Adam's gain (norm-based scaling, ||psi(R)_i|| / ||R_i||) and capped by a
norm-growth limiter (gamma = 1.01), so the update is full-rank at GaLore's state memory.

The authors' package (``fira==1.0.2``, identical to their repository's optimizer) is used
rather than rewritten, since it produced the paper's numbers. As the notes record (4.4), its
residual is the raw gradient minus the *scaled* projected-back gradient, so with alpha != 1 it
still holds (1 - alpha) of the in-subspace gradient; with alpha = 1 (this repository's
default) code and paper agree. Projectors are reported and checkpointed as for GaLore
(reclaim.optim._lowrank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reclaim.optim import _lowrank
from reclaim.optim._base import Strategy

if TYPE_CHECKING:
    import torch
    from torch import nn

PROJ_TYPES = ("std", "reverse_std", "left", "right")


@dataclass(frozen=True)
class Params:
    rank: int = 8
    update_proj_gap: int = 200
    alpha: float = 1.0           # the projected-back scale (the package's name for GaLore's scale)
    proj_type: str = "std"
    eps: float = 1e-6            # the package's default

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.update_proj_gap < 1:
            raise ValueError(f"update_proj_gap must be >= 1, got {self.update_proj_gap}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.proj_type not in PROJ_TYPES:
            raise ValueError(f"proj_type must be one of {', '.join(PROJ_TYPES)}, got {self.proj_type!r}")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")


def optimizer_class() -> type:
    """fira's AdamW with state dicts that hold the projectors as tensors."""
    from fira import FiraAdamW
    from fira.gradient_projection import GradientProjector

    class FiraAdamWState(_lowrank.ProjectorStateDict, FiraAdamW):
        def make_projector(self, group: dict[str, Any]) -> Any:
            return GradientProjector(group["rank"], update_proj_gap=group["update_proj_gap"], alpha=group["alpha"],
                                     proj_type=group["proj_type"])

    return FiraAdamWState


class Fira(Strategy):
    Params = Params

    def check(self, params: Params, widths: dict[str, Any], where: str) -> None:
        _lowrank.check_rank(params.rank, widths, where, "Fira")

    def build_optimizer(self, model: nn.Module, params: Params, adapter: Any, adapter_params: Any,
                        lr: float, weight_decay: float) -> torch.optim.Optimizer:
        groups = _lowrank.param_groups(model, params.rank, {"update_proj_gap": params.update_proj_gap,
                                                            "alpha": params.alpha, "proj_type": params.proj_type})
        return optimizer_class()(groups, lr=lr, weight_decay=weight_decay, eps=params.eps,
                                 no_deprecation_warning=True)

    def extra_state(self, optimizer: torch.optim.Optimizer) -> list[Any]:
        return _lowrank.projector_tensors(optimizer)

    def paper_accounting(self, model: nn.Module, optimizer: torch.optim.Optimizer, params: Any) -> dict[str, Any]:
        return _lowrank.paper_accounting(model, optimizer, self.extra_state(optimizer))


STRATEGY = Fira()
