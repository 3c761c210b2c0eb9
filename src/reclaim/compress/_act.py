"""Activation fake quantization for the PTQ/QAT methods (Krishnamoorthi, arXiv 1806.08342,
Sec. 2.1-2.2 and 3): per-tensor affine ranges of every block Linear's input, calibrated as a
moving average of each batch's min and max (relaxed to include 0), applied as a forward
pre-hook. During QAT the quantizer passes gradients straight through inside its range and
zeroes them outside (the clip-aware straight-through estimator, Sec. 3, eq. 11-12).

The ranges travel with the compressed model as ``activation_quant.json`` in its directory, so
any evaluator that loads the model applies them (``apply``)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from reclaim.compress._quant import grid_params, quantize_with
from reclaim.compress._torch import no_grad, torch

FILE = "activation_quant.json"


@functools.cache
def _ste() -> Any:
    """The straight-through activation quantizer (an autograd Function, built on first use so
    that importing this module does not import torch)."""

    class FakeQuantSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
            scale, zero = grid_params(lo, hi, bits, False)
            ctx.save_for_backward((x >= scale * (0 - zero)) & (x <= scale * (2 ** bits - 1 - zero)))
            return quantize_with(x, scale, zero, bits)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
            (inside,) = ctx.saved_tensors
            return grad * inside, None, None, None

    return FakeQuantSTE


def fake_quant_act(x: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    return _ste().apply(x, torch.tensor(lo), torch.tensor(hi), bits)


class RangeTracker:
    """Moving average of per-batch min/max (the first batch initialises it)."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.ranges: dict[str, list[float]] = {}

    def update(self, name: str, x: torch.Tensor) -> None:
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if name not in self.ranges:
            self.ranges[name] = [lo, hi]
        else:
            m = self.momentum
            r = self.ranges[name]
            self.ranges[name] = [m * r[0] + (1 - m) * lo, m * r[1] + (1 - m) * hi]


@no_grad
def calibrate(model: torch.nn.Module, layers: dict[str, torch.nn.Linear], batches: list[dict[str, Any]],
              momentum: float) -> dict[str, list[float]]:
    """Input ranges of ``layers`` over the calibration batches (labels are not used)."""
    tracker = RangeTracker(momentum)
    handles = [lin.register_forward_pre_hook(lambda _m, a, n=n: tracker.update(n, a[0])) for n, lin in layers.items()]
    try:
        for b in batches:
            model(**{k: v for k, v in b.items() if k != "labels"})
    finally:
        for h in handles:
            h.remove()
    return tracker.ranges


def hooks(layers: dict[str, torch.nn.Linear], ranges: dict[str, list[float]], bits: int,
          tracker: RangeTracker | None = None) -> list[Any]:
    """Pre-hooks that fake-quantize each layer's input; with ``tracker`` (QAT, training mode)
    the ranges keep moving with the batches."""

    def pre(module: torch.nn.Module, args: tuple, name: str) -> tuple:
        x = args[0]
        if tracker is not None and module.training:
            tracker.update(name, x)
        lo, hi = (tracker.ranges if tracker is not None else ranges)[name]
        return (fake_quant_act(x, lo, hi, bits), *args[1:])

    return [lin.register_forward_pre_hook(lambda m, a, n=n: pre(m, a, n)) for n, lin in layers.items()]


def record(ranges: dict[str, list[float]], bits: int) -> dict[str, Any]:
    return {"bits": bits, "granularity": "per tensor (layer input)", "scheme": "asymmetric, integer zero point",
            "ranges": {n: {"min": r[0], "max": r[1]} for n, r in sorted(ranges.items())}}


def apply(model: torch.nn.Module, model_dir: str | Path) -> dict[str, Any] | None:
    """Install the activation quantizers a compressed model directory carries (if any)."""
    path = Path(model_dir) / FILE
    if not path.is_file():
        return None
    spec = json.loads(path.read_text())
    layers = dict(model.named_modules())
    missing = [n for n in spec["ranges"] if n not in layers]
    if missing:
        raise ValueError(f"{path}: layer {missing[0]!r} is not in the model")
    hooks({n: layers[n] for n in spec["ranges"]}, {n: [r["min"], r["max"]] for n, r in spec["ranges"].items()},
          int(spec["bits"]))
    return spec
