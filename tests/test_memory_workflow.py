"""The memory-efficient-training claims end to end on the tiny fixtures (the shared rule-all
run, tests/conftest.py): probe jobs beside train jobs, tables with both, computed verdicts."""

from __future__ import annotations

import csv
import json

import pytest

pytestmark = pytest.mark.slow


def test_lisa_claim_probes_and_trains_every_method(all_claims_run) -> None:
    work, _, _ = all_claims_run
    rows = list(csv.DictReader(open(work / "results/lisa_glue.csv")))
    methods = ["full_ft", "lora", "lora_r128", "lisa_g1", "lisa_g2"]
    mem = [r for r in rows if r["metric"] == "peak memory (MiB)"]
    quality = [r for r in rows if r["metric"].startswith("dev ")]
    assert sorted(r["method"] for r in mem) == sorted(methods) == sorted(r["method"] for r in quality)
    assert all(r["batch"] == "4x32" and r["dtype"] == "float32" and float(r["peak_mib"]) > 0 for r in mem)
    by = {r["method"]: r for r in mem}
    assert by["lisa_g1"]["optimizer"] == "lisa" and by["lora"]["optimizer"] == "adamw"
    assert int(by["lora"]["trainable_params"]) < int(by["lora"]["total_params"])
    analytic = [r for r in rows if r["scale"] == "paper (analytic)"]
    assert len(analytic) == 2 and all(r["model"] == "LLaMA-2-7B" for r in analytic)
    out = json.loads((work / "results/lisa_glue.json").read_text())
    v = out["verdicts"]
    assert set(v["tiny-bert"]) == {"a_memory_sst2", "b_quality"}
    assert set(v["paper-scale (analytic)"]) == {"c_paper_scale_memory"}
    for group in v.values():
        assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in group.values())
    a = v["tiny-bert"]["a_memory_sst2"]
    assert a["estimate"] == pytest.approx(float(by["lisa_g2"]["peak_mib"]) / float(by["lora_r128"]["peak_mib"]),
                                          rel=0.01)
    # the probe is a job of its own, separate from the train job of the same method
    recs = [json.loads(p.read_text()) for p in (work / "results/memory").glob("*/*/memory.json")]
    lisa = [r for r in recs if r["spec"]["train_spec"]["method"]["name"] == "lisa_g1"]
    assert len(lisa) == 1 and lisa[0]["optimizer"]["name"] == "lisa" and len(lisa[0]["peaks"]) == 2
    assert lisa[0]["inference_peak_bytes"] < lisa[0]["peak_bytes"]
    assert (work / "results/lisa_glue_loss.png").stat().st_size > 0


def test_zo_claim_memory_and_accuracy_verdicts(all_claims_run) -> None:
    work, _, _ = all_claims_run
    rows = list(csv.DictReader(open(work / "results/zo_bench_sst2.csv")))
    mem = {r["method"]: r for r in rows if r["metric"] == "peak memory (MiB)"}
    assert set(mem) == {"full_ft", "fo_sgd", "zo_sgd", "zo_adam"}
    # no backward: no gradients, and ZO-SGD/Sign keep no optimizer state
    assert float(mem["zo_sgd"]["grads_mib"]) == 0 == float(mem["zo_sgd"]["opt_state_mib"])
    assert float(mem["fo_sgd"]["grads_mib"]) > 0
    assert float(mem["zo_sgd"]["peak_mib"]) < float(mem["full_ft"]["peak_mib"])
    quality = {r["method"]: r for r in rows if r["metric"].startswith("dev ")}
    assert set(quality) == {"full_ft", "fo_sgd", "zo_sgd", "zo_adam"}
    out = json.loads((work / "results/zo_bench_sst2.json").read_text())
    v = out["verdicts"]["tiny-bert/sst2"]
    assert set(v) == {"a_zo_sgd_about_inference", "b_zo_adam_two_copies", "c_first_order_at_least_as_accurate"}
    assert v["b_zo_adam_two_copies"]["verdict"] == "holds"  # AdamW's two moments, exactly
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    assert "prompt_vs_head" in out["skipped"]


def test_cce_claim_measures_the_loss_op(all_claims_run) -> None:
    work, _, _ = all_claims_run
    rows = list(csv.DictReader(open(work / "results/cce_memory.csv")))
    measured = [r for r in rows if r["scale"] == "smoke"]
    assert {(r["loss"], r["pass"]) for r in measured} == {(lo, p) for lo in ("plain", "chunked")
                                                          for p in ("forward", "forward + backward")}
    assert all(r["subject"] == "tiny-llama" and r["n_tokens"] == "128" and r["chunk"] == "32" for r in measured)
    by = {(r["loss"], r["pass"]): r for r in measured}
    for p in ("forward", "forward + backward"):
        assert float(by[("chunked", p)]["extra_mib"]) < float(by[("plain", p)]["extra_mib"])
        assert float(by[("plain", p)]["measured_over_predicted"]) == pytest.approx(1.0, abs=0.01)
    assert float(by[("chunked", "forward")]["abs_delta_loss"]) <= 1e-5
    assert len([r for r in rows if r["scale"] == "paper shapes (analytic)"]) == 4
    out = json.loads((work / "results/cce_memory.json").read_text())
    v = out["verdicts"]["tiny-llama"]
    assert set(v) == {"a_memory_forward", "a_memory_forward_backward", "b_equivalence", "c_speed"}
    assert v["b_equivalence"]["verdict"] == "holds"
    assert v["c_speed"]["verdict"] == "inconclusive" and "cpu" in v["c_speed"]["reason"]  # computed from the device
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    assert (work / "results/cce_memory_loss.png").stat().st_size > 0


