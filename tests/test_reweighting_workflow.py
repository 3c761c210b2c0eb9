"""The loss-reweighting claim through Snakemake on tiny models: outputs with computed verdicts,
a rerun that does nothing, and one arm's ``r`` reruns that arm's jobs and the table only."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from reclaim.config import REPO_ROOT, load_yaml, merge
from reclaim.testing import (
    copy_workflow,
    planned_jobs,
    run_snakemake,
    tiny_claim_params,
    workflow_env,
)

pytestmark = pytest.mark.slow
TARGET = "results/loss_reweighting.csv"
TOY = ("uniform", "linupper", "quadratic")


@pytest.fixture(scope="module")
def rw_run(tmp_path_factory, tiny_models, glue_fixture):
    work = copy_workflow(tmp_path_factory.mktemp("wf_rw"))
    params = merge(load_yaml(REPO_ROOT / "params.yaml"), tiny_claim_params(tiny_models, tasks=["sst2"], seeds=[0]))
    # Only this claim, with the arms its verdicts read: three toy arms (a shorter toy, 2 seeds)
    # and two fine-tuning arms (1 seed), so the test stays short on a busy machine.
    claim = params["claims"]["loss_reweighting"]
    claim["arms"] = {f"toy_{s}": [{"evaluate": {"evaluator": "reweighting_toy",
                                                "params": {"strategy": s, "steps": 60}}}] for s in TOY}
    claim["arms"]["sst2_uniform"] = [{"train": {"method": "full_ft"}}]
    claim["arms"]["sst2_linupper"] = [{"train": {"method": "full_ft",
                                                 "reweighting": {"strategy": "linupper", "r": 1.0, "burn_in": 1}}}]
    lm = {"objective": "clm", "pool": "wikitext_lm", "batch_size": 4, "lr": 1.0e-3, "max_length": 32}
    claim["arms"]["lm_uniform"] = [{"pretrain": dict(lm)}]
    claim["arms"]["lm_linupper"] = [{"pretrain": {**lm, "reweighting": {"strategy": "linupper", "r": 1.0, "burn_in": 1}}}]
    claim["verdict"]["toy_step"] = 20
    claim["scales"] = {"smoke": {**claim["scales"]["smoke"], "seeds_by_arm": {
        **{f"toy_{s}": [0, 1] for s in TOY}, "lm_uniform": [0, 1], "lm_linupper": [0, 1]}}}
    params["claims"] = {"loss_reweighting": claim}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = workflow_env(work, glue_fixture)
    proc = run_snakemake(work, TARGET, "--cores", "2", env=env, configfile="")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, env


def _results(work) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(p.read_text()) for p in (work / "results/runs/tiny-bert/sst2/full_ft").glob("*/seed*/result.json")]


def test_outputs_and_computed_verdicts(rw_run) -> None:
    work, _ = rw_run
    rows = list(csv.DictReader(open(work / TARGET)))
    toy = [r for r in rows if r["part"] == "toy"]
    assert {r["arm"] for r in toy} == {f"toy_{s}" for s in TOY}
    assert all(r["n_seeds"] == "2" for r in toy) and {r["metric"] for r in toy} == {"test_loss@20", "test_loss@final"}
    tune = [r for r in rows if r["part"] == "fine-tune"]
    assert len(tune) == 2 and all(r["n_seeds"] == "1" and r["task"] == "sst2" for r in tune)
    lm = [r for r in rows if r["part"] == "lm"]  # continued causal-LM pretraining on WikiText chunks
    assert {(r["arm"], r["metric"]) for r in lm} == {
        (a, m) for a in ("lm_uniform", "lm_linupper") for m in ("heldout_perplexity", "heldout_perplexity_before")}
    assert all(r["n_seeds"] == "2" and r["model"] == "tiny-gpt2" and float(r["mean"]) > 1 for r in lm)
    assert {r["strategy"] for r in lm} == {"linupper", "uniform (no reweighting)"}
    out = json.loads((work / "results/loss_reweighting.json").read_text())
    assert set(out["verdicts"]) == {"toy", "tiny-bert", "lm"}
    assert len(out["verdicts"]["lm"]["d_lm_perplexity_vs_uniform"]["per_seed_differences"]) == 2
    for group in out["verdicts"].values():
        for v in group.values():
            assert v["verdict"] in ("holds", "does not hold", "inconclusive") and v["rule"]
    assert (work / "results/loss_reweighting_loss.png").read_bytes()[:4] == b"\x89PNG"
    recorded = sorted((r["reweighting"] or {}).get("strategy", "none") for r in _results(work))
    assert recorded == ["linupper", "none"]


def test_rerun_does_nothing(rw_run) -> None:
    work, env = rw_run
    proc = run_snakemake(work, "-n", TARGET, env=env, configfile="")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


def _dry_run_with(work, env, edit) -> list[tuple[str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    p = work / "params.yaml"
    original = p.read_text()
    params = yaml.safe_load(original)
    edit(params["claims"]["loss_reweighting"]["arms"])
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = run_snakemake(work, "-n", TARGET, env=env, configfile="")
    finally:
        p.write_text(original)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return planned_jobs(proc.stdout)


def test_one_arms_r_reruns_only_that_arms_jobs(rw_run) -> None:
    work, env = rw_run
    done = {r["spec"]["cfg"] for r in _results(work)}
    jobs = _dry_run_with(work, env, lambda arms: arms["sst2_linupper"][0]["train"]["reweighting"].update(r=2.0))
    assert {rule for rule, _ in jobs} == {"train", "claim_table"}
    train = [w for rule, w in jobs if rule == "train"]
    assert len(train) == 1 and train[0]["cfg"] not in done  # a new identity, the other arms' jobs untouched
    jobs = _dry_run_with(work, env, lambda arms: arms["toy_quadratic"][0]["evaluate"]["params"].update(r=2.0))
    assert {rule for rule, _ in jobs} == {"evaluate", "claim_table"}
    assert len([1 for rule, _ in jobs if rule == "evaluate"]) == 2  # toy_quadratic x 2 seeds
