from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from reclaim.testing import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="session")
def glue_fixture(tmp_path_factory):
    from reclaim.testing import write_glue_fixture

    return write_glue_fixture(tmp_path_factory.mktemp("glue"), tasks=("sst2", "cola", "mrpc"), seed=0)


def _flip_pattern(k: int, period: int = 3, phase: int = 0):  # -> torch.Tensor
    """-1 on indices phase, phase + period, ..., +1 elsewhere: flips some vectors, not others."""
    import torch

    return torch.where(torch.arange(k) % period == phase, -1.0, 1.0)


@pytest.fixture
def backend_flips(monkeypatch):
    """From here on, torch.linalg.svd/qr/eigh return other (equally valid) signs than this
    machine's backend: singular pairs (u_k, v_k) -> (-u_k, -v_k) and unpaired vectors of
    full_matrices flipped, Q's columns with R's rows, eigenvectors. What another CPU may do."""
    import torch

    svd, qr, eigh = torch.linalg.svd, torch.linalg.qr, torch.linalg.eigh

    def flipped_svd(a, *args, **kwargs):
        U, S, Vh = svd(a, *args, **kwargs)
        k = S.shape[-1]
        su = -torch.ones(U.shape[-1], dtype=U.dtype, device=U.device)
        sv = -torch.ones(Vh.shape[-2], dtype=Vh.dtype, device=Vh.device)
        su[:k] = sv[:k] = _flip_pattern(k).to(U)
        return torch.return_types.linalg_svd((U * su, S, Vh * sv.unsqueeze(-1)))

    def flipped_qr(a, *args, **kwargs):
        Q, R = qr(a, *args, **kwargs)
        d = _flip_pattern(Q.shape[-1], period=2, phase=1).to(Q)  # not svd's: they would cancel
        return torch.return_types.linalg_qr((Q * d, R * d.unsqueeze(-1)))

    def flipped_eigh(a, *args, **kwargs):
        L, Q = eigh(a, *args, **kwargs)
        return torch.return_types.linalg_eigh((L, Q * _flip_pattern(Q.shape[-1]).to(Q)))

    monkeypatch.setattr(torch.linalg, "svd", flipped_svd)
    monkeypatch.setattr(torch.linalg, "qr", flipped_qr)
    monkeypatch.setattr(torch.linalg, "eigh", flipped_eigh)