def test_lst_claim_memory_savings_and_quality(all_claims_run) -> None:
    work, _, _ = all_claims_run
    rows = list(csv.DictReader(open(work / "results/lst_glue.csv")))
    methods = {"full_ft", "lora", "lora_lst_matched", "lst_r8"}
    mem = {r["method"]: r for r in rows if r["metric"] == "peak memory (MiB)"}
    quality = {r["method"]: r for r in rows if r["metric"].startswith("dev ")}
    assert set(mem) == methods == set(quality)
    assert all(r["batch"] == "4x32" and r["dtype"] == "float32" for r in mem.values())
    # frozen backbone: no gradients or optimizer state for it, the same shapes whatever the init
    assert float(mem["lst_r8"]["peak_mib"]) < float(mem["lora_lst_matched"]["peak_mib"]) < \
        float(mem["full_ft"]["peak_mib"])
    assert float(mem["full_ft"]["saving_vs_full_ft"]) == 0.0
    assert int(mem["lst_r8"]["trainable_params"]) < int(mem["lst_r8"]["total_params"])
    out = json.loads((work / "results/lst_glue.json").read_text())
    v = out["verdicts"]["tiny-bert"]
    assert set(v) == {"a_memory_saving_sst2", "b_saving_ratio_sst2", "c_quality"}
    assert v["a_memory_saving_sst2"]["estimate"] == pytest.approx(
        1 - float(mem["lst_r8"]["peak_mib"]) / float(mem["full_ft"]["peak_mib"]), abs=0.01)
    assert v["b_saving_ratio_sst2"]["estimate"] == pytest.approx(
        float(mem["lst_r8"]["saving_vs_full_ft"]) / float(mem["lora_lst_matched"]["saving_vs_full_ft"]), rel=0.01)
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    # the LST train job wrote what a reload needs
    run = json.loads(next((work / "results/runs/tiny-bert/sst2/lst_r8").glob("*/seed0/result.json")).read_text())
    assert set(run["adapter_files"]) == {"adapter_config.json", "lst_side.safetensors"}
    assert (work / "results/lst_glue_loss.png").stat().st_size > 0


def test_galore_claim_both_accountings_and_full_rank_variants(all_claims_run) -> None:
    work, _, _ = all_claims_run
    rows = list(csv.DictReader(open(work / "results/galore_memory.csv")))
    probed = ["full_ft", "lora", "galore_r8", "fira_r8", "frugal_r8", "adamw8bit"]
    peak = {r["method"]: r for r in rows if r["metric"] == "peak memory (MiB)"}
    state = {r["method"]: float(r["value"]) for r in rows if r["metric"] == "optimizer state (MiB)"}
    paper = {r["method"]: float(r["value"]) for r in rows
             if r["metric"] == "optimizer state, paper accounting (MiB)"}
    quality = {r["method"] for r in rows if r["metric"].startswith("dev ")}
    assert sorted(peak) == sorted(probed) == sorted(state)
    assert quality == {"full_ft", "lora", "galore_r8", "fira_r8", "frugal_r8"}
    assert all(peak[m]["batch"] == "4x32" and float(peak[m]["peak_mib"]) > 0 for m in probed)
    assert peak["galore_r8"]["optimizer"] == "galore" and peak["adamw8bit"]["optimizer"] == "adamw8bit"
    # GaLore keeps less state than AdamW, FRUGAL no more than GaLore; 8-bit AdamW has no paper row
    assert state["frugal_r8"] <= state["galore_r8"] < state["full_ft"]
    assert "adamw8bit" not in paper and paper["galore_r8"] < paper["full_ft"]
    out = json.loads((work / "results/galore_memory.json").read_text())
    v = out["verdicts"]["tiny-bert"]
    assert set(v) == {"a_state_all_trainable_sst2", "a_state_paper_sst2", "d_frugal_state_sst2",
                      "b_quality_vs_lora", "c_fira_quality", "c_frugal_quality"}
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    assert v["d_frugal_state_sst2"]["verdict"] == "holds"
    assert v["a_state_all_trainable_sst2"]["estimate"] == pytest.approx(
        out["metrics"]["tiny-bert/sst2/state_ratio_all_trainable"])
    # the probe records the paper's accounting beside the measured peak
    recs = {r["spec"]["train_spec"]["method"]["name"]: r
            for r in (json.loads(p.read_text()) for p in (work / "results/memory").glob("*/*/memory.json"))}
    assert recs["galore_r8"]["paper_accounting"]["projected_matrices"] == 12
    assert recs["galore_r8"]["extra_state_bytes"] > 0 and recs["full_ft"]["paper_accounting"] == {}
    assert (work / "results/galore_memory_loss.png").stat().st_size > 0
