"""The claim end to end through Snakemake, on tiny random BERT, GPT-2 and T5 models and
generated GLUE files, in an isolated copy of the workflow (so touching sources is safe)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from reclaim.testing import (
    TINY_FRAMINGS,
    copy_workflow,
    planned_jobs,
    run_snakemake,
    tiny_claim_params,
    workflow_env,
)

pytestmark = pytest.mark.slow


def _snakemake(work: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return run_snakemake(work, *args, env=env)


_planned = planned_jobs


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory, tiny_models, glue_fixture):
    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    # every framing x method on a single-sentence task with MCC (cola) and a sentence-pair
    # task (mrpc); qnli is absent from the fixture (a `missing` row)
    params = tiny_claim_params(tiny_models, models=list(TINY_FRAMINGS),
                               tasks=["cola", "mrpc", "qnli"])
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    env = workflow_env(work, glue_fixture)
    proc = _snakemake(work, "results/lora_ga_glue.csv", "--cores", "2", env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, env, proc


def test_outputs_and_computed_verdicts(workflow_run) -> None:
    work, _, proc = workflow_run
    assert "skipping task qnli" in proc.stderr
    rows = list(csv.DictReader(open(work / "results/lora_ga_glue.csv")))
    ok = [r for r in rows if r["status"] == "ok" and r["task"] != "avg"]
    assert {(r["model"], r["method"], r["task"]) for r in ok} == {
        (m, meth, t) for m in ("tiny-bert", "tiny-gpt2", "tiny-t5")
        for meth in ("full_ft", "lora", "lora_ga") for t in ("cola", "mrpc")}
    assert {r["status"] for r in rows if r["task"] == "qnli"} == {"missing"}
    assert all(r["scale"] == "smoke" for r in rows)
    cola = [r for r in ok if r["task"] == "cola"]
    assert all(r["mcc_mean"] != "" for r in cola)
    lora_cola = next(r for r in ok if r["method"] == "lora" and r["task"] == "cola" and r["model"] == "tiny-bert")
    assert float(lora_cola["paper"]) == 69.35
    out = json.loads((work / "results/lora_ga_glue.json").read_text())
    for model in ("tiny-bert", "tiny-gpt2", "tiny-t5"):
        for v in out["verdicts"][model].values():
            assert v["verdict"] in ("holds", "does not hold", "inconclusive")
            assert "rule" in v and "estimate" in v
    assert out["missing_tasks"] == {"qnli": out["missing_tasks"]["qnli"]}
    assert (work / "results/lora_ga_glue_loss.png").read_bytes()[:4] == b"\x89PNG"
    assert any(k.endswith("/avg/accuracy") for k in out["metrics"])


def test_mlflow_has_every_job_tagged(workflow_run) -> None:
    from mlflow.tracking import MlflowClient

    work, _, _ = workflow_run
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("reclaim")
    runs = client.search_runs([exp.experiment_id], "tags.`reclaim.rule` = 'train'")
    assert len(runs) == 18
    for run in runs:
        t = run.data.tags
        assert t["claim"] == "lora_ga_glue" and t["reclaim.scale"] == "smoke"
        assert t["git_commit"] and t["git_dirty"] in ("true", "false", "unknown")
        assert {"reclaim.model", "reclaim.task", "reclaim.method", "reclaim.seed"} <= set(t)
        assert "eval_accuracy" in run.data.metrics
    hist = client.get_metric_history(runs[0].info.run_id, "train_loss")
    assert len(hist) == 4  # 32 examples / batch 8: a loss for every step


def test_rerun_does_nothing(workflow_run) -> None:
    work, env, _ = workflow_run
    proc = _snakemake(work, "-n", "results/lora_ga_glue.csv", env=env)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


def test_param_change_reruns_only_that_method(workflow_run) -> None:
    work, env, _ = workflow_run
    p = work / "test_params.yaml"
    original = p.read_text()
    params = yaml.safe_load(original)
    params["methods"] = {"lora_ga": {"adapter": "lora_ga", "params": {"r": 8, "alpha": 16, "gamma": 32,
                                                                      "grad_examples": 8, "grad_batch_size": 1}}}
    p.write_text(yaml.safe_dump(params))
    try:
        proc = _snakemake(work, "-n", "results/lora_ga_glue.csv", env=env)
    finally:
        p.write_text(original)
    jobs = _planned(proc.stdout)
    assert {r for r, _ in jobs} == {"train", "claim_table"}
    assert {w["method"] for r, w in jobs if r == "train"} == {"lora_ga"}
    assert len([1 for r, _ in jobs if r == "train"]) == 6


def test_editing_lora_ga_source_reruns_only_lora_ga(workflow_run) -> None:
    work, env, _ = workflow_run
    src = work / "src/reclaim/adapters/lora_ga.py"
    # A real edit: Snakemake 9 skips inputs that are newer but have unchanged content.
    original, st = src.read_text(), src.stat()
    src.write_text(original + "\n# edited\n")  # now: newer than every output
    try:
        proc = _snakemake(work, "-n", "results/lora_ga_glue.csv", env=env)
    finally:
        src.write_text(original)
        os.utime(src, (st.st_atime, st.st_mtime))
    jobs = _planned(proc.stdout)
    assert {r for r, _ in jobs} == {"train", "claim_table"}
    assert {w["method"] for r, w in jobs if r == "train"} == {"lora_ga"}
