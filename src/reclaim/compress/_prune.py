"""What the pruning methods share: their params (``sparsity``, ``pattern``), the masks, and the
per-layer record.

Pruning is fake, like quantization here: the pruned weights are set to exactly zero in dense
matrices, so the saved model computes the pruned function and loads with transformers; each
layer's record says which fraction the method pruned (``sparsity``, the mask's share, which is
the target up to rounding), its weight error and, for calibrated methods, its output error.

Patterns (Wanda, arXiv 2306.11695, Sec. 3 "Structured N:M sparsity"; SparseGPT, arXiv
2301.00774, Sec. 3.4): ``unstructured`` or ``"N:M"``, which prunes the N lowest-scoring of
every M consecutive input weights in each output row (so 2:4 keeps two of every four and its
sparsity is N/M; the ``sparsity`` key must then equal N/M, which it does by default for 2:4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reclaim.compress._base import Compressor, output_error, weight_error
from reclaim.compress._torch import torch

_NM = re.compile(r"^(\d+):(\d+)$")


def parse_pattern(pattern: Any) -> tuple[int, int] | None:
    """(N, M) of an ``"N:M"`` pattern, None for ``unstructured``; anything else is refused."""
    if pattern == "unstructured":
        return None
    m = _NM.match(pattern) if isinstance(pattern, str) else None
    if not m or not 0 < int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"pattern must be 'unstructured' or 'N:M' with integers 0 < N < M (N of every M "
                         f"consecutive inputs pruned per row), got {pattern!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class PruneParams:
    sparsity: float = 0.5
    pattern: str = "unstructured"

    def __post_init__(self) -> None:
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ValueError(f"sparsity must be a number in [0, 1), got {s!r}")
        nm = parse_pattern(self.pattern)
        if nm and abs(s - nm[0] / nm[1]) > 1e-9:
            raise ValueError(f"sparsity {s!r} does not match pattern {self.pattern!r}, which prunes "
                             f"{nm[0]} of every {nm[1]} weights (sparsity {nm[0] / nm[1]:g})")

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_pattern(self.pattern)


# --- masks (True = pruned) ----------------------------------------------------------------------


def lowest_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the k lowest scores along the last dim (stable: ties go to the lower index)."""
    mask = torch.zeros_like(score, dtype=torch.bool)
    if k > 0:
        idx = torch.sort(score, dim=-1, stable=True).indices[..., :k]
        mask.scatter_(-1, idx, True)
    return mask


def row_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The ``int(in * sparsity)`` lowest scores of every output row (Wanda's comparison group)."""
    return lowest_mask(score, int(score.shape[1] * sparsity))


def layer_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The ``int(numel * sparsity)`` lowest scores of the whole matrix (one threshold per layer:
    magnitude pruning, and SparseGPT's choice within a block of columns)."""
    return lowest_mask(score.reshape(1, -1), int(score.numel() * sparsity)).reshape(score.shape)


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The n lowest scores of every m consecutive inputs in each row."""
    rows, cols = score.shape
    if cols % m:
        raise ValueError(f"an {n}:{m} pattern needs an input width divisible by {m}, got {cols}")
    return lowest_mask(score.reshape(rows, cols // m, m), n).reshape(rows, cols)


def mask_for(score: torch.Tensor, params: PruneParams, per: str = "row") -> torch.Tensor:
    """The mask a pattern asks for: N:M groups, or the unstructured fraction per row / layer."""
    if params.nm:
        return nm_mask(score, *params.nm)
    return row_mask(score, params.sparsity) if per == "row" else layer_mask(score, params.sparsity)


def layer_record(w: torch.Tensor, w_hat: torch.Tensor, mask: torch.Tensor, h: torch.Tensor | None = None
                 ) -> dict[str, Any]:
    rec: dict[str, Any] = {"sparsity": float(mask.float().mean()), "weight_error": weight_error(w, w_hat)}
    if h is not None:
        rec["output_error"] = output_error(w, w_hat, h)
    return rec


class Pruner(Compressor):
    """Base of the unstructured / N:M pruning methods: no group-size check, but an N:M pattern
    needs every layer's input width to be a multiple of M (checked before any job by width
    kind, and in the job by layer name)."""

    Params: type = PruneParams
    quantizes = False

    def widths_ok(self, params: Any, widths: dict[str, int]) -> list[str]:
        nm = getattr(params, "nm", None)
        if not nm:
            return []
        return [f"pattern {params.pattern} needs input widths divisible by {nm[1]}, but the {name} width is {w}"
                for name, w in widths.items() if w % nm[1]]

    @staticmethod
    def check_layers(layers: dict[str, torch.nn.Linear], params: PruneParams) -> None:
        nm = params.nm
        for name, lin in layers.items():
            if nm and lin.in_features % nm[1]:
                raise ValueError(f"pattern {params.pattern} does not fit layer {name!r} "
                                 f"(input width {lin.in_features} is not a multiple of {nm[1]})")
