"""Quantization-aware training (Krishnamoorthi, arXiv 1806.08342, Sec. 3.2): fine-tune the
float model with simulated quantization of weights and activations in the forward pass; the
float "shadow" weights take the updates, and gradients pass through the quantizers with the
straight-through estimator (identity for weights, clip-aware for activations). Activation
ranges start from a calibration pass and keep a moving average during training; at the end
the weights are quantized once more and the ranges frozen into the model directory.

The training data are the calibration batches (``source: task``: training examples of the
arm's task, with labels); the loss is the model's own (cross-entropy for a classifier)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from reclaim.compress import _act
from reclaim.compress._quant import QuantSpec, fake_quant
from reclaim.compress._torch import torch
from reclaim.compress.ptq import PTQ, PTQParams, quantize_weights


@dataclass(frozen=True)
class QATParams(PTQParams):
    epochs: float = 1.0
    lr: float = 1.0e-5
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.epochs > 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


@functools.cache
def _weight_quantizer() -> Any:
    """A parametrization module class that fake-quantizes a weight with an identity gradient
    (built on first use so that importing this module does not import torch)."""

    class WeightSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
            return fake_quant(w, spec)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            return grad, None

    class FakeQuantWeight(torch.nn.Module):
        def __init__(self, spec: QuantSpec) -> None:
            super().__init__()
            self.spec = spec

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return WeightSTE.apply(w, self.spec)

    return FakeQuantWeight


class QAT(PTQ):
    Params = QATParams

    def compress(self, model: torch.nn.Module, calibration: list[Any] | None, params: QATParams,
                 seed: int) -> dict[str, Any]:
        from torch.nn.utils import parametrize

        from reclaim.compress._blocks import compressible_linears

        batches = calibration or []
        if not batches or "labels" not in batches[0]:
            raise ValueError("qat trains on labelled batches: give the scale calibration: {source: task}")
        layers = compressible_linears(model)
        for name, lin in layers.items():
            params.quant.check(name, lin.weight)
        tracker = None
        handles: list[Any] = []
        if params.act_bits is not None:
            tracker = _act.RangeTracker(params.act_momentum)
            tracker.ranges = _act.calibrate(model, layers, batches, params.act_momentum)
            handles = _act.hooks(layers, tracker.ranges, params.act_bits, tracker)
        for lin in layers.values():
            parametrize.register_parametrization(lin, "weight", _weight_quantizer()(params.quant))
        g = torch.Generator().manual_seed(seed)
        steps = max(1, math.ceil(params.epochs * len(batches)))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params.lr,
                                weight_decay=params.weight_decay)
        losses: list[float] = []
        model.train()
        try:
            with torch.enable_grad():
                order: list[int] = []
                for _ in tqdm(range(steps), desc="qat"):
                    if not order:
                        order = torch.randperm(len(batches), generator=g).tolist()
                    loss = model(**batches[order.pop(0)]).loss
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss))
        finally:
            model.eval()
            for h in handles:
                h.remove()
            for lin in layers.values():  # keep the float shadow weights; quantized once below
                parametrize.remove_parametrizations(lin, "weight", leave_parametrized=False)
        out: dict[str, Any] = {"qat": {"steps": steps, "losses": losses, "examples": sum(len(b["labels"]) for b in
                                                                                        batches)}}
        if tracker is not None:
            out["model_files"] = {_act.FILE: _act.record(tracker.ranges, params.act_bits)}
        out["layers"] = quantize_weights(layers, params)
        return out


COMPRESSOR = QAT()
