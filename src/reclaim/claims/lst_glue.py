"""Claim: Ladder Side-Tuning "saves 69% of the memory costs to fine-tune the whole network,
while other methods only save 26% of that in similar parameter usages (hence, 2.7x more
memory savings)" (Sung, Cho, Bansal, NeurIPS 2022, arXiv 2206.06522, abstract). Table 1's
per-task GB and accuracy are not verified here and are not in params.yaml.

Memory comes from the probe jobs (reclaim.probe: peak live tensor bytes of one training step
at a fixed batch), quality from the train jobs of the same methods. The LoRA baseline is the
one matched to LST's trainable parameter count (params.yaml ``lora_lst_matched``). Verdicts
per (model, task) for memory, per model for quality (mean over tasks):

  (a) saving(LST) = 1 - peak(LST) / peak(full FT) >= ``saving`` (0.69 - 0.05);
  (b) saving(LST) / saving(LoRA matched) >= ``saving_ratio`` (2.7 x 0.9);
  (c) LST - LoRA matched dev metric >= -``quality_tolerance`` points
      (reclaim.claims._memory.quality_verdict; one seed decides only a gap beyond 3x).

The probe is deterministic, so (a) and (b) have no noise term. The random-init side network
(``lst_r8_random``) is an ablation reported in the table, with no verdict of its own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reclaim.claims._common import csv_cell, headline_verdicts, verdict_config, write_csv
from reclaim.claims._memory import (
    memory_row,
    plot_memory,
    quality_rows,
    quality_verdict,
    split_runs,
    task_average,
)
from reclaim.io import write_json
from reclaim.verdicts import threshold_verdict

VERDICT_DEFAULTS = {"lst": "lst_r8", "lora": "lora_lst_matched", "full_ft": "full_ft", "saving": 0.64,
                    "saving_ratio": 2.43, "quality_tolerance": 1.0, "z": 2.0}
CSV_FIELDS = ["claim", "scale", "model", "task", "method", "optimizer", "metric", "value", "n_seeds", "seeds",
              "peak_mib", "saving_vs_full_ft", "steady_mib", "params_mib", "grads_mib", "opt_state_mib",
              "activations_mib", "trainable_params", "total_params", "metric_definition", "dtype", "batch",
              "device"]
PROBE_DEF = "peak live tensor bytes, one training step (probe)"


def saving(peak: float, full_ft_peak: float) -> float:
    """The share of full fine-tuning's peak memory a method saves (the paper's "saves 69%")."""
    return 1.0 - peak / full_ft_peak if full_ft_peak else float("nan")


def _deterministic(estimate: float, threshold: float, sentence: str, definition: str) -> dict[str, Any]:
    """A probe-derived value against its threshold (``>=``): no noise term (se = 0)."""
    out = threshold_verdict(estimate, 0.0, threshold, 1.0, ">=")
    return {"claim": sentence, "metric_definition": definition, **out}


class LstGlue:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        v = verdict_config(claim, VERDICT_DEFAULTS, where)
        steps = [(stage, body) for arm in claim.get("arms", {}).values() for st in arm for stage, body in st.items()]
        probed = {b["method"] for stage, b in steps if stage == "probe"}
        trained = {b["method"] for stage, b in steps if stage == "train"}
        for role in ("lst", "lora", "full_ft"):
            if v[role] not in probed:
                raise ValueError(f"{where}.verdict.{role}: no probe step for method {v[role]!r} "
                                 "(the memory verdicts need one)")
        for role in ("lst", "lora"):
            if v[role] not in trained:
                raise ValueError(f"{where}.verdict.{role}: method {v[role]!r} is in no train step "
                                 "(the quality verdict needs one)")
        for key in ("saving", "saving_ratio", "quality_tolerance", "z"):
            if not isinstance(v[key], (int, float)) or v[key] < 0:
                raise ValueError(f"{where}.verdict.{key}: must be a number >= 0, got {v[key]!r}")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        v = verdict_config(claim, VERDICT_DEFAULTS, claim_name)
        data = split_runs(runs)
        rows: list[dict[str, Any]] = []
        flat: dict[str, float] = {}
        verdicts: dict[str, dict[str, Any]] = {}
        mem_rows: list[dict[str, Any]] = []
        for (model, task), by_method in sorted(data.probes.items()):
            ft = by_method.get(v["full_ft"])
            for method, res in sorted(by_method.items()):
                m = memory_row(res)
                s = saving(res["peak_bytes"], ft["peak_bytes"]) if ft else float("nan")
                row = {"claim": claim_name, "scale": scale, "model": model, "task": task, "method": method,
                       "optimizer": res["optimizer"]["name"], "metric": "peak memory (MiB)",
                       "value": csv_cell(m["peak_mib"], 2), "n_seeds": 1, "seeds": res["spec"]["train_spec"]["seed"],
                       "saving_vs_full_ft": csv_cell(s, 4),
                       **{k: csv_cell(m[k], 2) for k in ("peak_mib", "steady_mib", "params_mib", "grads_mib",
                                                         "opt_state_mib", "activations_mib")},
                       "trainable_params": m["trainable_params"], "total_params": m["total_params"],
                       "metric_definition": PROBE_DEF, "dtype": m["dtype"], "batch": m["batch"],
                       "device": m["device"]}
                rows.append(row)
                mem_rows.append({**row, **m})
                flat[f"{model}/{task}/{method}/peak_mib"] = m["peak_mib"]
                if ft:
                    flat[f"{model}/{task}/{method}/saving_vs_full_ft"] = s
            lst, lora = by_method.get(v["lst"]), by_method.get(v["lora"])
            if not (ft and lst):
                continue
            batch = memory_row(lst)["batch"]
            s_lst = saving(lst["peak_bytes"], ft["peak_bytes"])
            group = verdicts.setdefault(model, {})
            group[f"a_memory_saving_{task}"] = _deterministic(
                s_lst, float(v["saving"]),
                f"1 - peak({v['lst']}) / peak({v['full_ft']}) >= {v['saving']:g} on {task} (batch {batch}; "
                "paper: 0.69)", PROBE_DEF)
            if lora:
                s_lora = saving(lora["peak_bytes"], ft["peak_bytes"])
                # a LoRA that saves nothing leaves the ratio undefined: inconclusive, not a pass
                ratio = s_lst / s_lora if s_lora > 0 else float("nan")
                verdict = _deterministic(
                    ratio, float(v["saving_ratio"]),
                    f"saving({v['lst']}) / saving({v['lora']}) >= {v['saving_ratio']:g} on {task} "
                    f"(batch {batch}; paper: 0.69 / 0.26 = 2.7)", PROBE_DEF)
                verdict.update(saving_lst=s_lst, saving_lora=s_lora,
                               trainable_lst=lst["trainable_params"], trainable_lora=lora["trainable_params"])
                group[f"b_saving_ratio_{task}"] = verdict
                flat[f"{model}/{task}/saving_ratio"] = ratio
        q_rows, quality_mean = quality_rows(claim_name, scale, data, flat)
        rows += q_rows
        for model in sorted({m for m, _ in data.quality}):
            per_task = {t: d for (m, t), d in data.quality.items() if m == model}
            if per_task and all(v["lst"] in d and v["lora"] in d for d in per_task.values()):
                verdicts.setdefault(model, {})["c_quality"] = quality_verdict(
                    task_average([d[v["lst"]] for d in per_task.values()]),
                    task_average([d[v["lora"]] for d in per_task.values()]),
                    float(v["quality_tolerance"]), float(v["z"]),
                    f"{v['lst']} - {v['lora']} >= -{v['quality_tolerance']:g} points (mean over "
                    f"{', '.join(sorted(per_task))})")
        write_csv(out_csv, CSV_FIELDS, [{k: r.get(k, "") for k in CSV_FIELDS} for r in rows])
        payload = {"claim": claim_name, "scale": scale,
                   "models": sorted({m for m, _ in data.probes} | {m for m, _ in data.quality}),
                   "tasks": sorted({t for _, t in data.probes} | {t for _, t in data.quality}), "missing_tasks": {},
                   "metrics": {k: x for k, x in flat.items() if not (isinstance(x, float) and math.isnan(x))},
                   "verdicts": verdicts, "verdict_config": v}
        write_json(out_json, payload)
        plot_memory(out_png, f"{claim_name} ({scale})", mem_rows,
                    quality_mean)
        return payload

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        rows = [{"model": key, "reproduced": next((x.get("estimate") for k, x in sorted(g.items())
                                                   if k.startswith("a_")), None),
                 "verdicts": headline_verdicts(g)} for key, g in result.get("verdicts", {}).items()]
        return {"quantity": "1 - peak(LST) / peak(full FT); paper: 0.69 (2.7x LoRA's saving)",
                "tasks": result.get("tasks", []), "paper_same_tasks": None, "paper_all_tasks": None,
                "paper_all_task_names": [], "rows": rows if result.get("metrics") else []}



AGGREGATOR = LstGlue()
