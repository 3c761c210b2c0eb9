"""Crash safety and concurrency at the workflow level: a training job killed under Snakemake
leaves nothing that counts as done and the rerun resumes it; changing the checkpoint interval
reruns nothing; a second Snakemake run on the same tree is refused by Snakemake's lock while
the first completes; eight training jobs logging to one sqlite MLflow store lose no run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reclaim.config import REPO_ROOT, load, load_yaml
from reclaim.data.glue import read_classic
from reclaim.io import write_jsonl
from reclaim.jobs import claim_jobs, make_spec, result_path
from reclaim.models import resolve
from reclaim.testing import (
    copy_workflow,
    job_env_base,
    run_snakemake,
    session_jobserver,
    tiny_claim_params,
    workflow_env,
)

pytestmark = pytest.mark.slow


def long_workflow(tmp_path: Path, tiny_models: dict[str, Path], every: int) -> tuple[Path, str]:
    """A workflow copy whose one training job (tiny BERT, LoRA, SST-2) runs 160 steps with a
    checkpoint every ``every`` steps; returns the copy and that job's result path."""
    work = copy_workflow(tmp_path / "wf")
    params = tiny_claim_params(tiny_models, tasks=["sst2"])
    params["claims"]["lora_ga_glue"]["scales"]["smoke"]["train"].update(batch_size=2, epochs=10)
    params["checkpoint"] = {"every_steps": every}
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    cfg = load(work / "params.yaml", load_yaml(work / "test_params.yaml"))
    (spec,) = [s for s in claim_jobs(cfg, "lora_ga_glue") if s["method"]["name"] == "lora"]
    return work, result_path(spec)


