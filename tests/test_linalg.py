"""reclaim.linalg: decompositions that reconstruct their input and do not depend on the signs
the backend happens to return (the cause of LoRA-GA's Intel/AMD differences, issue 7)."""

from __future__ import annotations

import pytest
import torch

from reclaim import linalg


def _matrix(m: int, n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _assert_convention(vectors: torch.Tensor) -> None:
    """Each column's largest-|.| entry (first on ties) is positive."""
    idx = vectors.abs().argmax(dim=-2, keepdim=True)
    assert (vectors.gather(-2, idx) > 0).all()


@pytest.mark.parametrize("shape", [(9, 5), (5, 9), (6, 6), (3, 7, 4)])
@pytest.mark.parametrize("dtype", [None, torch.float64])
def test_svd_signed_reconstructs_with_orthonormal_factors(shape: tuple[int, ...],
                                                          dtype: torch.dtype | None) -> None:
    a = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    U, S, Vh = linalg.svd_signed(a, dtype=dtype)
    work = dtype or a.dtype
    assert U.dtype == S.dtype == Vh.dtype == work
    k = min(shape[-2:])
    assert U.shape == (*shape[:-1], k) and S.shape == (*shape[:-2], k) and Vh.shape == (*shape[:-2], k, shape[-1])
    tol = 1e-12 if work == torch.float64 else 1e-5
    torch.testing.assert_close(U @ torch.diag_embed(S) @ Vh, a.to(work), atol=tol, rtol=tol)
    eye = torch.eye(k, dtype=work).expand(*shape[:-2], k, k)
    torch.testing.assert_close(U.mT @ U, eye, atol=tol, rtol=tol)
    torch.testing.assert_close(Vh @ Vh.mT, eye, atol=tol, rtol=tol)
    _assert_convention(U)


def test_fix_svd_signs_is_invariant_to_flipped_input_pairs() -> None:
    a = _matrix(8, 6)
    U, S, Vh = torch.linalg.svd(a, full_matrices=False)
    for seed in range(5):
        d = torch.where(torch.rand(6, generator=torch.Generator().manual_seed(seed)) < 0.5, -1.0, 1.0)
        flipped = linalg.fix_svd_signs(U * d, S, Vh * d.unsqueeze(-1))
        reference = linalg.fix_svd_signs(U, S, Vh)
        for x, y in zip(flipped, reference, strict=True):
            assert torch.equal(x, y)  # exactly: the normaliser only negates


@pytest.mark.parametrize("shape", [(10, 4), (4, 10)])
@pytest.mark.parametrize("full_matrices", [False, True])
def test_svd_signed_ignores_the_backends_signs(shape: tuple[int, int], full_matrices: bool,
                                               request: pytest.FixtureRequest) -> None:
    a = _matrix(*shape, seed=2)
    reference = linalg.svd_signed(a, full_matrices=full_matrices)
    raw = torch.linalg.svd(a, full_matrices=full_matrices)
    request.getfixturevalue("backend_flips")
    assert not torch.equal(torch.linalg.svd(a, full_matrices=full_matrices)[0], raw[0])  # flips happen
    U, S, Vh = linalg.svd_signed(a, full_matrices=full_matrices)
    assert torch.equal(U, reference[0]) and torch.equal(S, reference[1]) and torch.equal(Vh, reference[2])
    k = min(shape)
    torch.testing.assert_close(U[:, :k] @ torch.diag(S) @ Vh[:k], a, atol=1e-5, rtol=1e-5)
    _assert_convention(U)


def test_ties_go_to_the_lowest_index() -> None:
    q = torch.tensor([[-0.5, 0.5], [0.5, 0.5], [0.5, -0.5], [-0.5, -0.5]])  # two columns, all |.| equal
    _, fixed = linalg.fix_eigh_signs(torch.zeros(2), q)
    assert torch.equal(fixed[0], torch.tensor([0.5, 0.5]))  # row 0 decides
    assert torch.equal(fixed, q * torch.tensor([-1.0, 1.0]))


def test_eigh_signed_reconstructs_and_ignores_the_backends_signs(request: pytest.FixtureRequest) -> None:
    x = _matrix(7, 5, seed=3, dtype=torch.float64)
    a = x @ x.T + torch.eye(7, dtype=torch.float64)
    L, Q = linalg.eigh_signed(a)
    torch.testing.assert_close(Q @ torch.diag(L) @ Q.T, a)
    torch.testing.assert_close(Q.T @ Q, torch.eye(7, dtype=torch.float64))
    assert (L[1:] >= L[:-1]).all()  # ascending, as torch.linalg.eigh
    _assert_convention(Q)
    request.getfixturevalue("backend_flips")
    assert not torch.equal(torch.linalg.eigh(a)[1], Q)  # flips happen
    L2, Q2 = linalg.eigh_signed(a)
    assert torch.equal(L2, L) and torch.equal(Q2, Q)


@pytest.mark.parametrize("shape", [(40, 12), (12, 40)])
def test_svd_lowrank_signed_finds_the_top_triplets(shape: tuple[int, int]) -> None:
    m, n = shape
    g = torch.Generator().manual_seed(4)
    left = torch.linalg.qr(torch.randn(m, 6, generator=g, dtype=torch.float64)).Q
    right = torch.linalg.qr(torch.randn(n, 6, generator=g, dtype=torch.float64)).Q
    s = torch.tensor([10.0, 7, 5, 3, 2, 1], dtype=torch.float64)
    a = left @ torch.diag(s) @ right.T  # exactly rank 6: the sketch captures it
    U, S, Vh = linalg.svd_lowrank_signed(a, q=6, niter=2, seed=0)
    assert U.shape == (m, 6) and S.shape == (6,) and Vh.shape == (6, n)
    torch.testing.assert_close(S, s)
    torch.testing.assert_close(U @ torch.diag(S) @ Vh, a)
    exact = linalg.svd_signed(a)  # the same vectors as the exact SVD, signs included
    torch.testing.assert_close(U, exact[0][:, :6])
    torch.testing.assert_close(Vh, exact[2][:6])
    _assert_convention(U)


def test_svd_lowrank_signed_is_seeded_and_leaves_the_global_rng_alone(
        request: pytest.FixtureRequest) -> None:
    a = _matrix(30, 20, seed=5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = linalg.svd_lowrank_signed(a, q=8, niter=1, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different global state changes nothing
    again = linalg.svd_lowrank_signed(a, q=8, niter=1, seed=7)
    other_seed = linalg.svd_lowrank_signed(a, q=8, niter=1, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not torch.equal(first[1], other_seed[1])  # full-rank input: the sketch matters
    # a backend with other signs in its QR and SVD gives the same result
    request.getfixturevalue("backend_flips")
    flipped = linalg.svd_lowrank_signed(a, q=8, niter=1, seed=7)
    for x, y in zip(flipped, first, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)


def test_svd_lowrank_signed_checks_its_arguments() -> None:
    a = _matrix(5, 4)
    with pytest.raises(ValueError, match="q must be"):
        linalg.svd_lowrank_signed(a, q=5)
    with pytest.raises(ValueError, match="niter"):
        linalg.svd_lowrank_signed(a, q=2, niter=-1)


def test_half_precision_is_promoted_and_complex_refused() -> None:
    U, S, Vh = linalg.svd_signed(_matrix(6, 4).to(torch.bfloat16))
    assert U.dtype == S.dtype == Vh.dtype == torch.float32
    with pytest.raises(TypeError, match="real"):
        linalg.svd_signed(torch.randn(3, 3, dtype=torch.complex64))


def test_flipped_signs_move_the_lora_ga_product_without_the_convention(
        request: pytest.FixtureRequest) -> None:
    """Why the convention is needed: LoRA-GA's B0 A0 = U[:, r:2r] Vh[:r] pairs vectors of
    different indices, so a backend's flips change it; U_r diag(S_r) Vh_r (PiSSA) does not."""
    a, r = _matrix(12, 10, seed=6), 2
    U, S, Vh = torch.linalg.svd(a, full_matrices=False)
    request.getfixturevalue("backend_flips")
    fU, fS, fVh = torch.linalg.svd(a, full_matrices=False)
    assert not torch.allclose(U[:, r:2 * r] @ Vh[:r], fU[:, r:2 * r] @ fVh[:r])
    torch.testing.assert_close(U[:, :r] @ torch.diag(S[:r]) @ Vh[:r], fU[:, :r] @ torch.diag(fS[:r]) @ fVh[:r])
    sU, _, sVh = linalg.fix_svd_signs(fU, fS, fVh)
    ref = linalg.fix_svd_signs(U, S, Vh)
    assert torch.equal(sU[:, r:2 * r] @ sVh[:r], ref[0][:, r:2 * r] @ ref[2][:r])
