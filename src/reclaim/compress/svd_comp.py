"""Plain SVD compensation of a compression error: ZeroQuant-V2's low-rank compensation
(Yao et al., arXiv 2303.08302, Sec. 5 "LoRC"), the baseline EoRA is compared with (Liu et al.,
arXiv 2410.21271, Sec. 4, "SVD").

With dW = W - W_c = U S V^T (exact SVD, float64, signs fixed by reclaim.linalg), keep the top
r singular triplets: B = U_r S_r^(1/2), A = S_r^(1/2) V_r^T (exact top-r triplets,
``_lowrank.top_svd``). By Eckart-Young this minimises
||dW - BA||_F, i.e. the output error for white inputs (C = I); it ignores which input
directions the calibration data actually excites. Needs no calibration. Runs after another
compress step (reclaim.compress._lowrank: merged model plus a PEFT LoRA adapter).
"""

from __future__ import annotations

from reclaim.compress._lowrank import LowRankCompensator, top_svd
from reclaim.compress._torch import torch


def svd_factors(dw: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A), float64: the rank-r truncated SVD of ``dw`` split evenly by S^(1/2)."""
    u, s, vh = top_svd(dw, rank)
    root = s.sqrt()
    return u * root, root[:, None] * vh


class SVDCompensation(LowRankCompensator):
    needs_calibration = False

    def factors(self, dw: torch.Tensor, cov: torch.Tensor | None, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        return svd_factors(dw, rank)


COMPRESSOR = SVDCompensation()
