"""The pruning claims through Snakemake on a tiny random Llama, in one run: the Wanda claim
(magnitude / Wanda / SparseGPT at 50% and 2:4 beside the dense model) and the FLAP claim
(FLAP / Wanda-sp / magnitude-sp at 20% of MLP channels), tables with computed verdicts, pruned
models that load back with their sparsity (and FLAP's compensation bias), a rerun that does
nothing, and bad sparsity / pattern input refused before any job with the key named."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from reclaim.config import REPO_ROOT, load_yaml
from reclaim.testing import copy_workflow, run_snakemake, workflow_env

pytestmark = pytest.mark.slow
WANDA, FLAP = "results/wanda_wikitext.csv", "results/flap_wikitext.csv"
TINY = {"seeds": [0], "calibration": {"n_samples": 2, "seqlen": 32},
        "evaluate": {"perplexity": {"seqlen": 32, "n_windows": 6}}, "resources": {"threads": 1}}


def _params(tiny_models) -> dict:  # type: ignore[no-untyped-def]
    params = load_yaml(REPO_ROOT / "params.yaml")
    params["models"]["tiny-llama"] = {"framing": "causal_lm", "local_dir": str(tiny_models["llama"])}
    claims = {name: params["claims"][name] for name in ("wanda_wikitext", "flap_wikitext")}
    # the tiny Llama: hidden 32, MLP 64, two query heads sharing one KV head
    # a subset of the arms keeps the run short: every method and both patterns, one shared dense
    claims["wanda_wikitext"]["scales"]["smoke"] = {
        "subject": "tiny-llama", "reference": "random init (test fixture)",
        "arms": ["dense", "magnitude_50", "wanda_50", "sparsegpt_50", "sparsegpt_24"], **TINY}
    claims["flap_wikitext"]["scales"]["smoke"] = {
        "subject": "tiny-llama", "reference": "random init (test fixture)", "arms": ["dense", "flap_20", "flap_am_20", "wanda_sp_20"],
        **TINY}
    params["claims"] = claims
    return params


@pytest.fixture(scope="module")
def prune_run(tmp_path_factory, tiny_models, glue_fixture):
    work = copy_workflow(tmp_path_factory.mktemp("wf_prune"))
    (work / "params.yaml").write_text(yaml.safe_dump(_params(tiny_models), sort_keys=False))
    env = workflow_env(work, glue_fixture)
    proc = run_snakemake(work, WANDA, FLAP, "--cores", "2", env=env, configfile="")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, env


def _rows(work, target: str) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    return {r["arm"]: r for r in csv.DictReader(open(work / target))}


def test_wanda_table_and_verdicts(prune_run) -> None:  # type: ignore[no-untyped-def]
    work, _ = prune_run
    rows = _rows(work, WANDA)
    assert list(rows) == ["dense", "magnitude_50", "wanda_50", "sparsegpt_50", "sparsegpt_24"]
    assert rows["dense"]["method"] == "none (reference)" and rows["dense"]["paper_perplexity"] == "5.12"
    for arm, r in rows.items():
        assert r["seqlen"] == "32" and r["n_windows"] == "6" and float(r["perplexity"]) > 1
        if arm != "dense":
            assert r["method"] == arm.rsplit("_", 1)[0]
            assert r["pattern"] == ("2:4" if arm.endswith("24") else "unstructured")
            assert float(r["sparsity"]) == 0.5 and float(r["achieved_sparsity"]) == 0.5
    assert rows["magnitude_50"]["calibration"] == "" and rows["sparsegpt_24"]["calibration"] == "2x32 wikitext-2 valid"
    out = json.loads((work / "results/wanda_wikitext.json").read_text())
    v = out["verdicts"]["wikitext"]
    assert set(v) == {"a50_magnitude_50", "b50_magnitude_50", "c50_wanda_50"}
    assert set(out["skipped_rules"]) == {"a24_magnitude_24", "b24_magnitude_24", "c24_wanda_24"}
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    ppl = {a: float(r["perplexity"]) for a, r in rows.items()}
    assert v["a50_magnitude_50"]["estimate"] == pytest.approx(ppl["magnitude_50"] / ppl["wanda_50"], rel=1e-3)
    assert v["c50_wanda_50"]["paper_estimate"] == pytest.approx(abs(torch.log(torch.tensor(6.42 / 6.51)).item()))
    assert (work / "results/wanda_wikitext_loss.png").read_bytes()[:4] == b"\x89PNG"


def test_flap_table_says_what_was_pruned(prune_run) -> None:  # type: ignore[no-untyped-def]
    work, _ = prune_run
    rows = _rows(work, FLAP)
    assert list(rows) == ["dense", "flap_20", "flap_am_20", "wanda_sp_20"]
    am = rows.pop("flap_am_20")  # AL-AM: KV groups of the tiny Llama's GQA ranked with MLP channels
    assert "attention KV groups (2 query heads + 1 KV head each" in am["scope"], am["scope"]
    for arm in ("flap_20", "wanda_sp_20"):
        r = rows[arm]
        assert float(r["sparsity"]) == 0.2 and abs(float(r["achieved_sparsity"]) - 0.2) < 0.02
        assert "MLP channels only" in r["scope"] and "2 query heads share 1 KV heads" in r["scope"]
    assert "bias compensation" in rows["flap_20"]["scope"] and "no compensation" in rows["wanda_sp_20"]["scope"]
    out = json.loads((work / "results/flap_wikitext.json").read_text())
    assert set(out["verdicts"]["wikitext"]) == {"f20_flap_20", "g20_flap_20", "f20_flap_am_20", "g20_flap_am_20"}
    # the 30/50% arms are not run at smoke
    assert set(out["skipped_rules"]) == {"f30_flap_30", "g30_flap_30", "f50_flap_50", "g50_flap_50",
                                         *(f"{r}{s}_flap_am_{s}" for r in "fg" for s in (30, 50))}
    g = out["verdicts"]["wikitext"]["g20_flap_20"]
    assert g["paper_estimate"] == pytest.approx((22.12 - 14.62) / (22.12 - 12.62))
    assert (work / "results/flap_wikitext_loss.png").read_bytes()[:4] == b"\x89PNG"


def test_pruned_models_load_back_pruned(prune_run) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    work, _ = prune_run
    for method in ("magnitude", "wanda", "sparsegpt"):
        for rec_path in (work / "results/compress" / method).glob("*/compress.json"):
            rec = json.loads(rec_path.read_text())
            assert rec["summary"]["n_layers"] == 14 and rec["summary"]["mean_sparsity"] == 0.5
            model = AutoModelForCausalLM.from_pretrained(rec_path.parent / "model")
            w = model.model.layers[1].mlp.down_proj.weight.detach()
            if rec["params"]["pattern"] == "2:4":
                assert torch.all((w != 0).reshape(w.shape[0], -1, 4).sum(dim=-1) == 2)
            else:
                assert float((w == 0).float().mean()) == 0.5
    recs = {json.loads(r.read_text())["params"].get("modules", "mlp"): r
             for r in (work / "results/compress/flap").glob("*/compress.json")}
    assert set(recs) == {"mlp", "attention+mlp"}
    am = AutoModelForCausalLM.from_pretrained(recs["attention+mlp"].parent / "model")
    assert am.config.mlp_bias and am.config.attention_bias  # o_proj's compensation bias reloads
    rec_path = recs["mlp"]
    model = AutoModelForCausalLM.from_pretrained(rec_path.parent / "model")
    assert model.config.mlp_bias
    mlp = model.model.layers[0].mlp
    dead = (mlp.down_proj.weight == 0).all(dim=0)
    assert dead.any() and torch.all(mlp.up_proj.weight[dead] == 0) and mlp.down_proj.bias.abs().sum() > 0


def test_rerun_does_nothing(prune_run) -> None:  # type: ignore[no-untyped-def]
    work, env = prune_run
    proc = run_snakemake(work, WANDA, FLAP, "-n", env=env, configfile="")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize("claim,arm,step,message", [
    ("wanda_wikitext", "wanda_50", {"method": "wanda", "sparsity": 1.0},
     "claims.wanda_wikitext.arms.wanda_50[0].compress (at scale smoke): sparsity must be a number in [0, 1), got 1.0"),
    ("wanda_wikitext", "magnitude_50", {"method": "magnitude", "sparsity": -0.1},
     "claims.wanda_wikitext.arms.magnitude_50[0].compress (at scale smoke): sparsity must be a number in [0, 1), "
     "got -0.1"),
    ("wanda_wikitext", "sparsegpt_24", {"method": "sparsegpt", "pattern": "4:2"},
     "claims.wanda_wikitext.arms.sparsegpt_24[0].compress (at scale smoke): pattern must be 'unstructured' or 'N:M'"),
    ("wanda_wikitext", "sparsegpt_24", {"method": "wanda", "pattern": "3:6"},
     "claims.wanda_wikitext.arms.sparsegpt_24[0].compress: pattern 3:6 needs input widths divisible by 6, but the "),
    ("flap_wikitext", "flap_20", {"method": "flap", "sparsity": 1.0},
     "claims.flap_wikitext.arms.flap_20[0].compress (at scale smoke): sparsity must be a number in [0, 1), got 1.0"),
])
def test_bad_input_is_refused_before_any_job(prune_run, claim, arm, step, message) -> None:  # type: ignore[no-untyped-def]
    work, env = prune_run
    bad = {"claims": {claim: {"arms": {arm: [{"compress": step}, {"evaluate": {"evaluator": "perplexity"}}]}}}}
    (work / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = run_snakemake(work, WANDA, FLAP, "-n", env=env, configfile="bad.yaml")
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "rule compress" not in proc.stdout
