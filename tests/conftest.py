from __future__ import annotations

import os
from pathlib import Path

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


# Tests run on two xdist workers (pyproject addopts). One scheduling group per test file, so
# module-scoped fixtures (each e2e module's own Snakemake run) run on one worker only, except
# that every file whose tests read the shared rule-all run (``all_claims_run``, ~10 minutes of
# jobs) is one group: that run must not be built twice. xdist's own ``--dist loadgroup`` marks
# are not honoured with pytest 9 (the node-id suffix it relies on is ignored), so the groups
# come from a scheduler of our own, decided by file name.
SHARED_RUN_FILES = frozenset(
    p.name for p in Path(__file__).parent.glob("test_*.py") if "all_claims_run" in p.read_text(encoding="utf-8"))


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class FileGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "all_claims_run" if Path(path).name in SHARED_RUN_FILES else path

    return FileGroups(config, log)


# Claims whose own e2e modules build them end to end (test_prune_workflow,
# test_compress_lowrank_workflow, test_select_workflow, test_data_diet,
# test_reweighting_workflow): the shared rule-all copy leaves them out instead of building
# them twice.
OWN_E2E_CLAIMS = ("wanda_wikitext", "flap_wikitext", "eora_wikitext", "gwq_wikitext", "dsir_glue", "data_diet",
                  "loss_reweighting")


@pytest.fixture(scope="session")
def all_claims_run(tmp_path_factory, tiny_models, glue_fixture):
    """Every configured claim at smoke scale on the tiny fixtures, built once by ``rule all``
    in one workflow copy and shared by the tests that check a claim's end-to-end outputs
    (tarot, data_shapley) and the report tests, so their jobs run once per session.

    Returns (work, env, params). Tests may edit the copy only if they restore it."""
    import yaml

    from reclaim.config import REPO_ROOT, load_yaml
    from reclaim.testing import copy_workflow, run_snakemake, tiny_claim_params, workflow_env

    work = copy_workflow(tmp_path_factory.mktemp("wf_all"))
    # The pruning, low-rank and GWQ claims run in their own e2e modules
    # (tests/test_prune_workflow.py, tests/test_compress_lowrank_workflow.py), so this copy's
    # params.yaml leaves them out instead of running them twice.
    base = load_yaml(REPO_ROOT / "params.yaml")
    for name in OWN_E2E_CLAIMS:
        base["claims"].pop(name, None)
    (work / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    params = tiny_claim_params(tiny_models, tasks=["sst2", "mrpc"], max_train=16, max_eval=16)
    for name in OWN_E2E_CLAIMS:
        params["claims"].pop(name, None)
    # TAROT's verdicts are paired differences over seeds: two, as its own plan test has
    params["claims"]["tarot"]["scales"]["smoke"]["seeds"] = [0, 1]
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    env = workflow_env(work, glue_fixture)
    # rule all: claims, tables, claims.md (~170 jobs: well past run_snakemake's default timeout)
    proc = run_snakemake(work, "--cores", "2", env=env, timeout=2700)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, env, params


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
