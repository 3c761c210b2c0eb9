"""Claim: zeroth-order fine-tuning needs about the memory of inference, and trades accuracy
for it (Zhang et al., "Revisiting Zeroth-Order Optimization for Memory-Efficient LLM
Fine-Tuning: A Benchmark", ICML 2024, arXiv 2402.11592, abstract and Sec. 4; MeZO, Malladi
et al., arXiv 2305.17333). ZO-Bench's accuracy and memory tables are not verified here and
are not in params.yaml; the verdicts are the benchmark's stated shapes.

Memory from the probe jobs (peak live tensor bytes of one step at a fixed batch; the same
record carries the peak of one no-grad forward on that batch), quality from the train jobs.
Forward-Grad (Sec. 3: an exact jvp directional derivative, reclaim.optim.forward_grad) is
probed and trained beside them: rows in the table, no verdict of its own.

  (a) peak(ZO-SGD) / inference peak <= ``inference_ratio`` (two forwards and one regenerated
      direction tensor at a time: no activations kept, no gradient buffers);
  (b) peak(ZO-Adam) - peak(ZO-SGD) = 2 parameter copies (its AdamW moments), within
      ``copies_tolerance`` copies;
  (c) first-order is at least as accurate: FO-SGD - ZO-SGD >= -tolerance points
      (reclaim.claims._memory.quality_verdict; one seed decides only a gap beyond 3x).

  (d) task alignment (ZO-Bench's finding, MeZO's prompts): the same model posed as label words
      (``prompt_model``, framing ``causal_lm``) is at least as accurate under ZO-SGD as posed to
      a fresh classification head (``head_model``, framing ``causal_lm_head``): prompt - head >=
      -tolerance points per task; the first-order gap is reported beside it. A scale runs the
      ablation only when its models include both (small, on SmolLM2); the JSON lists it under
      ``skipped`` otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.claims._common import csv_cell, headline_verdicts, verdict_config, write_csv
from reclaim.claims._memory import (
    main_metric,
    memory_row,
    plot_memory,
    quality_rows,
    quality_verdict,
    ratio_verdict,
    split_runs,
)
from reclaim.io import write_json
from reclaim.verdicts import threshold_verdict

VERDICT_DEFAULTS = {"zo_sgd": "zo_sgd", "zo_adam": "zo_adam", "fo_sgd": "fo_sgd", "inference_ratio": 1.15,
                    "copies_tolerance": 0.1, "quality_tolerance": 1.0, "z": 2.0, "prompt_model": None,
                    "head_model": None}
CSV_FIELDS = ["claim", "scale", "model", "task", "method", "optimizer", "metric", "value", "n_seeds", "seeds",
              "peak_mib", "inference_mib", "peak_over_inference", "params_mib", "grads_mib", "opt_state_mib",
              "activations_mib", "trainable_params", "steps", "metric_definition", "dtype", "batch", "device"]


class ZOBenchSST2:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        v = verdict_config(claim, VERDICT_DEFAULTS, where)
        probed = {b["method"] for steps in claim.get("arms", {}).values() for st in steps
                  for stage, b in st.items() if stage == "probe"}
        trained = {b["method"] for steps in claim.get("arms", {}).values() for st in steps
                   for stage, b in st.items() if stage == "train"}
        for role in ("zo_sgd", "zo_adam"):
            if v[role] not in probed:
                raise ValueError(f"{where}.verdict.{role}: no probe step for method {v[role]!r}")
        for role in ("zo_sgd", "fo_sgd"):
            if v[role] not in trained:
                raise ValueError(f"{where}.verdict.{role}: no train step for method {v[role]!r}")
        if bool(v["prompt_model"]) != bool(v["head_model"]) or v["prompt_model"] and v["prompt_model"] == v["head_model"]:
            raise ValueError(f"{where}.verdict: prompt_model and head_model name two models (one weights, two "
                             f"framings) or neither, got {v['prompt_model']!r} and {v['head_model']!r}")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        v = verdict_config(claim, VERDICT_DEFAULTS, claim_name)
        data = split_runs(runs)
        rows: list[dict[str, Any]] = []
        mem_rows: list[dict[str, Any]] = []
        flat: dict[str, float] = {}
        verdicts: dict[str, dict[str, Any]] = {}
        for (model, task), by in sorted(data.probes.items()):
            for method, res in by.items():
                m = memory_row(res)
                row = {"claim": claim_name, "scale": scale, "model": model, "task": task, "method": method,
                       "optimizer": res["optimizer"]["name"], "metric": "peak memory (MiB)",
                       "value": csv_cell(m["peak_mib"], 2), "n_seeds": 1, "seeds": res["spec"]["train_spec"]["seed"],
                       "peak_over_inference": csv_cell(res["peak_over_inference"], 3),
                       **{k: csv_cell(m[k], 2) for k in ("peak_mib", "inference_mib", "params_mib", "grads_mib",
                                                         "opt_state_mib", "activations_mib")},
                       "trainable_params": m["trainable_params"],
                       "metric_definition": "peak live tensor bytes, one training step (probe)",
                       "dtype": m["dtype"], "batch": m["batch"], "device": m["device"]}
                rows.append(row)
                mem_rows.append({**row, **m})
                flat[f"{model}/{task}/{method}/peak_mib"] = m["peak_mib"]
            group = verdicts.setdefault(f"{model}/{task}", {})
            sgd, adam = by.get(v["zo_sgd"]), by.get(v["zo_adam"])
            if sgd:
                group["a_zo_sgd_about_inference"] = ratio_verdict(
                    sgd["peak_bytes"], sgd["inference_peak_bytes"], float(v["inference_ratio"]),
                    f"peak({v['zo_sgd']}) / inference peak <= {v['inference_ratio']:g}",
                    "peak live tensor bytes (probe) over one no-grad forward on the same batch")
            if sgd and adam:
                copies = (adam["peak_bytes"] - sgd["peak_bytes"]) / sgd["param_bytes"]
                out = threshold_verdict(abs(copies - 2.0), 0.0, float(v["copies_tolerance"]), 1.0, "<=")
                group["b_zo_adam_two_copies"] = {
                    "claim": f"peak({v['zo_adam']}) - peak({v['zo_sgd']}) = 2 parameter copies "
                             f"(+/- {v['copies_tolerance']:g})",
                    "copies": copies, **out, "metric_definition": "peak difference / parameter bytes"}
        q_rows, quality_mean = quality_rows(claim_name, scale, data, flat)
        rows += q_rows
        for (model, task), by_method in sorted(data.quality.items()):
            if v["fo_sgd"] in by_method and v["zo_sgd"] in by_method:
                verdicts.setdefault(f"{model}/{task}", {})["c_first_order_at_least_as_accurate"] = quality_verdict(
                    by_method[v["fo_sgd"]], by_method[v["zo_sgd"]], float(v["quality_tolerance"]), float(v["z"]),
                    f"{v['fo_sgd']} - {v['zo_sgd']} >= -{v['quality_tolerance']:g} points")
        skipped = {}
        pm, hm = v["prompt_model"], v["head_model"]
        pairs = [t for (m, t) in data.quality if m == pm and (hm, t) in data.quality] if pm and hm else []
        if not pairs:
            skipped["prompt_vs_head"] = ("this scale does not train one model in both framings (verdict.prompt_model "
                                         "and head_model among the scale's models)")
        for task in sorted(pairs):
            prompt, head = data.quality[(pm, task)], data.quality[(hm, task)]
            for method in sorted(set(prompt) & set(head)):
                seeds = sorted(set(prompt[method]) & set(head[method]))
                flat[f"{pm}/{task}/{method}/prompt_minus_head"] = (
                    sum(main_metric(prompt[method][s])[1] - main_metric(head[method][s])[1] for s in seeds) / len(seeds))
            if v["zo_sgd"] in prompt and v["zo_sgd"] in head:
                verdicts.setdefault(f"{pm}/{task}", {})["d_prompt_at_least_head_under_zo"] = quality_verdict(
                    prompt[v["zo_sgd"]], head[v["zo_sgd"]], float(v["quality_tolerance"]), float(v["z"]),
                    f"{v['zo_sgd']}: {pm} as label words - as a classification head ({hm}) >= "
                    f"-{v['quality_tolerance']:g} points")
        write_csv(out_csv, CSV_FIELDS, [{k: r.get(k, "") for k in CSV_FIELDS} for r in rows])
        payload = {"claim": claim_name, "scale": scale,
                   "models": sorted({m for m, _ in data.probes} | {m for m, _ in data.quality}),
                   "tasks": sorted({t for _, t in data.probes} | {t for _, t in data.quality}), "missing_tasks": {},
                   "metrics": flat, "verdicts": verdicts, "verdict_config": v, "skipped": skipped}
        write_json(out_json, payload)
        plot_memory(out_png, f"{claim_name} ({scale})", mem_rows, quality_mean)
        return payload

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        rows = [{"model": key, "reproduced": (g.get("a_zo_sgd_about_inference") or {}).get("estimate"),
                 "verdicts": headline_verdicts(g)} for key, g in result.get("verdicts", {}).items()]
        return {"quantity": "peak(ZO-SGD) / inference peak; claim: about 1 (<= 1.15)",
                "tasks": result.get("tasks", []), "paper_same_tasks": None, "paper_all_tasks": None,
                "paper_all_task_names": [], "rows": rows if result.get("metrics") else []}


AGGREGATOR = ZOBenchSST2()
