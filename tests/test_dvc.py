"""DVC and Snakemake agree, and two commits can be diffed, on a scratch git repository that
holds a copy of the workflow with the flagship claim on a tiny fixture model.

One module-scoped story, in order: snakemake run -> dvc repro does no training work ->
commit -> change LoRA's learning rate -> dvc repro retrains only LoRA -> commit -> `reclaim diff`
and `dvc metrics diff` name the same moved numbers, all LoRA's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reclaim.config import REPO_ROOT, load_yaml, merge
from reclaim.testing import (
    copy_workflow,
    run_snakemake,
    tiny_claim_params,
    workflow_env,
    write_glue_fixture,
)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _run(work: Path, *cmd: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), cwd=work, capture_output=True, text=True, env=env, timeout=900)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _dvc(work: Path, *args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(work, str(BIN / "dvc"), *args, env=env, check=check)


def _git(work: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(work, "git", *args, env=env)


def _trained(out: str) -> list[str]:
    """job ids of the train jobs a Snakemake run executed (from its job listing)."""
    return re.findall(r"rule train:\n(?:.*\n)*?\s+wildcards: (model=\S+, task=\S+, method=\S+)", out)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_models):
    # enough examples that a learning-rate change moves dev accuracy on a tiny model
    glue = write_glue_fixture(tmp_path_factory.mktemp("glue_dvc"), tasks=("sst2", "mrpc"),
                              n_train=256, n_dev=64)
    work = copy_workflow(tmp_path_factory.mktemp("dvcrepo"),
                         extra=("dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore", ".gitignore"))
    tiny = tiny_claim_params(tiny_models, methods=("full_ft", "lora", "lora_ga"), tasks=("sst2", "mrpc"),
                             max_train=256, max_eval=64)
    params = merge(load_yaml(REPO_ROOT / "params.yaml"), tiny)
    # DVC's agreement with Snakemake is what is tested here: one claim keeps the run short
    # (every claim's DVC stage comes from the same foreach over `claims`).
    params["claims"] = {"lora_ga_glue": params["claims"]["lora_ga_glue"]}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = workflow_env(work, glue)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", DVC_NO_ANALYTICS="1")
    _git(work, "init", "-q", env=env)
    _git(work, "add", "-A", env=env)
    _git(work, "commit", "-qm", "workflow", env=env)
    return work, env


@pytest.fixture(scope="module")
def first_run(repo):
    work, env = repo
    proc = run_snakemake(work, "--cores", "2", env=env, configfile="")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(_trained(proc.stdout + proc.stderr)) == 6
    return work, env


def _mtimes(work: Path) -> dict[str, int]:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns
            for p in (work / "results").rglob("*") if p.is_file() and "benchmarks" not in p.parts}


def test_dvc_repro_after_snakemake_does_no_training(first_run) -> None:
    work, env = first_run
    before = _mtimes(work)
    proc = _dvc(work, "repro", env=env)
    out = proc.stdout + proc.stderr
    assert "Nothing to be done" in out, out[-3000:]
    assert _trained(out) == [] and "rule claim_table" not in out
    assert _mtimes(work) == before  # DVC hashed and cached; it rewrote nothing
    assert "up to date" in _dvc(work, "status", env=env).stdout
    again = run_snakemake(work, "-n", env=env, configfile="")
    assert "Nothing to be done" in again.stdout + again.stderr
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert {"artifacts", "claim@lora_ga_glue"} <= set(lock["stages"])
    # cached outs are in the cache; metrics are not (they go to git)
    assert any((work / ".dvc" / "cache").rglob("*"))
    _dvc(work, "push", env=env)
    assert any((work / ".dvc-remote").rglob("*")), "the default local remote received nothing"


@pytest.fixture(scope="module")
def two_commits(first_run):
    work, env = first_run
    _dvc(work, "repro", env=env)
    _git(work, "add", "-A", env=env)
    _git(work, "commit", "-qm", "smoke results", env=env)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["methods"]["lora"]["train"] = {"lr": 2.0e-2}  # LoRA's own learning rate
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _dvc(work, "status", env=env).stdout
    # the claim stage follows through its results/runs dependency once artifacts reruns
    assert "artifacts" in status and "methods" in status
    proc = _dvc(work, "repro", env=env)
    trained = _trained(proc.stdout + proc.stderr)
    assert len(trained) == 2 and all("method=lora," in t for t in trained), trained
    _git(work, "add", "-A", env=env)
    _git(work, "commit", "-qm", "lora lr 2e-2", env=env)
    return work, env


def test_reclaim_diff_shows_only_lora_moved(two_commits) -> None:
    work, env = two_commits
    proc = _run(work, sys.executable, "-m", "reclaim", "diff", "HEAD~1", "HEAD", "--json", env=env)
    d = json.loads(proc.stdout)
    moved = {c["key"] for c in d["changes"]}
    assert moved, "changing LoRA's learning rate moved nothing"
    metric_keys = {k for k in moved if "/verdict/" not in k}
    assert metric_keys and all(k.split("/")[1] == "lora" for k in metric_keys), metric_keys
    # verdict numbers that moved are the ones comparing against LoRA: (a) and (c), never (b)
    assert not any("b_close_to_full_ft" in k for k in moved)
    text = _run(work, sys.executable, "-m", "reclaim", "diff", "HEAD~1", "HEAD", env=env).stdout
    assert "tiny-bert/lora/sst2/accuracy" in text or "tiny-bert/lora/mrpc/accuracy" in text

    # dvc metrics diff agrees: the same numbers moved (DVC flattens the JSON with dots)
    dm = json.loads(_dvc(work, "metrics", "diff", "HEAD~1", "HEAD", "--json", env=env).stdout)
    dvc_moved = {k for k, v in dm["results/lora_ga_glue.json"].items()
                 if isinstance(v.get("diff"), (int, float)) and v["diff"] != 0}
    dvc_metrics = {k[len("metrics."):] for k in dvc_moved if k.startswith("metrics.")}
    assert dvc_metrics == metric_keys
    pd = json.loads(_dvc(work, "params", "diff", "HEAD~1", "HEAD", "--json", env=env).stdout)
    assert pd["params.yaml"]["methods.lora.train.lr"] == {"old": None, "new": 0.02}


def test_reclaim_diff_errors_and_missing_results(two_commits) -> None:
    work, env = two_commits
    bad = _run(work, sys.executable, "-m", "reclaim", "diff", "nosuchrev", "HEAD", env=env, check=False)
    assert bad.returncode == 2 and "unknown revision 'nosuchrev'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = _run(work, sys.executable, "-m", "reclaim", "diff", "--claim", "nope", env=env, check=False)
    assert bad.returncode == 2 and "unknown claim 'nope'" in bad.stderr
    # the first commit has no results: shown as such, exit 0
    ok = _run(work, sys.executable, "-m", "reclaim", "diff", "HEAD~2", "HEAD", env=env)
    assert "no results at HEAD~2" in ok.stdout


def test_reclaim_runs_by_commit(two_commits) -> None:
    work, env = two_commits
    head = _git(work, "rev-parse", "HEAD", env=env).stdout.strip()
    # the runs at HEAD~1's tree were made before that commit existed: tagged with HEAD~2
    # (dirty). The LoRA reruns were made on top of HEAD~1.
    proc = _run(work, sys.executable, "-m", "reclaim", "runs", "--commit", "HEAD~1", "--json", env=env)
    runs = json.loads(proc.stdout)
    (commit, found), = runs.items()
    assert commit != head and len(found) == 2
    assert {r["slot"].split("/")[2] for r in found} == {"lora"}
    cmp = _run(work, sys.executable, "-m", "reclaim", "runs", "--commit", "HEAD~2", "--commit", "HEAD~1",
               env=env).stdout
    assert "tiny-bert/sst2/lora/seed0" in cmp and "->" in cmp
