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
    assert set(mem) == {"full_ft", "fo_sgd", "zo_sgd", "zo_sign", "zo_adam"}
    # no backward: no gradients, and ZO-SGD/Sign keep no optimizer state
    assert float(mem["zo_sgd"]["grads_mib"]) == 0 == float(mem["zo_sgd"]["opt_state_mib"])
    assert float(mem["fo_sgd"]["grads_mib"]) > 0
    assert float(mem["zo_sgd"]["peak_mib"]) < float(mem["full_ft"]["peak_mib"])
    quality = {r["method"]: r for r in rows if r["metric"].startswith("dev ")}
    assert set(quality) == {"full_ft", "fo_sgd", "zo_sgd", "zo_sign", "zo_adam"}
    out = json.loads((work / "results/zo_bench_sst2.json").read_text())
    v = out["verdicts"]["tiny-bert/sst2"]
    assert set(v) == {"a_zo_sgd_about_inference", "b_zo_adam_two_copies", "c_first_order_at_least_as_accurate"}
    assert v["b_zo_adam_two_copies"]["verdict"] == "holds"  # AdamW's two moments, exactly
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    assert "prompt_vs_head" in out["skipped"]
