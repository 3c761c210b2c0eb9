"""Acceptance 5 of the data-selection issue, through Snakemake: a GLUE directory holding RTE
and STS-B in the classic layout gives claim-table rows for them when the claim lists them
(STS-B: Pearson/Spearman, the GLUE convention), and an absent task is a ``missing`` row."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from reclaim.testing import (
    copy_workflow,
    run_snakemake,
    tiny_claim_params,
    workflow_env,
    write_glue_fixture,
)

pytestmark = pytest.mark.slow


def test_rte_and_stsb_rows(tmp_path, tiny_models) -> None:
    glue = write_glue_fixture(tmp_path / "glue", tasks=("rte", "stsb"), n_train=24, n_dev=40)
    work = copy_workflow(tmp_path / "wf")
    params = tiny_claim_params(tiny_models, tasks=["rte", "stsb", "wnli"], max_train=24, max_eval=40)
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    proc = run_snakemake(work, "results/lora_ga_glue.csv", "--cores", "2", env=workflow_env(work, glue))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "skipping task wnli" in proc.stderr

    rows = list(csv.DictReader(open(work / "results/lora_ga_glue.csv")))
    ok = {(r["method"], r["task"]): r for r in rows if r["status"] == "ok"}
    for method in ("full_ft", "lora", "lora_ga"):
        assert ok[(method, "rte")]["metric"] == "accuracy"
        stsb = ok[(method, "stsb")]
        assert stsb["metric"] == "pearson" and stsb["n_eval"] == "40"
        assert -100.0 <= float(stsb["mean"]) <= 100.0
        assert ok[(method, "avg")]["metric"] == "score" and ok[(method, "avg")]["tasks_in_avg"] == "rte stsb"
    assert {r["status"] for r in rows if r["task"] == "wnli"} == {"missing"}

    out = json.loads((work / "results/lora_ga_glue.json").read_text())
    assert out["task_metrics"]["stsb"] == "pearson"
    run = next((work / "results/runs/tiny-bert/stsb/lora").rglob("result.json"))
    metrics = json.loads(run.read_text())["metrics"]
    assert set(metrics) >= {"pearson", "spearman"} and "accuracy" not in metrics
