"""The flagship claim through a real Slurm cluster (workflow/profiles/slurm), checked
against the same claim run locally: every job must go through sbatch and the claim table,
metrics and verdicts must come out the same.

Needs a running cluster: ``bash tests/slurm/setup_cluster.sh`` (root; .ci/run does it),
then ``RECLAIM_SLURM=1 .venv/bin/python -m pytest -m slurm``. Without RECLAIM_SLURM=1
the tests skip; with it but no answering cluster they fail, since a skip would hide that.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reclaim.testing import copy_workflow, run_snakemake, tiny_claim_params, workflow_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TARGET = "results/lora_ga_glue.csv"
TASKS = ("sst2", "mrpc")
METHODS = ("full_ft", "lora", "lora_ga")
# 2 tasks x (train, dev) prepare_glue + 2 tasks x 3 methods train + 1 claim_table
N_JOBS = 2 * 2 + len(TASKS) * len(METHODS) + 1
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")


def _cluster_problem() -> str | None:
    """Why the Slurm cluster cannot take jobs, or None when sinfo shows a usable node."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "sinfo/sbatch are not on PATH"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    states = proc.stdout.split()
    if proc.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states):
        return f"sinfo shows no usable node (exit {proc.returncode}): {proc.stdout or proc.stderr}"
    return None


@pytest.fixture(scope="module")
def slurm_up() -> None:
    if os.environ.get("RECLAIM_SLURM") != "1":
        pytest.skip("Slurm test: set RECLAIM_SLURM=1 after bash tests/slurm/setup_cluster.sh")
    problem = _cluster_problem()
    if problem:
        pytest.fail(f"RECLAIM_SLURM=1 but the Slurm cluster is not up: {problem}")


def _workflow(root: Path, tiny_models: dict[str, Path]) -> Path:
    work = copy_workflow(root)
    params = tiny_claim_params(tiny_models, models=["tiny-bert"], methods=list(METHODS),
                               tasks=list(TASKS))
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    return work


def _slurm_snakemake(work: Path, *targets: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Snakemake through the repo's Slurm profile, with test-only speed-ups: status checks
    from 2 s (jobs here take seconds), and --verbose for the plugin's sbatch calls."""
    return run_snakemake(
        work, "--profile", str(work / "workflow/profiles/slurm"), *targets,
        "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5", "--verbose",
        env=env, timeout=900,
    )


def _squeue(jobids: list[str]) -> dict[str, tuple[str, str]]:
    """jobid -> (state, working directory) as slurmctld reports it (MinJobAge=300 keeps
    finished jobs listed; there is no accounting database for sacct)."""
    proc = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%Z",
                           "--jobs", ",".join(jobids)], capture_output=True, text=True, check=True)
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def _default_partition() -> str:
    """The partition jobs should land in: $RECLAIM_SLURM_PARTITION, else sinfo's default."""
    if os.environ.get("RECLAIM_SLURM_PARTITION"):
        return os.environ["RECLAIM_SLURM_PARTITION"]
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True,
                         check=True).stdout.split()
    return next(p.rstrip("*") for p in out if p.endswith("*"))


def _sbatch_calls(log: str) -> list[str]:
    return [line for line in log.splitlines() if "sbatch call:" in line]


def _table(work: Path) -> tuple[list[dict[str, str]], dict, dict]:
    rows = list(csv.DictReader(open(work / TARGET)))
    out = json.loads((work / "results/lora_ga_glue.json").read_text())
    return rows, out["metrics"], out["verdicts"]


@pytest.fixture(scope="module")
def runs(slurm_up, tmp_path_factory, tiny_models, glue_fixture):
    """The same tiny claim twice, in two workflow copies: local --cores 2, then Slurm."""
    local = _workflow(tmp_path_factory.mktemp("wf_local"), tiny_models)
    proc = run_snakemake(local, TARGET, "--cores", "2", env=workflow_env(local, glue_fixture))
    assert proc.returncode == 0, proc.stderr[-4000:]

    # Slurm's jobs run as plain processes under sbatch (no warm job server); the local run
    # forks its jobs from the test job server, so equal results also check that the two agree
    slurm = _workflow(tmp_path_factory.mktemp("wf_slurm"), tiny_models)
    env = workflow_env(slurm, glue_fixture, jobserver=False)
    sproc = _slurm_snakemake(slurm, TARGET, env=env)
    assert sproc.returncode == 0, sproc.stderr[-6000:]
    return local, slurm, env, sproc


