"""Low-rank compensation and GWQ through Snakemake on a tiny random Llama, in one run: the
EoRA claim's chain (packaged model -> RTN -> SVD / EoRA compensation -> perplexity -> table
with per-rank verdicts) and the GWQ claim (gradient-located 16-bit outliers), sharing the RTN job; the EoRA step's PEFT adapter reproduces its merged model
on the RTN base; a rerun does nothing; a rank larger than a layer and a compensation step
with nothing to compensate are refused before any job."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from reclaim.config import REPO_ROOT, load_yaml
from reclaim.testing import copy_workflow, run_snakemake, workflow_env

pytestmark = pytest.mark.slow
TARGETS = ("results/eora_wikitext.csv", "results/gwq_wikitext.csv")
SMOKE = {"subject": "tiny-llama", "reference": "random init (test fixture)", "seeds": [0],
         "compress": {"group_size": 16}, "calibration": {"n_samples": 2, "seqlen": 32},
         "evaluate": {"perplexity": {"seqlen": 32, "n_windows": 6}}, "resources": {"threads": 1}}


def _params(tiny_models) -> dict:  # type: ignore[no-untyped-def]
    params = load_yaml(REPO_ROOT / "params.yaml")
    params["models"]["tiny-llama"] = {"framing": "causal_lm", "local_dir": str(tiny_models["llama"])}
    eora, gwq = params["claims"]["eora_wikitext"], params["claims"]["gwq_wikitext"]
    # the tiny Llama: hidden 32, MLP 64, one KV head (k/v 16 wide): rank 8 fits every layer
    eora["scales"]["smoke"] = {**SMOKE, "arms": ["rtn_w3", "rtn_w3_svd8", "rtn_w3_eora8", "rtn_w3_lora8",
                                                 "rtn_w3_eora8_lora8"], "pretrain": {"max_steps": 3, "epochs": 10}}
    gwq["scales"]["smoke"] = {**SMOKE, "arms": ["rtn_w3", "gwq_w3"]}
    params["claims"] = {"eora_wikitext": eora, "gwq_wikitext": gwq}
    return params


@pytest.fixture(scope="module")
def lowrank_run(tmp_path_factory, tiny_models, glue_fixture):
    work = copy_workflow(tmp_path_factory.mktemp("wf_lowrank"))
    (work / "params.yaml").write_text(yaml.safe_dump(_params(tiny_models), sort_keys=False))
    env = workflow_env(work, glue_fixture)
    proc = run_snakemake(work, *TARGETS, "--cores", "2", env=env, configfile="")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, env


def _record(work, method):  # type: ignore[no-untyped-def]
    (path,) = (work / "results/compress" / method).glob("*/compress.json")
    return path, json.loads(path.read_text())


def test_eora_table_fills_rank_and_base_and_computes_per_rank_verdicts(lowrank_run) -> None:
    work, _ = lowrank_run
    rows = {r["arm"]: r for r in csv.DictReader(open(work / TARGETS[0]))}
    assert list(rows) == ["rtn_w3", "rtn_w3_svd8", "rtn_w3_eora8", "rtn_w3_lora8", "rtn_w3_eora8_lora8"]
    assert (rows["rtn_w3_eora8"]["method"], rows["rtn_w3_eora8"]["base_method"]) == ("eora", "rtn")
    for arm in ("rtn_w3_svd8", "rtn_w3_eora8"):
        assert (rows[arm]["rank"], rows[arm]["bits"], rows[arm]["group_size"]) == ("8", "3", "16")
        # codes + fp16 scale + zero, plus 16-bit factors r (out + in) / (out in) per weight
        assert float(rows[arm]["stored_bits"]) > float(rows["rtn_w3"]["stored_bits"])
    assert rows["rtn_w3_eora8"]["calibration"] == "2x32 wikitext-2 valid" and rows["rtn_w3_svd8"]["calibration"] == ""
    assert all(r["paper_perplexity"] == "" for r in rows.values())  # unverified paper numbers: none
    out = json.loads((work / "results/eora_wikitext.json").read_text())
    v = out["verdicts"]["wikitext"]
    # r32 and c_ name arms not run
    assert set(v) == {"e_rtn_w3_r8_rtn_w3_eora8", "every_rank_rtn_w3", "f_rtn_w3_r8_rtn_w3_eora8_lora8"}
    assert v["e_rtn_w3_r8_rtn_w3_eora8"]["z"] == 1.0 and v["e_rtn_w3_r8_rtn_w3_eora8"]["se"] > 0
    assert v["every_rank_rtn_w3"]["verdict"] == v["e_rtn_w3_r8_rtn_w3_eora8"]["verdict"]
    assert "e_rtn_w3_r32_rtn_w3_eora32" in out["skipped_rules"]
    assert (work / "results/eora_wikitext_loss.png").read_bytes()[:4] == b"\x89PNG"


def test_eora_record_and_its_peft_adapter_reproduce_the_merged_model(lowrank_run) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    work, _ = lowrank_run
    path, rec = _record(work, "eora")
    _, rtn = _record(work, "rtn")
    assert rec["base_compress"]["method"] == "rtn" and rec["spec"]["base"].startswith("compress/")
    assert rec["summary"]["n_layers"] == 14 and rec["record"]["adapter"]["r"] == 8
    assert all(r["output_error"] <= r["base_output_error"] + 1e-12 for r in rec["record"]["layers"].values())
    merged = AutoModelForCausalLM.from_pretrained(path.parent / "model").eval()
    base_dir = work / "results/compress/rtn" / rtn["spec"]["id"] / "model"
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), path.parent / "model/adapter").eval()
    ids = torch.arange(2, 30).unsqueeze(0)
    with torch.no_grad():
        assert torch.allclose(peft(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


def _pretrain_records(work):  # type: ignore[no-untyped-def]
    recs = [json.loads(p.read_text()) for p in (work / "results/pretrain").glob("*/pretrain.json")]
    return {r["spec"]["lora"]["init"]: r for r in recs}


def test_lora_on_the_compressed_base_starts_from_zero_or_from_the_eora_factors(lowrank_run) -> None:
    """compress -> train: both LoRA arms train r-8 factors on the RTN weights (not on the merged
    EoRA model); the compensation start equals the EoRA model before any step, the zero start
    equals RTN; the trained adapter on the RTN base reproduces the saved merged model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from reclaim.pretrain import _lora

    work, _ = lowrank_run
    rows = {r["arm"]: r for r in csv.DictReader(open(work / TARGETS[0]))}
    assert rows["rtn_w3_lora8"]["method"] == "lora r8 (zero init)"
    assert rows["rtn_w3_eora8_lora8"]["method"] == "lora r8 (from eora r8)"
    assert rows["rtn_w3_lora8"]["base_method"] == rows["rtn_w3_eora8_lora8"]["base_method"] == "rtn"
    recs = _pretrain_records(work)
    _, rtn = _record(work, "rtn")
    eora_path, _ = _record(work, "eora")
    rtn_dir = work / "results/compress/rtn" / rtn["spec"]["id"] / "model"
    for rec in recs.values():
        assert rec["steps"] == 3 and rec["spec"]["init_dir"] == f"results/compress/rtn/{rtn['spec']['id']}/model"
        assert len(rec["lora_modules"]) == 14  # q k v o gate up down, 2 blocks
        assert rec["trainable_params"] == 2 * (8 * (32 + 32) * 2 + 8 * (32 + 16) * 2 + 8 * (32 + 64) * 3)
    assert recs["compensation"]["spec"]["adapter_dir"] == str(eora_path.parent / "model/adapter").replace(
        str(work) + "/", "")
    ids = torch.arange(2, 30).unsqueeze(0)

    def logits(model):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return model.eval()(input_ids=ids).logits

    start = _lora.wrap(AutoModelForCausalLM.from_pretrained(rtn_dir), _lora.resolve({"r": 8, "init": "compensation"}),
                       str(eora_path.parent / "model/adapter"))[0]
    assert torch.allclose(logits(start), logits(AutoModelForCausalLM.from_pretrained(eora_path.parent / "model")),
                          atol=1e-4)
    zero = _lora.wrap(AutoModelForCausalLM.from_pretrained(rtn_dir), _lora.resolve({"r": 8}), None)[0]
    assert torch.allclose(logits(zero), logits(AutoModelForCausalLM.from_pretrained(rtn_dir)), atol=1e-6)
    for rec in recs.values():
        out = work / rec["model_dir"]
        trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(rtn_dir), out / "adapter")
        merged = AutoModelForCausalLM.from_pretrained(out)
        assert torch.allclose(logits(trained), logits(merged), atol=1e-4)
        assert not torch.allclose(logits(merged), logits(AutoModelForCausalLM.from_pretrained(rtn_dir)), atol=1e-4)


