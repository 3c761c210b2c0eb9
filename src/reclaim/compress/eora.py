"""EoRA: training-free compensation in the eigenspace of the inputs (Liu et al., NVIDIA,
arXiv 2410.21271, Sec. 3, Algorithm 1).

Per block Linear, in block order, on calibration inputs that have passed through the already
compensated blocks before it (sequential, Sec. 3): C = (1/N) sum x x^T (float64),
C = Q L Q^T (reclaim.linalg.eigh_signed), dW' = dW Q L^(1/2), truncated SVD
dW' ~ U_r S_r V_r^T, and

    B = U_r S_r^(1/2),    A = S_r^(1/2) V_r^T L^(-1/2) Q^T,

so BA = [dW']_r L^(-1/2) Q^T. This is the exact minimiser of the expected output error
E_x ||(dW - BA) x||^2 = tr((dW - BA) C (dW - BA)^T) over rank-r products (a whitened SVD:
||(dW - BA) C^(1/2)||_F with C^(1/2) = Q L^(1/2) Q^T), and equals plain SVD when C = I.

Eigenvalue clamping: eigenvalues at or below ``n * eps * max`` (rounding noise, or inputs the
calibration never excites) are raised to the smallest eigenvalue above that floor, as the
NVlabs reference raises negative ones to the smallest positive one, so L^(-1/2) stays finite
(all ones when nothing is above the floor). Written from the paper's equations.
"""

from __future__ import annotations

from reclaim.compress._lowrank import LowRankCompensator, lapack_threads, top_svd
from reclaim.compress._torch import torch
from reclaim.linalg import eigh_signed


def clamped_eigh(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, Q) of the symmetric ``cov`` in float64, small and negative eigenvalues clamped."""
    with lapack_threads(cov.shape[0], limit=2048):
        lam, q = eigh_signed(cov, dtype=torch.float64)
    floor = lam.numel() * torch.finfo(torch.float64).eps * lam.abs().max().clamp(min=1e-300)
    above = lam[lam > floor]
    fill = above.min() if above.numel() else torch.ones((), dtype=torch.float64)
    return torch.where(lam > floor, lam, fill), q


def eora_factors(dw: torch.Tensor, cov: torch.Tensor, rank: int,
                 eig: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A), float64: EoRA's eigenspace-projected rank-r approximation of ``dw`` (out x in)
    under input second moment ``cov`` (in x in); ``eig``: its ``clamped_eigh``, if known."""
    lam, q = eig if eig is not None else clamped_eigh(cov)
    root = lam.sqrt()
    u, s, vh = top_svd((dw.double() @ q) * root, rank)
    sr = s.sqrt()
    b = u * sr
    a = ((sr[:, None] * vh) / root) @ q.t()
    return b, a


class EoRA(LowRankCompensator):
    needs_calibration = True

    def __init__(self) -> None:
        self._eig: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None

    def factors(self, dw: torch.Tensor, cov: torch.Tensor | None, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        if cov is None:
            raise ValueError("eora: needs the calibration inputs' second moment")
        if self._eig is None or self._eig[0] is not cov:  # Linears sharing an input share C's eigh
            self._eig = (cov, clamped_eigh(cov))
        return eora_factors(dw, cov, rank, eig=self._eig[1])


COMPRESSOR = EoRA()
