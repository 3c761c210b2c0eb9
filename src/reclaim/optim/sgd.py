"""Plain first-order SGD (optional momentum): ZO-Bench's FO-SGD baseline (arXiv 2402.11592,
Sec. 4), whose memory is parameters + gradients with no optimizer state at momentum 0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.optim._base import Strategy


@dataclass(frozen=True)
class Params:
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


class SGD(Strategy):
    Params = Params

    def build_optimizer(self, model: Any, params: Params, adapter: Any, adapter_params: Any,
                        lr: float, weight_decay: float) -> Any:
        import torch

        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD(trainable, lr=lr, momentum=params.momentum, weight_decay=weight_decay)


STRATEGY = SGD()
