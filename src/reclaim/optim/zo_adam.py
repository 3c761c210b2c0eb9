"""ZO-Adam (ZO-Bench arXiv 2402.11592, Sec. 3): AdamW moments over the two-point estimates.
It keeps two parameter-sized buffers, which is its memory cost over ZO-SGD."""

from __future__ import annotations

from typing import Any

from reclaim.optim._zo import ZerothOrder, adamw_update


class ZOAdam(ZerothOrder):
    def build_optimizer(self, model: Any, params: Any, adapter: Any, adapter_params: Any,
                        lr: float, weight_decay: float) -> Any:
        import torch

        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)

    def update(self, p: Any, index: int, g: float, seed: int, chunk: int, group: dict[str, Any],
               optimizer: Any) -> None:
        adamw_update(p, index, g, seed, chunk, group, optimizer.state[p])


STRATEGY = ZOAdam()
