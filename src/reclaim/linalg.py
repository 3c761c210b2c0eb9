"""SVD and symmetric eigendecomposition with one stated sign convention, the same on every
backend, for every method in reclaim that uses them.

Why: a singular pair (u_k, v_k) is defined only up to a joint sign flip (u_k, v_k) ->
(-u_k, -v_k), and an eigenvector q_k only up to q_k -> -q_k. LAPACK builds (MKL, OpenBLAS,
AOCL), cuSOLVER and MAGMA each return whichever sign their algorithm lands on, and that can
differ between an Intel and an AMD CPU with the same torch. A method that uses U S V^T, or
U_k S_k^(1/2) and S_k^(1/2) V_k^T as a pair, does not see the flip; one that pairs vectors of
different indices (LoRA-GA, arXiv 2407.05000 sec. 3.2: A0 = V[:, :r]^T with B0 = U[:, r:2r]),
or uses one side alone (projections, whitening), computes a different initialisation on each
machine. Every SVD and eigendecomposition in ``src/`` therefore goes through this module.

Convention ("largest entry positive"): for each k, u_k and v_k are flipped together so that
the entry of u_k with the largest absolute value is positive; where several entries tie
exactly in absolute value, the one with the lowest index decides. Eigenvectors q_k of a
symmetric matrix follow the same rule. This is scikit-learn's ``svd_flip`` with
``u_based_decision=True``. With ``full_matrices=True`` the columns of U (rows of Vh) that have
no partner are normalised by the same rule on their own.

What it does not fix: vectors of a repeated singular value or eigenvalue (any rotation in
that subspace is a valid answer; no sign rule can choose one), and rounding-level differences
between backends, which stay rounding-level. A vector whose two largest entries have opposite
signs and agree to rounding may still be decided differently; for real data that is rare,
and the helpers reduce it further with ``dtype=torch.float64``.

Randomised SVD (Halko, Martinsson, Tropp, arXiv 0909.4061, Algorithms 4.4 and 5.1, as in
``torch.svd_lowrank``) draws its test matrix from the global RNG in torch; here it comes from
a ``torch.Generator`` seeded explicitly and drawn on the CPU, so it is the same on every
machine and device and leaves the global RNG untouched.

All functions accept batched input (..., m, n), return (U, S, Vh) with A = U diag(S) Vh
(torch.linalg's layout, Vh = V^T) or (L, Q) with A = Q diag(L) Q^T, in the dtype they
computed in: ``dtype`` if given, else the input's, with float16/bfloat16 promoted to float32.
Real input only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "eigh_signed",
    "fix_eigh_signs",
    "fix_svd_signs",
    "svd_lowrank_signed",
    "svd_signed",
]


def _work_dtype(a: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    import torch

    if a.is_complex() or (dtype is not None and dtype.is_complex):
        raise TypeError("reclaim.linalg handles real matrices only")
    if dtype is not None:
        return dtype
    return torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype


def _signs(x: torch.Tensor, dim: int) -> torch.Tensor:
    """+1/-1 per vector along ``dim`` (kept as size 1): the sign of its largest-|.| entry,
    first index on exact ties (torch.argmax returns the first maximum); +1 for a zero vector."""
    import torch

    idx = x.abs().argmax(dim=dim, keepdim=True)
    pivot = x.gather(dim, idx)
    return torch.where(pivot < 0, -1.0, 1.0).to(x.dtype)


def fix_svd_signs(U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the module's sign convention to any SVD (thin or full): flip each pair
    (U[..., :, k], Vh[..., k, :]) so that U's column has its largest-|.| entry positive.
    U diag(S) Vh is unchanged (exactly: only negations)."""
    import torch

    k = S.shape[-1]
    su = _signs(U, dim=-2)  # (..., 1, m_u): one sign per column of U
    U = U * su
    paired = Vh[..., :k, :] * su[..., 0, :k].unsqueeze(-1)
    if Vh.shape[-2] > k:  # full_matrices with n > m: rows of Vh with no column of U
        extra = Vh[..., k:, :]
        paired = torch.cat([paired, extra * _signs(extra, dim=-1)], dim=-2)
    return U, S, paired


def fix_eigh_signs(L: torch.Tensor, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the sign convention to eigenvectors (columns of Q): largest-|.| entry positive."""
    return L, Q * _signs(Q, dim=-2)


def svd_signed(a: torch.Tensor, *, full_matrices: bool = False, dtype: torch.dtype | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact SVD A = U diag(S) Vh (``torch.linalg.svd``; S descending), signs by the convention.
    ``dtype=torch.float64`` computes in double precision (returned as such)."""
    import torch

    U, S, Vh = torch.linalg.svd(a.to(_work_dtype(a, dtype)), full_matrices=full_matrices)
    return fix_svd_signs(U, S, Vh)


def svd_lowrank_signed(a: torch.Tensor, q: int, *, niter: int = 2, seed: int = 0,
                       dtype: torch.dtype | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomised rank-q SVD, U (m x q), S (q), Vh (q x n), with a seeded test matrix.

    Randomised subspace iteration (Halko et al., arXiv 0909.4061, Algorithm 4.4, then the
    direct SVD of Algorithm 5.1; the algorithm of ``torch.svd_lowrank``): Q = orth(A Omega),
    then ``niter`` times Q = orth(A orth(A^T Q)); the SVD of Q^T A gives the triplets. Omega (n x q, standard normal) comes from a CPU
    ``torch.Generator`` seeded with ``seed``: the same on every machine and device. Wide
    matrices are handled through A^T, so the sketch is always on the short side.
    """
    import torch

    m, n = a.shape[-2:]
    if not 1 <= q <= min(m, n):
        raise ValueError(f"q must be in [1, min(m, n)] = [1, {min(m, n)}]; got {q}")
    if niter < 0:
        raise ValueError(f"niter must be >= 0; got {niter}")
    work = _work_dtype(a, dtype)
    x = a.to(work)
    wide = m < n
    if wide:
        x = x.mT
    gen = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(*x.shape[:-2], x.shape[-1], q, generator=gen, dtype=work).to(x.device)
    basis = torch.linalg.qr(x @ omega).Q
    for _ in range(niter):
        basis = torch.linalg.qr(x.mT @ basis).Q
        basis = torch.linalg.qr(x @ basis).Q
    ub, S, Vh = torch.linalg.svd(basis.mT @ x, full_matrices=False)
    U = basis @ ub
    if wide:  # x = A^T = U S Vh, so A = Vh^T S U^T
        U, Vh = Vh.mT, U.mT
    return fix_svd_signs(U, S, Vh)


def eigh_signed(a: torch.Tensor, *, uplo: str = "L", dtype: torch.dtype | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigendecomposition of a symmetric matrix, A = Q diag(L) Q^T (``torch.linalg.eigh``:
    L ascending, only the ``uplo`` triangle read), eigenvector signs by the convention."""
    import torch

    L, Q = torch.linalg.eigh(a.to(_work_dtype(a, dtype)), UPLO=uplo)
    return fix_eigh_signs(L, Q)
