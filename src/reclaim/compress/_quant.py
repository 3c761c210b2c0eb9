"""The one fake quantizer every compression method calls.

Affine quantization with an integer zero point (Krishnamoorthi, arXiv 1806.08342, Sec. 2.1;
the GPTQ/AWQ convention): per group ``delta = (max - min) / (2^b - 1)``,
``z = round(-min / delta)``, ``q = clamp(round(w / delta) + z, 0, 2^b - 1)``,
``w_hat = (q - z) * delta``, with the range widened to include 0 so that 0 is exact.
Symmetric: ``z`` fixed at the grid's middle and the range from ``max |w|``.

Groups (``axis``): ``tensor`` (one group for the matrix), ``channel`` (one per output row),
``input_channel`` (one per input column), ``group`` (contiguous ``group_size`` input columns
within one output row). A group size that does not divide a layer's input width is an error
naming the layer: groups never straddle rows and are never regrouped silently (the notes'
SmolLM2 trap: 576 = 4.5 x 128).
"""

from __future__ import annotations

from dataclasses import dataclass

from reclaim.compress._torch import torch

AXES = ("tensor", "channel", "input_channel", "group")


@dataclass(frozen=True)
class QuantSpec:
    bits: int = 4
    group_size: int | None = None   # required for axis "group"
    sym: bool = False
    axis: str = "group"

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise ValueError(f"bits must be an integer in [1, 16], got {self.bits!r}")
        if self.axis not in AXES:
            raise ValueError(f"axis: unknown {self.axis!r} ({', '.join(AXES)})")
        if self.axis == "group":
            if not isinstance(self.group_size, int) or self.group_size < 1:
                raise ValueError(f"group_size must be an integer >= 1 for axis 'group', got {self.group_size!r}")

    def check(self, name: str, weight: torch.Tensor) -> None:
        """Refuse a layer whose input width is not a multiple of the group size."""
        if self.axis == "group" and weight.shape[-1] % self.group_size:
            raise ValueError(f"group_size {self.group_size} does not divide layer {name!r} "
                             f"(input width {weight.shape[-1]}); groups are never regrouped silently")

    def stored_bits(self, weight_shape: tuple[int, ...]) -> float:
        """Average bits per weight actually stored: the integer codes plus one 16-bit scale and a
        ``bits``-bit zero point per group (none for symmetric)."""
        out, inp = weight_shape
        groups = {"tensor": 1, "channel": out, "input_channel": inp,
                  "group": out * (inp // (self.group_size or inp))}[self.axis]
        per_group = 16 + (0 if self.sym else self.bits)
        return self.bits + groups * per_group / (out * inp)


def grid_params(lo: torch.Tensor, hi: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point for ranges [lo, hi] (broadcastable), widened to include 0."""
    lo = torch.minimum(lo, torch.zeros_like(lo))
    hi = torch.maximum(hi, torch.zeros_like(hi))
    qmax = 2 ** bits - 1
    if sym:
        amax = torch.maximum(-lo, hi)
        scale = 2 * amax / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.full_like(scale, (qmax + 1) / 2)
    else:
        scale = (hi - lo) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.round(-lo / scale)
    return scale, zero


def quantize_with(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)
    return (q - zero) * scale


def fake_quant(w: torch.Tensor, spec: QuantSpec, name: str = "weight") -> torch.Tensor:
    """Quantize-dequantize ``w`` (out, in) under ``spec``; returns a new tensor of w's dtype."""
    spec.check(name, w)
    x = w.detach().float()
    out, inp = x.shape
    if spec.axis == "tensor":
        g = x.reshape(1, -1)
    elif spec.axis == "channel":
        g = x
    elif spec.axis == "input_channel":
        g = x.t()
    else:
        g = x.reshape(out * inp // spec.group_size, spec.group_size)
    scale, zero = grid_params(g.amin(dim=1, keepdim=True), g.amax(dim=1, keepdim=True), spec.bits, spec.sym)
    q = quantize_with(g, scale, zero, spec.bits)
    q = q.t() if spec.axis == "input_channel" else q
    return q.reshape(out, inp).to(w.dtype)


def q4_1_blocks(w: torch.Tensor, block: int = 32) -> torch.Tensor:
    """GGML's Q4_1 grid (float offset, ``w = d*q + m``, d = (max - min)/15) over ``block``-wide
    row blocks: the regression check that a GGUF-loaded SmolLM2 sits on its Q4_1 grid."""
    x = w.detach().float().reshape(-1, block)
    lo, hi = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
    d = (hi - lo) / 15
    d = torch.where(d > 0, d, torch.ones_like(d))
    q = torch.clamp(torch.round((x - lo) / d), 0, 15)
    return (q * d + lo).reshape(w.shape)