def start_snakemake(work: Path, target: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``run_snakemake``'s command line, in the background, in its own session."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(work / "Snakefile"), "-d", str(work), target,
           "--cores", "1", "--configfile", str(work / "test_params.yaml")]
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"snakemake exited ({proc.returncode}) before {path.name} appeared:\n"
                        + log.read_text()[-3000:])
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def train_pid(session: int, result: str) -> int:
    """The ``reclaim train`` process of ``result`` in the session that ``start_snakemake`` began."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            if os.getsid(int(entry.name)) != session:
                continue
        except (OSError, ProcessLookupError):
            continue
        args = [a.decode(errors="replace") for a in cmd]
        if "reclaim" in args and "train" in args and any(a.endswith(result) for a in args):
            return int(entry.name)
    pytest.fail(f"no reclaim train process for {result} in session {session}")


def test_job_killed_under_snakemake_leaves_nothing_done_and_resumes(tmp_path, tiny_models,
                                                                    glue_fixture) -> None:
    work, result = long_workflow(tmp_path, tiny_models, every=3)
    env = workflow_env(work, glue_fixture)
    job_dir = work / Path(result).parent
    log = tmp_path / "first.log"
    first = start_snakemake(work, result, env, log)
    try:
        wait_for(job_dir / "checkpoint" / "manifest.json", first, log)
        os.kill(train_pid(first.pid, result), signal.SIGKILL)  # e.g. the OOM killer
    finally:
        rc = first.wait(600)
    assert rc != 0 and "Error in rule train" in log.read_text()
    assert not (work / result).exists()
    # The job's only declared output is result.json: nothing left behind counts as done.
    dry = run_snakemake(work, "-n", result, env=env)
    assert dry.returncode == 0 and "rule train:" in dry.stdout, dry.stdout[-3000:]
    k = json.loads((job_dir / "checkpoint" / "manifest.json").read_text())["step"]
    assert 0 < k < 160 and k % 3 == 0

    again = run_snakemake(work, result, "--cores", "1", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from step {k} of 160" in (job_dir / "train.log").read_text()
    done = json.loads((work / result).read_text())
    assert done["resumed_from_step"] == k and done["steps"] == 160 and len(done["losses"]) == 160
    assert not (job_dir / "checkpoint").exists()

    # The interval reaches the job as a resource, not a param: changing it reruns nothing.
    params = yaml.safe_load((work / "test_params.yaml").read_text())
    params["checkpoint"] = {"every_steps": 7}
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    dry = run_snakemake(work, "-n", result, env=env)
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


def test_second_snakemake_run_is_refused_by_the_lock(tmp_path, tiny_models, glue_fixture) -> None:
    work, result = long_workflow(tmp_path, tiny_models, every=3)
    env = workflow_env(work, glue_fixture)
    log = tmp_path / "first.log"
    first = start_snakemake(work, result, env, log)
    try:
        wait_for(work / Path(result).parent / "checkpoint" / "manifest.json", first, log)
        assert first.poll() is None, "the first run finished before the second started"
        second = run_snakemake(work, result, "--cores", "1", env=env)
        out = second.stdout + second.stderr
        assert second.returncode != 0
        assert "Directory cannot be locked" in out, out[-3000:]
        assert "--unlock" in out  # Snakemake says how to clear a stale lock
        assert first.poll() is None or first.returncode == 0
    finally:
        rc = first.wait(600)
    assert rc == 0, log.read_text()[-3000:]
    done = json.loads((work / result).read_text())
    assert done["steps"] == 160 and len(done["losses"]) == 160
    assert not (work / Path(result).parent / "checkpoint").exists()


N_JOBS = 8


def test_eight_parallel_jobs_lose_no_mlflow_run(tmp_path, tiny_models, glue_fixture) -> None:
    data = tmp_path / "data"
    for split in ("train", "dev"):
        write_jsonl(data / f"{split}.jsonl", read_classic(glue_fixture, "sst2", split))
    cfg = json.loads(json.dumps(load_yaml(REPO_ROOT / "params.yaml")))
    cfg["models"] = {"tiny-bert": {"framing": "encoder_cls", "local_dir": str(tiny_models["bert"])}}
    scale = cfg["claims"]["lora_ga_glue"]["scales"]["smoke"]
    scale.update(models=["tiny-bert"], max_train_examples=32, max_eval_examples=8)
    scale["train"] = {"batch_size": 4, "lr": 1e-3, "max_length": 32}
    model = json.dumps(resolve("tiny-bert", cfg["models"]["tiny-bert"]).__dict__)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the jobs fork from the session's job server once it listens: eight writers at once
    env = {**job_env_base(), "PYTHONPATH": str(REPO_ROOT / "src")}
    if sock := session_jobserver():
        env["RECLAIM_JOBSERVER"] = sock
    init = subprocess.run([sys.executable, "-m", "reclaim", "init-tracking", "--uri", uri,
                           "--experiment", "par"], capture_output=True, text=True, env=env, timeout=300)
    assert init.returncode == 0, init.stderr[-2000:]

    procs = []
    for seed in range(N_JOBS):
        spec = make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "lora", seed)
        out = tmp_path / "runs" / f"seed{seed}" / "result.json"
        cmd = [sys.executable, "-m", "reclaim", "train", "--spec", json.dumps(spec), "--model", model,
               "--train", str(data / "train.jsonl"), "--dev", str(data / "dev.jsonl"), "--out", str(out),
               "--threads", "1", "--no-progress", "--tracking-uri", uri, "--experiment", "par",
               "--log-every", "1", "--checkpoint-every", "2"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=env))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, o in zip(procs, outputs, strict=True):
        assert p.returncode == 0, o[-3000:]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("par")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == N_JOBS
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["reclaim.seed"] for r in runs} == {str(s) for s in range(N_JOBS)}
    for run in runs:
        seed = run.data.tags["reclaim.seed"]
        result = json.loads((tmp_path / "runs" / f"seed{seed}" / "result.json").read_text())
        assert result["mlflow_run_id"] == run.info.run_id
        for key in ("train_loss", "lr"):
            hist = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            assert [m.step for m in hist] == list(range(1, 9)), (seed, key)
        losses = sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
        assert [m.value for m in losses] == pytest.approx(result["losses"], rel=1e-6)
        assert "eval_accuracy" in run.data.metrics
