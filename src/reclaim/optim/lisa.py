"""LISA: Layerwise Importance Sampled AdamW (Pan et al., arXiv 2403.17919, Sec. 3.2, Alg. 1).

Every ``interval`` steps all transformer blocks are frozen and ``gamma`` of them, drawn
uniformly without replacement, are unfrozen; everything outside the blocks (embeddings,
head, final norm, pooler) stays trainable. One AdamW holds every parameter; frozen ones get
no gradient, so it skips them.

Written here rather than taken from LMFlow's callback: that callback toggles
``requires_grad`` and never touches the optimizer state, so the state of every block ever
sampled stays resident and memory grows interval by interval (LMFlow issue #768; the paper's
runs restarted per interval, #729). At each switch this module drops the state of blocks
that were just frozen (``drop_state``; false reproduces the callback, which the memory
probe then reports as growth). The sample is a function of (seed, interval), so a resumed
job trains the same blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reclaim.optim._base import Strategy

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Params:
    gamma: int = 2         # blocks trained per interval (the paper's E+H+2L)
    interval: int = 20     # K: steps between switches
    drop_state: bool = True

    def __post_init__(self) -> None:
        if self.gamma < 1:
            raise ValueError(f"gamma must be >= 1, got {self.gamma}")
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1, got {self.interval}")


def transformer_blocks(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """The model's block list: the ``nn.ModuleList`` holding the most parameters (BERT's
    ``encoder.layer``, Llama's ``model.layers``)."""
    from torch import nn

    best: tuple[int, str, list[nn.Module]] | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            n = sum(p.numel() for p in mod.parameters())
            if best is None or n > best[0]:
                best = (n, name, list(mod))
    if best is None:
        raise ValueError(f"{type(model).__name__} has no list of transformer blocks (nn.ModuleList) for LISA")
    return best[1], best[2]


def sample_blocks(n_blocks: int, gamma: int, seed: int, interval_index: int) -> list[int]:
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + interval_index)
    return sorted(torch.randperm(n_blocks, generator=g)[:gamma].tolist())


class LISA(Strategy):
    Params = Params
    fixed_trainable = False

    def __init__(self) -> None:
        self._interval: int | None = None
        self.active: list[int] = []
        self.history: list[list[int]] = []

    def check(self, params: Params, widths: dict[str, Any], where: str) -> None:
        blocks = widths.get("blocks")
        if blocks is not None and params.gamma > blocks:
            raise ValueError(f"{where}: LISA gamma {params.gamma} is larger than the model's "
                             f"{blocks} transformer blocks")

    def probe_stride(self, params: Params) -> int:
        return params.interval

    def on_step_begin(self, model: nn.Module, optimizer: Any, params: Params, step: int, seed: int) -> None:
        interval = step // params.interval
        if interval == self._interval:
            return
        name, blocks = transformer_blocks(model)
        if params.gamma > len(blocks):
            raise ValueError(f"LISA gamma {params.gamma} is larger than the {len(blocks)} blocks of {name}")
        chosen = set(sample_blocks(len(blocks), params.gamma, seed, interval))
        for i, block in enumerate(blocks):
            for p in block.parameters():
                p.requires_grad_(i in chosen)
                if i not in chosen:
                    p.grad = None
                    if params.drop_state:
                        optimizer.state.pop(p, None)
        self._interval = interval
        self.active = sorted(chosen)
        self.history.append(self.active)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"active": self.active, "interval": self._interval}


STRATEGY = LISA()
