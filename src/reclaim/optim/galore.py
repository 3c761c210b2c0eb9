"""GaLore: Gradient Low-Rank Projection (Zhao et al., ICML 2024, arXiv 2403.03507, Sec. 4,
Alg. 1): each projected weight's gradient G (m x n) is projected onto a rank-r subspace
from its SVD, recomputed every ``update_proj_gap`` steps (R = G Pᵀ for m >= n, Pᵀ G
otherwise), Adam runs on R, and the normalised update is projected back and scaled by
``scale`` (alpha). The Adam moments are r-wide, which is the memory saving.

The authors' package (``galore-torch==1.0``, their reference ``GaLoreAdamW``) is used rather
than rewritten: it is what produced the paper's numbers, and it is faithful for 2-D weights
(notes 3). Two things are added here: the projectors, kept in the optimizer state as Python
objects, are reported to the memory probe (``extra_state``) and saved in checkpoints as
tensors (reclaim.optim._lowrank), so a resumed run is exact.
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
    update_proj_gap: int = 200   # T: steps between SVDs of the gradient
    scale: float = 0.25          # alpha: the projected-back update's scale (paper: 0.25 for pre-training)
    proj_type: str = "std"       # std: project the smaller side (right for m >= n, left otherwise)
    eps: float = 1e-6            # galore-torch's default, what the authors' scripts ran with

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.update_proj_gap < 1:
            raise ValueError(f"update_proj_gap must be >= 1, got {self.update_proj_gap}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.proj_type not in PROJ_TYPES:
            raise ValueError(f"proj_type must be one of {', '.join(PROJ_TYPES)}, got {self.proj_type!r}")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")


def optimizer_class() -> type:
    """galore-torch's AdamW with state dicts that hold the projectors as tensors."""
    from galore_torch import GaLoreAdamW
    from galore_torch.galore_projector import GaLoreProjector

    class GaLoreAdamWState(_lowrank.ProjectorStateDict, GaLoreAdamW):
        def make_projector(self, group: dict[str, Any]) -> Any:
            return GaLoreProjector(group["rank"], update_proj_gap=group["update_proj_gap"], scale=group["scale"],
                                   proj_type=group["proj_type"])

    return GaLoreAdamWState


class GaLore(Strategy):
    Params = Params
    method = "GaLore"

    def check(self, params: Params, widths: dict[str, Any], where: str) -> None:
        _lowrank.check_rank(params.rank, widths, where, self.method)

    def build_optimizer(self, model: nn.Module, params: Params, adapter: Any, adapter_params: Any,
                        lr: float, weight_decay: float) -> torch.optim.Optimizer:
        groups = _lowrank.param_groups(model, params.rank, {"update_proj_gap": params.update_proj_gap,
                                                            "scale": params.scale, "proj_type": params.proj_type})
        return optimizer_class()(groups, lr=lr, weight_decay=weight_decay, eps=params.eps,
                                 no_deprecation_warning=True)

    def extra_state(self, optimizer: torch.optim.Optimizer) -> list[Any]:
        return _lowrank.projector_tensors(optimizer)

    def paper_accounting(self, model: nn.Module, optimizer: torch.optim.Optimizer, params: Any) -> dict[str, Any]:
        return _lowrank.paper_accounting(model, optimizer, self.extra_state(optimizer))


STRATEGY = GaLore()