def test_every_job_ran_as_a_slurm_job(runs) -> None:
    _, slurm, _, proc = runs
    log = proc.stdout + proc.stderr
    submitted = SUBMITTED.findall(log)
    assert len(submitted) == N_JOBS, log[-4000:]
    jobids = [jobid for _, jobid, _ in submitted]
    # Slurm itself ran each one, to completion, in the workflow copy.
    states = _squeue(jobids)
    assert set(states) == set(jobids)
    assert {state for state, _ in states.values()} == {"COMPLETED"}
    assert {Path(wd).resolve() for _, wd in states.values()} == {slurm.resolve()}
    # The profile keeps every job's Slurm log, under logs/slurm/rule_<rule>/...
    for _, jobid, path in submitted:
        logfile = Path(path)
        assert logfile.is_file() and logfile.name == f"{jobid}.log"
        assert (slurm / "logs/slurm") in logfile.parents
        text = logfile.read_text()  # the jobstep's own Snakemake output, inside the job
        assert "--executor slurm-jobstep" in text and "1 of 1 steps (100%) done" in text, text
    rules = {Path(p).relative_to(slurm / "logs/slurm").parts[0] for _, _, p in submitted}
    assert rules == {"rule_prepare_glue", "rule_train", "rule_claim_table"}


def test_sbatch_requests_follow_the_profile(runs) -> None:
    """gpu: 0 (smoke) asks Slurm for no GPU; cheap rules get the profile's small requests;
    no account is passed (the test cluster has none)."""
    _, _, _, proc = runs
    calls = _sbatch_calls(proc.stdout + proc.stderr)
    assert len(calls) == N_JOBS
    partition = _default_partition()
    for call in calls:
        assert "--gpus" not in call and "--gres" not in call, call
        assert " -A " not in call, call
        assert "--cpus-per-task=1" in call and f" -p {partition} " in call, call
    by_rule = {rule: [c for c in calls if f"rule_{rule}" in c]
               for rule in ("prepare_glue", "train", "claim_table")}
    assert all("--mem 1000 " in c and "-t 15 " in c for c in by_rule["prepare_glue"])
    assert all("--mem 4000 " in c and "-t 30 " in c for c in by_rule["train"])
    assert all("--mem 2000 " in c for c in by_rule["claim_table"])


def test_slurm_results_equal_local_results(runs) -> None:
    local, slurm, _, _ = runs
    l_rows, l_metrics, l_verdicts = _table(local)
    s_rows, s_metrics, s_verdicts = _table(slurm)
    assert len(l_rows) == len(TASKS) * len(METHODS) + len(METHODS)  # + an avg row per method
    assert {r["status"] for r in l_rows} == {"ok"}
    # CPU, one thread per job, same seeds and data: the numbers are bit-identical, so the
    # comparison is exact (a mismatch means the Slurm job ran something different).
    assert s_rows == l_rows
    assert s_metrics == l_metrics
    assert s_verdicts == l_verdicts
    for result in sorted(local.glob("results/runs/**/result.json")):
        rel = result.relative_to(local)
        lres, sres = json.loads(result.read_text()), json.loads((slurm / rel).read_text())
        assert sres["metrics"] == lres["metrics"] and sres["losses"] == lres["losses"], rel


def test_gpu_job_asks_slurm_for_a_gpu(runs) -> None:
    """A scale with gpu: 1 makes the train job request --gpus=1, and Slurm allocates it
    (the test cluster's one stand-in GPU; the job itself still computes on the CPU)."""
    _, slurm, env, _ = runs
    gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True).stdout
    if "gpu" not in gres:
        pytest.skip(f"the Slurm cluster has no gpu GRES (sinfo %G: {gres.strip()!r})")
    result = next(slurm.glob("results/runs/tiny-bert/sst2/lora/*/seed0/result.json"))
    before = json.loads(result.read_text())
    params_file = slurm / "test_params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["claims"]["lora_ga_glue"]["scales"]["smoke"]["resources"]["gpu"] = 1
    params_file.write_text(yaml.safe_dump(params))
    result.unlink()
    proc = _slurm_snakemake(slurm, str(result.relative_to(slurm)), env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    log = proc.stdout + proc.stderr
    calls = _sbatch_calls(log)
    assert len(calls) == 1 and "--gpus=1" in calls[0], calls
    (jobid,) = [jobid for _, jobid, _ in SUBMITTED.findall(log)]
    show = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True,
                          check=True).stdout
    assert "TresPerJob=gres:gpu:1" in show and "JobState=COMPLETED" in show, show
    after = json.loads(result.read_text())
    assert after["device"] == "cpu" and after["metrics"] == before["metrics"]
