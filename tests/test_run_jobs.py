"""`reclaim jobs` + scripts/run_jobs.py: the Snakemake-free path for offline GPU boxes
writes the same result files, at the same paths, as the workflow's train rule."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import yaml

from reclaim.config import REPO_ROOT, load_yaml
from reclaim.jobs import claim_jobs, result_path

PY = sys.executable


def _params(tmp_path, tiny_models) -> tuple:
    cfg = copy.deepcopy(load_yaml(REPO_ROOT / "params.yaml"))
    cfg["models"]["tiny-bert"] = {"framing": "encoder_cls", "local_dir": str(tiny_models["bert"])}
    claim = cfg["claims"]["lora_ga_glue"]
    claim["methods"] = ["full_ft", "lora", "lora_ga"]
    claim["scales"]["smoke"].update(models=["tiny-bert"], tasks=["sst2"], seeds=[0],
                                    max_train_examples=16, max_eval_examples=8)
    claim["scales"]["smoke"]["train"].update(batch_size=8)
    path = tmp_path / "params.yaml"
    # YAML, not JSON: PyYAML reads JSON's "1e-05" (the QAT step's lr) as a string
    path.write_text(yaml.safe_dump(cfg))
    return cfg, path


def _run(args: list[str], cwd) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_jobs_list_and_run_without_snakemake(tmp_path, tiny_models, glue_fixture) -> None:
    cfg, params = _params(tmp_path, tiny_models)
    listed = _run([PY, "-m", "reclaim", "jobs", "--params", str(params), "--claim", "lora_ga_glue",
                   "--scale", "smoke"], tmp_path).stdout
    jobs = [json.loads(line) for line in listed.splitlines()]
    expected = claim_jobs(cfg, "lora_ga_glue")
    assert [j["job_id"] for j in jobs] == [s["job_id"] for s in expected]
    assert [j["out"] for j in jobs] == [result_path(s) for s in expected]
    assert {j["model"]["location"] for j in jobs} == {str(tiny_models["bert"].resolve())}

    on_gpu_box = _run([PY, "-m", "reclaim", "jobs", "--params", str(params), "--claim", "lora_ga_glue",
                       "--scale", "smoke", "--models-dir", "/models"], tmp_path).stdout
    assert {json.loads(line)["model"]["location"] for line in on_gpu_box.splitlines()} == {"/models/tiny-bert"}

    for split in ("train", "dev"):
        _run([PY, "-m", "reclaim", "prepare-glue", "--task", "sst2", "--split", split,
              "--glue-dir", str(glue_fixture), "--out", f"data/glue/sst2/{split}.jsonl"], tmp_path)
    (tmp_path / "jobs.jsonl").write_text(listed)
    runner = [PY, str(REPO_ROOT / "scripts/run_jobs.py"), "jobs.jsonl", "--parallel", "2",
              "--threads", "1", "--device", "cpu"]
    out = _run(runner, tmp_path).stdout
    assert "3 ok, 0 failed" in out
    for job in jobs:
        result = json.loads((tmp_path / job["out"]).read_text())
        assert result["job_id"] == job["job_id"] and result["n_train"] == 16
        assert 0.0 <= result["metrics"]["accuracy"] <= 100.0
    assert "0.0s" in _run(runner, tmp_path).stdout  # done jobs are not rerun
