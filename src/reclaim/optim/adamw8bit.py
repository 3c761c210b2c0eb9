"""8-bit AdamW (Dettmers et al., "8-bit Optimizers via Block-wise Quantization", arXiv
2110.02861, Sec. 2): AdamW whose two moments are stored as uint8 codes with one absmax per
block of 256 values (dynamic quantisation), about a quarter of fp32 AdamW's state bytes. It is
the "8-bit Adam" baseline of GaLore's memory comparison.

bitsandbytes (``bitsandbytes==0.50.2``) is the authors' implementation and runs on CPU, so it
is used as is. Tensors with fewer than ``min_8bit_size`` elements (biases, norms) keep 32-bit
states, as in the library and the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.optim._base import Strategy


@dataclass(frozen=True)
class Params:
    min_8bit_size: int = 4096    # bitsandbytes' default: smaller tensors keep fp32 moments

    def __post_init__(self) -> None:
        if self.min_8bit_size < 1:
            raise ValueError(f"min_8bit_size must be >= 1, got {self.min_8bit_size}")


class AdamW8bit(Strategy):
    Params = Params

    def build_optimizer(self, model: Any, params: Params, adapter: Any, adapter_params: Any,
                        lr: float, weight_decay: float) -> Any:
        import bitsandbytes as bnb

        trainable = [p for p in model.parameters() if p.requires_grad]
        return bnb.optim.AdamW8bit(trainable, lr=lr, weight_decay=weight_decay,
                                   min_8bit_size=params.min_8bit_size)


STRATEGY = AdamW8bit()
