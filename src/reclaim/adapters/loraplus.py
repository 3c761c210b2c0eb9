"""LoRA+ (Hayou et al., arXiv 2402.12354): B learns lr_ratio times faster than A. PEFT's
``create_loraplus_optimizer`` builds the parameter groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.adapters._base import check_positive
from reclaim.adapters._lora import LoraAdapter, LoraParams


@dataclass(frozen=True)
class LoraPlusParams(LoraParams):
    lr_ratio: float = 16.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("lr_ratio", self.lr_ratio)


class LoraPlusAdapter(LoraAdapter):
    Params = LoraPlusParams

    def optimizer(self, model: Any, params: Any, lr: float, weight_decay: float) -> Any:
        import torch
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr,
                                         loraplus_lr_ratio=params.lr_ratio, weight_decay=weight_decay)


ADAPTER = LoraPlusAdapter()
