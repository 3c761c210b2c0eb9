"""The compression stage through Snakemake on tiny fixtures (the session's shared rule-all
run): the AWQ claim's chain on a tiny random Llama (packaged model -> compress -> evaluate
perplexity -> table with computed verdicts) and the PTQ/QAT claim's (train -> compress ->
evaluate accuracy) on a tiny BERT, a rerun that does nothing, a method parameter that reruns
only its own jobs, saved models that load back with transformers, and bad input refused
before any job with the key named."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from reclaim.testing import planned_jobs, run_snakemake

pytestmark = pytest.mark.slow
TARGET = "results/awq_wikitext.csv"


@pytest.fixture(scope="module")
def awq_run(all_claims_run):
    """The shared rule-all run (tests/conftest.py): the AWQ and PTQ claims on tiny fixtures."""
    work, env, _ = all_claims_run
    return work, env


def _dry_run(work, env, *overrides: str):  # type: ignore[no-untyped-def]
    """``snakemake -n`` of the AWQ target with the run's config plus ``overrides`` files."""
    files = [str(work / "test_params.yaml"), *(str(work / f) for f in overrides)]
    return run_snakemake(work, TARGET, "-n", "--configfile", *files, env=env, configfile="")


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
    # the subject's own perplexity, under the same protocol, beside every row
    assert {r["reference_perplexity"] for r in rows.values()} == {rows["fp"]["perplexity"]}
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
        paths = sorted((work / "results/compress" / method).glob("*/compress.json"))
        assert paths, method
        for rec_path in paths:
            rec = json.loads(rec_path.read_text())
            assert rec["method"] == method and rec["summary"]["n_layers"] == 14
            if method != "rtn":
                cal = rec["calibration"]
                assert cal["tokens"] == cal["n_samples"] * cal["seqlen"] and len(cal["token_sha256"]) == 64
            model = AutoModelForCausalLM.from_pretrained(rec_path.parent / "model")
            if method == "awq":  # AWQ stores Q(W s) / s: on the grid only after scaling back by s
                continue
            g = rec["params"]["group_size"]
            q = model.model.layers[1].mlp.down_proj.weight.detach()
            assert max(len(torch.unique(row)) for row in q.reshape(-1, g)) <= 2 ** rec["params"]["bits"]


def test_rerun_does_nothing_and_a_method_param_reruns_only_its_jobs(awq_run) -> None:
    work, env = awq_run
    proc = _dry_run(work, env)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    (work / "awq_grid.yaml").write_text(yaml.safe_dump({"claims": {"awq_wikitext": {"scales": {"smoke": {
        "compress": {"group_size": 16, "awq": {"n_grid": 4}}}}}}}))
    proc = _dry_run(work, env, "awq_grid.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    assert sorted(r for r, _ in jobs) == ["claim_table", "compress", "evaluate"]
    assert [wc["method"] for r, wc in jobs if r == "compress"] == ["awq"]


BAD_INPUT = [
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
]


@pytest.mark.parametrize("override,message", BAD_INPUT[:1] + BAD_INPUT[2:3])
def test_bad_input_stops_snakemake_before_any_job(awq_run, override, message) -> None:  # type: ignore[no-untyped-def]
    work, env = awq_run
    (work / "bad.yaml").write_text(yaml.safe_dump({"claims": {"awq_wikitext": override}}))
    proc = _dry_run(work, env, "bad.yaml")
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "rule compress" not in proc.stdout


@pytest.mark.parametrize("override,message", BAD_INPUT)
def test_bad_input_is_refused_by_validation_naming_the_key(awq_run, override, message) -> None:  # type: ignore[no-untyped-def]
    """The same check the Snakefile runs first (reclaim.config.validate), in process."""
    from reclaim.config import ConfigError, load_yaml, merge, validate

    work, _ = awq_run
    cfg = merge(merge(load_yaml(work / "params.yaml"), load_yaml(work / "test_params.yaml")),
                {"claims": {"awq_wikitext": override}})
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_ptq_claim_chain_train_compress_evaluate(awq_run) -> None:
    work, _ = awq_run
    rows = list(csv.DictReader(open(work / "results/ptq_whitepaper_glue.csv")))
    assert [r["arm"] for r in rows] == ["float", "w8a8_tensor", "w8a8_channel", "w4a8_ptq", "w4a8_qat"]
    assert {(r["model"], r["task"]) for r in rows} == {("tiny-bert", "sst2")}
    by = {r["arm"]: r for r in rows}
    assert (by["float"]["method"], by["w8a8_tensor"]["axis"], by["w8a8_channel"]["axis"]) == (
        "none (float)", "tensor", "channel")
    assert by["w4a8_qat"]["method"] == "qat" and by["w4a8_ptq"]["bits"] == "4" and by["w8a8_tensor"]["act_bits"] == "8"
    assert all(int(r["n_eval"]) == 24 and 0 <= float(r["accuracy"]) <= 100 for r in rows)
    assert by["w8a8_channel"]["paper_top1"] == "70.3"
    out = json.loads((work / "results/ptq_whitepaper_glue.json").read_text())
    v = out["verdicts"]["tiny-bert/sst2"]
    assert set(v) == {"a_w8_channel_within_tolerance", "b_channel_ge_tensor", "c_w4_ptq_loses", "d_qat_recovers"}
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    # the compress steps read the train step's saved model and carry activation ranges with theirs
    recs = [json.loads(p.read_text()) for m in ("ptq", "qat") for p in (work / "results/compress" / m).glob("*/compress.json")]
    assert len(recs) == 4 and all(r["base"].endswith("/adapter") for r in recs)
    assert all((work / r["base"]).parent.joinpath("result.json").is_file() for r in recs)  # base is relative to the workdir
    qat = next(r for r in recs if r["method"] == "qat")
    assert qat["calibration"]["source"] == "task"
    assert qat["record"]["qat"]["steps"] == -(-qat["calibration"]["examples"] // 16)  # one epoch of 16-example batches
    for p in (work / "results/compress").glob("*/*/compress.json"):
        if json.loads(p.read_text())["method"] in ("ptq", "qat"):
            assert (p.parent / "model" / "activation_quant.json").is_file()
