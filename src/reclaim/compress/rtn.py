"""Round-to-nearest: the shared fake quantizer applied once to every block Linear, the
baseline of every PTQ paper (GPTQ, arXiv 2210.17323, Sec. 5; AWQ, arXiv 2306.00978, Table 4)."""

from __future__ import annotations

from typing import Any

from reclaim.compress._base import Compressor, QuantParams, weight_error
from reclaim.compress._blocks import compressible_linears
from reclaim.compress._quant import fake_quant
from reclaim.compress._torch import no_grad, torch


class RTN(Compressor):
    Params = QuantParams
    needs_calibration = False

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: QuantParams,
                 seed: int) -> dict[str, Any]:
        layers = compressible_linears(model)
        for name, lin in layers.items():
            params.quant.check(name, lin.weight)
        per_layer = {}
        for name, lin in layers.items():
            w_hat = fake_quant(lin.weight, params.quant, name)
            per_layer[name] = {"weight_error": weight_error(lin.weight, w_hat),
                               "stored_bits": params.quant.stored_bits(tuple(lin.weight.shape))}
            lin.weight.copy_(w_hat)
        return {"layers": per_layer}


COMPRESSOR = RTN()
