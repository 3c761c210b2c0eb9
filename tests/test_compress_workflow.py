"""The compression stage through Snakemake on a tiny random Llama: the AWQ claim's chain
(packaged model -> compress -> evaluate perplexity -> table with computed verdicts), a rerun
that does nothing, a method parameter that reruns only its own jobs, saved models that load
back with transformers, and bad input refused before any job with the key named."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from reclaim.config import REPO_ROOT, load_yaml
from reclaim.testing import copy_workflow, planned_jobs, run_snakemake, workflow_env

pytestmark = pytest.mark.slow
TARGET = "results/awq_wikitext.csv"


def _params(tiny_models) -> dict:  # type: ignore[no-untyped-def]
    params = load_yaml(REPO_ROOT / "params.yaml")
    params["models"]["tiny-llama"] = {"framing": "causal_lm", "local_dir": str(tiny_models["llama"])}
    claim = params["claims"]["awq_wikitext"]
    # the tiny Llama: hidden 32, MLP 64, two heads sharing one KV head (v_proj 16 wide)
    claim["scales"]["smoke"] = {
        "subject": "tiny-llama", "reference": "random init (test fixture)", "arms": ["fp", "rtn_w3", "gptq_w3", "awq_w3"],
        "seeds": [0], "compress": {"group_size": 16, "awq": {"n_grid": 5}},
        "calibration": {"n_samples": 2, "seqlen": 32}, "evaluate": {"perplexity": {"seqlen": 32, "n_windows": 6}},
        "resources": {"threads": 1}}
    params["claims"] = {"awq_wikitext": claim}
    return params


@pytest.fixture(scope="module")
def awq_run(tmp_path_factory, tiny_models, glue_fixture):
    work = copy_workflow(tmp_path_factory.mktemp("wf_awq"))
    (work / "params.yaml").write_text(yaml.safe_dump(_params(tiny_models), sort_keys=False))
    env = workflow_env(work, glue_fixture)
    proc = run_snakemake(work, TARGET, "--cores", "2", env=env, configfile="")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, env


def test_table_verdicts_and_protocol(awq_run) -> None:
    work, _ = awq_run
    rows = {r["arm"]: r for r in csv.DictReader(open(work / TARGET))}
    assert list(rows) == ["fp", "rtn_w3", "gptq_w3", "awq_w3"]
    assert rows["fp"]["method"] == "none (reference)" and rows["awq_w3"]["method"] == "awq"
    for arm in ("rtn_w3", "gptq_w3", "awq_w3"):
        r = rows[arm]
        assert (r["bits"], r["group_size"]) == ("3", "16")
        assert float(r["stored_bits"]) == pytest.approx(3 + 19 / 16, abs=1e-3)  # codes + fp16 scale + zero
    assert rows["rtn_w3"]["calibration"] == "" and rows["awq_w3"]["calibration"] == "2x32 wikitext-2 valid"
    assert all(r["seqlen"] == "32" and r["n_windows"] == "6" and r["reference"] == "random init (test fixture)"
               for r in rows.values())
    assert all(float(r["perplexity"]) > 1 and float(r["perplexity_se"]) > 0 for r in rows.values())
    assert rows["fp"]["paper_perplexity"] == "5.47"
    out = json.loads((work / "results/awq_wikitext.json").read_text())
    v = out["verdicts"]["wikitext"]
    assert {k.split("_")[0] for k in v} == {"a3", "b3", "c3", "d3"}
    assert set(out["skipped_rules"]) == {"a4_awq_w4", "c4_awq_w4"}
    for key in ("a3_awq_w3", "b3_gptq_w3", "c3_awq_w3", "d3_awq_w3"):
        assert v[key]["verdict"] in ("holds", "does not hold", "inconclusive") and v[key]["se"] > 0
    assert v["d3_awq_w3"]["paper_estimate"] == pytest.approx((6.66 - 6.24) / (6.66 - 5.47))
    ppl = {a: float(rows[a]["perplexity"]) for a in rows}
    assert v["a3_awq_w3"]["estimate"] == pytest.approx(ppl["awq_w3"] - ppl["rtn_w3"], abs=2e-3)
    assert "not run at scale smoke" in out["skipped_rules"]["a4_awq_w4"]
    assert (work / "results/awq_wikitext_loss.png").read_bytes()[:4] == b"\x89PNG"


def test_compressed_models_load_back_on_their_grid(awq_run) -> None:
    from transformers import AutoModelForCausalLM

    work, _ = awq_run
    for method in ("rtn", "gptq", "awq"):
        (rec_path,) = (work / "results/compress" / method).glob("*/compress.json")
        rec = json.loads(rec_path.read_text())
        assert rec["method"] == method and rec["summary"]["n_layers"] == 14
        if method != "rtn":
            assert rec["calibration"]["tokens"] == 64 and len(rec["calibration"]["token_sha256"]) == 64
        model = AutoModelForCausalLM.from_pretrained(rec_path.parent / "model")
        q = model.model.layers[1].mlp.down_proj.weight.detach()
        if method == "awq":  # AWQ stores Q(W s) / s: on the grid after scaling back by s
            continue
        assert max(len(torch.unique(g)) for g in q.reshape(-1, 16)) <= 8


def test_rerun_does_nothing_and_a_method_param_reruns_only_its_jobs(awq_run) -> None:
    work, env = awq_run
    proc = run_snakemake(work, TARGET, "-n", env=env, configfile="")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    (work / "awq_grid.yaml").write_text(yaml.safe_dump({"claims": {"awq_wikitext": {"scales": {"smoke": {
        "compress": {"group_size": 16, "awq": {"n_grid": 4}}}}}}}))
    proc = run_snakemake(work, TARGET, "-n", env=env, configfile="awq_grid.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    assert sorted(r for r, _ in jobs) == ["claim_table", "compress", "evaluate"]
    assert [wc["method"] for r, wc in jobs if r == "compress"] == ["awq"]


@pytest.mark.parametrize("override,message", [
    ({"arms": {"rtn_w3": [{"compress": {"method": "rtn", "bits": 17}}, {"evaluate": {"evaluator": "perplexity"}}]}},
     "claims.awq_wikitext.arms.rtn_w3[0].compress (at scale smoke): bits must be an integer in [1, 16], got 17"),
    ({"arms": {"rtn_w3": [{"compress": {"method": "rtn", "bits": 0}}, {"evaluate": {"evaluator": "perplexity"}}]}},
     "bits must be an integer in [1, 16], got 0"),
    ({"scales": {"smoke": {"compress": {"group_size": 24}}}},
     "claims.awq_wikitext.arms.rtn_w3[0].compress: group_size 24 does not divide the attention output width 32 of model "
     "'tiny-llama'"),
    ({"arms": {"rtn_w3": [{"compress": {"method": "rtm", "bits": 3}}, {"evaluate": {"evaluator": "perplexity"}}]}},
     "claims.awq_wikitext.arms.rtn_w3[0].compress.method: unknown compression method 'rtm'"),
    ({"scales": {"smoke": {"subject": "no-such-model"}}},
     "claims.awq_wikitext.scales.smoke.subject: unknown model 'no-such-model'"),
    ({"scales": {"smoke": {"calibration": {"split": "test"}}}},
     "claims.awq_wikitext.scales.smoke.calibration.split: 'test' is not one of"),
])
def test_bad_input_is_refused_before_any_job(awq_run, override, message) -> None:  # type: ignore[no-untyped-def]
    work, env = awq_run
    (work / "bad.yaml").write_text(yaml.safe_dump({"claims": {"awq_wikitext": override}}))
    proc = run_snakemake(work, TARGET, "-n", env=env, configfile="bad.yaml")
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "rule compress" not in proc.stdout
