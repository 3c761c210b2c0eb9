"""The selection stage through Snakemake: the DSIR claim end to end on generated text, job
sharing, and composed identities (a selector's parameter or source file reruns that
selection and what consumes it, nothing else)."""

from __future__ import annotations

import csv
import json
import os

import pytest
import yaml

from reclaim.testing import (
    copy_workflow,
    planned_jobs,
    run_snakemake,
    tiny_claim_params,
    workflow_env,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dsir_run(tmp_path_factory, tiny_models, glue_fixture):
    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    (work / "test_params.yaml").write_text(yaml.safe_dump(tiny_claim_params(tiny_models)))
    env = workflow_env(work, glue_fixture)
    proc = run_snakemake(work, "results/dsir_glue.csv", "--cores", "2", env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, env, proc


def test_claim_outputs_and_computed_verdicts(dsir_run) -> None:
    work, _, _ = dsir_run
    rows = list(csv.DictReader(open(work / "results/dsir_glue.csv")))
    sel = [r for r in rows if not r["task"]]
    assert {r["arm"] for r in sel} == {"random", "heuristic", "dsir", "dsir_topk"}
    assert all(r["scale"] == "smoke" and r["n_seeds"] == "3" for r in sel)
    # downstream: masked-LM pretraining on each selection, then fine-tuning on sst2 (one seed)
    down = {r["arm"]: r for r in rows if r["task"]}
    assert set(down) == {"random_ft", "heuristic_ft", "dsir_ft", "no_pretrain"}
    assert down["dsir_ft"]["selection_arm"] == "dsir" and down["dsir_ft"]["metric"] == "accuracy"
    assert "masked-LM continued pretraining" in down["dsir_ft"]["protocol"]
    assert down["no_pretrain"]["protocol"].startswith("no continued pretraining")
    assert len(list((work / "results/pretrain").glob("*/model/config.json"))) == 3
    out = json.loads((work / "results/dsir_glue.json").read_text())
    assert {"d_downstream_vs_random", "e_kl_accuracy_correlation"} <= set(out["verdicts"]["selection"])
    for v in out["verdicts"]["selection"].values():
        assert v["verdict"] in ("holds", "does not hold", "inconclusive")
        assert v["rule"] and "estimate" in v
    assert (work / "results/dsir_glue_loss.png").read_bytes()[:4] == b"\x89PNG"
    # the stage contracts: scores (example_id, score) and subsets (example_id, weight)
    pool = [json.loads(line) for line in open(next((work / "data/pools/dsir_text").glob("*/pool.jsonl")))]
    scores = next((work / "results/select/scores/dsir").glob("*/scores.tsv")).read_text().splitlines()
    assert scores[0] == "example_id\tscore" and len(scores) == len(pool) + 1
    assert [s.split("\t")[0] for s in scores[1:]] == sorted(r["example_id"] for r in pool)
    meta = json.loads(next((work / "results/select/scores/dsir").glob("*/scores.json")).read_text())
    assert meta["orientation"].startswith("high = target-like")


def test_one_scoring_job_serves_every_subset_and_seed(dsir_run) -> None:
    work, _, proc = dsir_run
    assert len(list((work / "results/select/scores/dsir").glob("*/scores.tsv"))) == 1
    assert len(list((work / "results/select/scores/heuristic_classifier").glob("*/scores.tsv"))) == 1
    assert len(list((work / "results/select/scores/random").glob("*/scores.tsv"))) == 3  # seeded
    # dsir (3 Gumbel draws) and dsir_topk (deterministic) subsets of the one DSIR scoring
    assert len(list((work / "results/select/subsets/dsir").glob("*/subset.tsv"))) == 4


def test_rerun_does_nothing(dsir_run) -> None:
    work, env, _ = dsir_run
    proc = run_snakemake(work, "-n", "results/dsir_glue.csv", env=env)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


def _dsir_downstream_only(jobs: list[tuple[str, dict[str, str]]]) -> None:
    assert {r for r, _ in jobs} == {"score", "subset", "evaluate", "pretrain", "train", "claim_table"}
    assert len([1 for r, _ in jobs if r == "pretrain"]) == 1  # dsir_ft's (one seed), not random's
    assert [w["method"] for r, w in jobs if r == "train"] == ["full_ft"]
    assert [w["selector"] for r, w in jobs if r == "score"] == ["dsir"]
    assert {w["selector"] for r, w in jobs if r == "subset"} == {"dsir"}
    assert len([1 for r, _ in jobs if r == "subset"]) == 4
    assert len([1 for r, _ in jobs if r == "evaluate"]) == 4  # dsir x 3 seeds + dsir_topk


def test_bucket_change_reruns_only_dsir_and_its_consumers(dsir_run) -> None:
    work, env, _ = dsir_run
    p = work / "test_params.yaml"
    original = p.read_text()
    params = yaml.safe_load(original)
    params["selectors"] = {"dsir": {"selector": "dsir", "params": {"buckets": 4096, "ngram": 2}}}
    p.write_text(yaml.safe_dump(params))
    try:
        proc = run_snakemake(work, "-n", "results/dsir_glue.csv", env=env)
    finally:
        p.write_text(original)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _dsir_downstream_only(planned_jobs(proc.stdout))


def test_editing_dsir_source_reruns_only_dsir_and_its_consumers(dsir_run) -> None:
    work, env, _ = dsir_run
    src = work / "src/reclaim/select/dsir.py"
    original, st = src.read_text(), src.stat()
    src.write_text(original + "\n# edited\n")
    try:
        proc = run_snakemake(work, "-n", "results/dsir_glue.csv", env=env)
    finally:
        src.write_text(original)
        os.utime(src, (st.st_atime, st.st_mtime))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _dsir_downstream_only(planned_jobs(proc.stdout))


def test_missing_pool_source_is_refused_before_any_job(tiny_models, glue_fixture, tmp_path) -> None:
    work = copy_workflow(tmp_path / "wf")
    (work / "test_params.yaml").write_text(yaml.safe_dump(tiny_claim_params(tiny_models)))
    empty = tmp_path / "no-wikitext"
    empty.mkdir()
    env = {**workflow_env(work, glue_fixture), "WIKITEXT_DIR": str(empty)}
    proc = run_snakemake(work, "-n", "results/dsir_glue.csv", env=env)
    assert proc.returncode != 0
    assert f"pools.dsir_text: {empty.resolve()}/valid.txt not found" in proc.stdout + proc.stderr
    # a claim that does not use the pool is not blocked by it
    assert run_snakemake(work, "-n", "results/lora_ga_glue.csv", env=env).returncode == 0