@pytest.mark.parametrize("lora,key,message", [
    ({"r": 8, "init": "compensation"}, "claims.eora_wikitext.arms.rtn_w3_lora8[1].pretrain.lora.init",
     "there is none"),
    ({"r": 0}, "claims.eora_wikitext.arms.rtn_w3_lora8[1].pretrain.lora", "r must be an integer >= 1"),
    ({"r": 8, "init": "svd"}, "claims.eora_wikitext.arms.rtn_w3_lora8[1].pretrain.lora", "init must be one of"),
])
def test_bad_lora_on_a_compressed_base_is_refused_naming_the_key(lora, key, message) -> None:  # type: ignore[no-untyped-def]
    from reclaim.config import ConfigError, validate

    cfg = load_yaml(REPO_ROOT / "params.yaml")
    cfg["claims"]["eora_wikitext"]["arms"]["rtn_w3_lora8"][1]["pretrain"]["lora"] = lora
    with pytest.raises(ConfigError) as err:
        validate(cfg, "params.yaml")
    assert key in str(err.value) and message in str(err.value)


def test_lora_rank_must_match_the_compensation_it_starts_from() -> None:
    from reclaim.config import ConfigError, validate

    cfg = load_yaml(REPO_ROOT / "params.yaml")
    cfg["claims"]["eora_wikitext"]["arms"]["rtn_w3_eora8_lora8"][2]["pretrain"]["lora"]["r"] = 16
    with pytest.raises(ConfigError, match=r"rtn_w3_eora8_lora8\[2\]\.pretrain\.lora\.r: 16 differs from the rank 8"):
        validate(cfg, "params.yaml")


