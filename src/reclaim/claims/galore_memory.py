"""Claim: GaLore "reduces memory usage by up to 65.5% in optimizer states" (Zhao et al.,
arXiv 2403.03507, abstract) at the quality of LoRA, and its full-rank successors Fira (arXiv
2410.01623) and FRUGAL (arXiv 2411.07837) train better at the same optimizer-state memory.
The papers' tables are not verified here and are not in params.yaml; the 65.5 % is the
abstract's.

Memory comes from the probe jobs (reclaim.probe), quality from the train jobs. Verdicts:

  (a) optimizer-state ratio GaLore / AdamW (full fine-tuning) against the abstract's 1 - 0.655
      with the notes' template (holds <= 0.345 x 1.10, does not hold > 0.345 x 1.25 or >= 1),
      per (model, task), under two accountings: *all-trainable* (every trainable parameter's
      optimizer state + GaLore's projectors, fp32, as measured: the embeddings GaLore leaves on
      AdamW are in it) and *paper* (GaLore Tables 2/4: bf16 states of the projected matrices
      only, against AdamW's bf16 states of all parameters). When they disagree the verdicts
      say so: the difference is what the paper's accounting leaves out;
  (b) GaLore - LoRA dev metric >= -``quality_tolerance`` (mean over tasks, per model);
  (c) Fira - GaLore and FRUGAL - GaLore >= -``quality_tolerance`` (full-rank updates at
      GaLore's state memory should not lose quality);
  (d) FRUGAL's optimizer state (+ projector or column indices) <= GaLore's, per (model, task).

8-bit AdamW is probed beside them: its state ratio to AdamW is a row of the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.claims._common import csv_cell, headline_verdicts, verdict_config, write_csv
from reclaim.claims._memory import (
    MIB,
    adamw_paper_accounting,
    memory_row,
    plot_memory,
    quality_rows,
    quality_verdict,
    ratio_verdict,
    split_runs,
    state_bytes_measured,
    task_average,
    template_ratio_verdict,
)
from reclaim.io import write_json

VERDICT_DEFAULTS = {"galore": "galore_r8", "fira": "fira_r8", "frugal": "frugal_r8", "adamw": "full_ft",
                    "lora": "lora", "state_ratio": 0.345, "holds_factor": 1.10, "fails_factor": 1.25,
                    "quality_tolerance": 0.5, "z": 2.0}
ROLES = ("galore", "fira", "frugal", "adamw", "lora")
PROBED = ("galore", "frugal", "adamw")  # the memory verdicts read these roles' probes
CSV_FIELDS = ["claim", "scale", "model", "task", "method", "optimizer", "metric", "value", "n_seeds", "seeds",
              "peak_mib", "steady_mib", "params_mib", "grads_mib", "opt_state_mib", "activations_mib",
              "trainable_params", "total_params", "metric_definition", "dtype", "batch", "device"]
ALL_TRAINABLE = "all-trainable: optimizer state of every trainable parameter + projectors, as measured (probe)"


def paper_accounting(res: dict[str, Any]) -> dict[str, Any] | None:
    """The probe's paper-style record, or AdamW's estimate for a method on the default
    optimizer; None for methods whose paper counts no such estimate (8-bit AdamW)."""
    if res.get("paper_accounting"):
        return res["paper_accounting"]
    if res["optimizer"]["name"] == "adamw":
        return adamw_paper_accounting(res)
    return None


class GaloreMemory:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        v = verdict_config(claim, VERDICT_DEFAULTS, where)
        steps = [st for steps in claim.get("arms", {}).values() for st in steps]
        trained = {body["method"] for st in steps for stage, body in st.items() if stage == "train"}
        probed = {body["method"] for st in steps for stage, body in st.items() if stage == "probe"}
        for role in ROLES:
            if v[role] not in trained:
                raise ValueError(f"{where}.verdict.{role}: method {v[role]!r} is trained in none of the claim's arms")
        for role in PROBED:
            if v[role] not in probed:
                raise ValueError(f"{where}.arms: no probe step for {v[role]!r} (the memory verdicts need one)")
        if not 0 < float(v["state_ratio"]) < 1:
            raise ValueError(f"{where}.verdict.state_ratio: must be in (0, 1), got {v['state_ratio']}")
        if not 1 <= float(v["holds_factor"]) <= float(v["fails_factor"]):
            raise ValueError(f"{where}.verdict: need 1 <= holds_factor <= fails_factor, got "
                             f"{v['holds_factor']} and {v['fails_factor']}")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        v = verdict_config(claim, VERDICT_DEFAULTS, claim_name)
        data = split_runs(runs)
        rows: list[dict[str, Any]] = []
        flat: dict[str, float] = {}
        verdicts: dict[str, dict[str, Any]] = {}
        mem_rows: list[dict[str, Any]] = []
        for (model, task), by_method in sorted(data.probes.items()):
            for method, res in by_method.items():
                m = memory_row(res)
                base = {"claim": claim_name, "scale": scale, "model": model, "task": task, "method": method,
                        "optimizer": res["optimizer"]["name"], "n_seeds": 1, "seeds": res["spec"]["train_spec"]["seed"],
                        "trainable_params": m["trainable_params"], "total_params": m["total_params"],
                        "dtype": m["dtype"], "batch": m["batch"], "device": m["device"]}
                comps = {k: csv_cell(m[k], 2) for k in ("peak_mib", "steady_mib", "params_mib", "grads_mib",
                                                         "opt_state_mib", "activations_mib")}
                row = {**base, **comps, "metric": "peak memory (MiB)", "value": csv_cell(m["peak_mib"], 2),
                       "metric_definition": "peak live tensor bytes, one training step (probe)"}
                rows.append(row)
                mem_rows.append({**row, **m})
                state = state_bytes_measured(res)
                rows.append({**base, "metric": "optimizer state (MiB)", "value": csv_cell(state / MIB, 3),
                             "metric_definition": ALL_TRAINABLE})
                flat[f"{model}/{task}/{method}/peak_mib"] = m["peak_mib"]
                flat[f"{model}/{task}/{method}/opt_state_mib"] = state / MIB
                pa = paper_accounting(res)
                if pa:
                    rows.append({**base, "metric": "optimizer state, paper accounting (MiB)",
                                 "value": csv_cell(pa["state_bytes"] / MIB, 3), "dtype": pa["dtype"],
                                 "metric_definition": f"paper accounting: {pa['definition']}"})
                    rows.append({**base, "metric": "weights + optimizer state, paper accounting (MiB)",
                                 "value": csv_cell(pa["total_bytes"] / MIB, 3), "dtype": pa["dtype"],
                                 "metric_definition": f"paper accounting: {pa['definition']}"})
                    flat[f"{model}/{task}/{method}/paper_state_mib"] = pa["state_bytes"] / MIB
            verdicts.setdefault(model, {}).update(self._memory_verdicts(by_method, task, v, flat, model))
        q_rows, quality_mean = quality_rows(claim_name, scale, data, flat)
        rows += q_rows
        for model in sorted({m for m, _ in data.quality}):
            verdicts.setdefault(model, {}).update(self._quality_verdicts(
                {t: d for (m, t), d in data.quality.items() if m == model}, v))
        write_csv(out_csv, CSV_FIELDS, [{k: r.get(k, "") for k in CSV_FIELDS} for r in rows])
        payload = {"claim": claim_name, "scale": scale,
                   "models": sorted({m for m, _ in data.probes} | {m for m, _ in data.quality}),
                   "tasks": sorted({t for _, t in data.probes} | {t for _, t in data.quality}), "missing_tasks": {},
                   "metrics": flat, "verdicts": {k: g for k, g in verdicts.items() if g}, "verdict_config": v}
        write_json(out_json, payload)
        plot_memory(out_png, f"{claim_name} ({scale})", mem_rows,
                    quality_mean)
        return payload

    def _memory_verdicts(self, by_method: dict[str, dict[str, Any]], task: str, v: dict[str, Any],
                         flat: dict[str, float], model: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        galore, adamw, frugal = by_method.get(v["galore"]), by_method.get(v["adamw"]), by_method.get(v["frugal"])
        paper_ratio = float(v["state_ratio"])
        factors = {"holds_factor": float(v["holds_factor"]), "fails_factor": float(v["fails_factor"])}
        if galore and adamw:
            r_all = state_bytes_measured(galore) / state_bytes_measured(adamw)
            a_all = template_ratio_verdict(
                r_all, paper_ratio, f"optimizer state {v['galore']} / {v['adamw']} on {task}, all-trainable "
                f"accounting (embeddings, norms and head stay on AdamW), vs the abstract's 65.5 % reduction",
                ALL_TRAINABLE, **factors)
            out[f"a_state_all_trainable_{task}"] = a_all
            flat[f"{model}/{task}/state_ratio_all_trainable"] = r_all
            pg, pa = paper_accounting(galore), paper_accounting(adamw)
            if pg and pa:
                r_paper = pg["state_bytes"] / pa["state_bytes"]
                a_paper = template_ratio_verdict(
                    r_paper, paper_ratio, f"optimizer state {v['galore']} / {v['adamw']} on {task}, paper "
                    "accounting (projected matrices' states only, bf16), vs the abstract's 65.5 % reduction",
                    f"paper accounting: {pg['definition']}; {v['adamw']}: {pa['definition']}", **factors)
                if a_paper["verdict"] != a_all["verdict"]:
                    note = (f"the accountings disagree ({a_paper['verdict']} under paper accounting, "
                            f"{a_all['verdict']} all-trainable): the paper's leaves out the AdamW states of the "
                            f"{pg.get('unprojected_trainable_params', '?')} unprojected trainable parameters")
                    a_paper["note"] = a_all["note"] = note
                out[f"a_state_paper_{task}"] = a_paper
                flat[f"{model}/{task}/state_ratio_paper"] = r_paper
        if galore and frugal:
            out[f"d_frugal_state_{task}"] = ratio_verdict(
                state_bytes_measured(frugal), state_bytes_measured(galore), 1.0,
                f"optimizer state {v['frugal']} <= {v['galore']} on {task} (equal rank)", ALL_TRAINABLE)
        return out

    def _quality_verdicts(self, per_task: dict[str, dict[str, dict[int, dict[str, Any]]]],
                          v: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        tol, z = float(v["quality_tolerance"]), float(v["z"])
        tasks = ", ".join(sorted(per_task))

        def avg(role: str) -> dict[int, dict[str, Any]] | None:
            if not per_task or not all(v[role] in d for d in per_task.values()):
                return None
            return task_average([d[v[role]] for d in per_task.values()])

        galore, lora = avg("galore"), avg("lora")
        if galore and lora:
            out["b_quality_vs_lora"] = quality_verdict(
                galore, lora, tol, z, f"{v['galore']} - {v['lora']} >= -{tol:g} points (mean over {tasks})")
        for key, role in (("c_fira_quality", "fira"), ("c_frugal_quality", "frugal")):
            other = avg(role)
            if galore and other:
                out[key] = quality_verdict(other, galore, tol, z,
                                           f"{v[role]} - {v['galore']} >= -{tol:g} points (mean over {tasks}; "
                                           "full-rank updates at GaLore's state memory)")
        return out

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        rows = [{"model": key, "reproduced": next((x.get("estimate") for k, x in sorted(g.items())
                                                   if k.startswith("a_state_all")), None),
                 "verdicts": headline_verdicts(g)} for key, g in result.get("verdicts", {}).items()]
        return {"quantity": "optimizer state GaLore / AdamW (all-trainable); paper: 0.345 (65.5 % less)",
                "tasks": result.get("tasks", []), "paper_same_tasks": None, "paper_all_tasks": None,
                "paper_all_task_names": [], "rows": rows if result.get("metrics") else []}


AGGREGATOR = GaloreMemory()
