"""Post-training quantization of weights and activations (Krishnamoorthi, "Quantizing deep
convolutional networks for efficient inference: A whitepaper", arXiv 1806.08342, Sec. 3.1):
weights min/max quantized per tensor ("per-layer") or per output channel, asymmetric with an
integer zero point, by the shared quantizer; activations (every block Linear's input) per
tensor, ranges from a moving average of min/max over calibration batches (Sec. 2.1: about
100 mini-batches suffice). Embeddings, pooler and the classifier head stay in float.

The whitepaper's PTQ path is TensorFlow's; ``torch.ao.quantization`` would do it in torch, but
the shared fake quantizer keeps the same grid as every other method here and is what QAT
(``qat.py``) trains through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.compress import _act
from reclaim.compress._base import Compressor, QuantParams, weight_error
from reclaim.compress._blocks import compressible_linears
from reclaim.compress._quant import fake_quant
from reclaim.compress._torch import torch


@dataclass(frozen=True)
class PTQParams(QuantParams):
    axis: str = "channel"
    act_bits: int | None = 8       # None: weights only
    act_momentum: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.act_bits is not None and (not isinstance(self.act_bits, int) or not 1 <= self.act_bits <= 16):
            raise ValueError(f"act_bits must be an integer in [1, 16] or null, got {self.act_bits!r}")
        if not 0 <= self.act_momentum < 1:
            raise ValueError(f"act_momentum must be in [0, 1), got {self.act_momentum!r}")


def quantize_weights(layers: dict[str, torch.nn.Linear], params: QuantParams) -> dict[str, Any]:
    per_layer = {}
    for name, lin in layers.items():
        params.quant.check(name, lin.weight)
        w_hat = fake_quant(lin.weight, params.quant, name)
        per_layer[name] = {"weight_error": weight_error(lin.weight, w_hat),
                           "stored_bits": params.quant.stored_bits(tuple(lin.weight.shape))}
        with torch.no_grad():
            lin.weight.copy_(w_hat)
    return per_layer


class PTQ(Compressor):
    Params = PTQParams

    def compress(self, model: torch.nn.Module, calibration: list[Any] | None, params: PTQParams,
                 seed: int) -> dict[str, Any]:
        layers = compressible_linears(model)
        out: dict[str, Any] = {}
        if params.act_bits is not None:  # ranges of the float model's activations
            ranges = _act.calibrate(model, layers, calibration or [], params.act_momentum)
            out["model_files"] = {_act.FILE: _act.record(ranges, params.act_bits)}
        out["layers"] = quantize_weights(layers, params)
        return out


COMPRESSOR = PTQ()