def test_gwq_table_counts_outlier_bits_and_shares_the_rtn_job(lowrank_run) -> None:
    work, _ = lowrank_run
    rows = {r["arm"]: r for r in csv.DictReader(open(work / TARGETS[1]))}
    assert list(rows) == ["rtn_w3", "gwq_w3"]
    assert float(rows["gwq_w3"]["stored_bits"]) > float(rows["rtn_w3"]["stored_bits"])
    assert len(list((work / "results/compress/rtn").glob("*/compress.json"))) == 1  # one RTN job, both claims
    out = json.loads((work / "results/gwq_wikitext.json").read_text())
    assert "g6_gwq_w3" in out["verdicts"]["wikitext"] and "g1_gwq_w3" in out["skipped_rules"]
    _, rec = _record(work, "gwq")
    assert rec["record"]["select"] == "gradient" and "16 bits" in rec["record"]["outlier_accounting"]
    assert all(r["outliers"] >= 5 for r in rec["record"]["layers"].values())  # 1 % of >= 512 weights


def test_rerun_does_nothing(lowrank_run) -> None:
    work, env = lowrank_run
    proc = run_snakemake(work, *TARGETS, "-n", env=env, configfile="")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize("override,message", [
    ({"arms": {"rtn_w3_svd8": [{"compress": {"method": "rtn", "bits": 3}},
                               {"compress": {"method": "svd_comp", "rank": 64}},
                               {"evaluate": {"evaluator": "perplexity"}}]}},
     "claims.eora_wikitext.arms.rtn_w3_svd8[1].compress: rank 64 exceeds the "),
    ({"arms": {"rtn_w3_svd8": [{"compress": {"method": "eora", "rank": 8}}, {"evaluate": {"evaluator": "perplexity"}}]}},
     "claims.eora_wikitext.arms.rtn_w3_svd8[0].compress.method: 'eora' compensates the error of an earlier compress "
     "step"),
])
def test_bad_compensation_is_refused_before_any_job(lowrank_run, override, message) -> None:  # type: ignore[no-untyped-def]
    work, env = lowrank_run
    (work / "bad.yaml").write_text(yaml.safe_dump({"claims": {"eora_wikitext": override}}))
    proc = run_snakemake(work, TARGETS[0], "-n", env=env, configfile="bad.yaml")
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    if "rank 64" in message:
        assert "width 32 of model 'tiny-llama'" in proc.stderr and "pick a smaller rank" in proc.stderr
    assert "rule compress" not in proc.stdout
