"""Claim: LISA fine-tunes with "similar or less GPU memory consumption" than LoRA and
matches or beats its quality (Pan et al., arXiv 2403.17919, abstract v4: "With similar or
less GPU memory consumption, LISA surpasses LoRA ..."). The per-model GB and MT-Bench tables
are not verified here and are not in params.yaml.

Memory comes from the probe jobs (reclaim.probe: peak live tensor bytes of one training
step at a fixed batch), quality from the train jobs of the same methods. Verdicts per
(model, task) for memory, per model for quality (mean over tasks):

  (a) peak(LISA) / peak(LoRA) <= ``memory_ratio`` (measured, this scale);
  (b) LISA - LoRA dev metric >= -``quality_tolerance`` points (reclaim.claims._memory's rule);
  (c) the same memory ratio at the paper's scale, counted analytically for LLaMA-2-7B shapes:
      weights bf16 + (gradients bf16 + AdamW moments fp32) of the trainable parameters,
      activations left out (the paper's batch 1 x 1024 gives both methods similar ones).
      LISA trains embeddings + head + gamma blocks; LoRA trains rank-r factors on the
      projections the LoRA method targets (all linear layers by default).

At MiniLM's size the embeddings are about half the parameters and always trained by LISA, so
(a) may honestly not hold at smoke scale; (c) says whether the shapes of the paper's model
change that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.claims._common import csv_cell, headline_verdicts, verdict_config, write_csv
from reclaim.claims._memory import (
    LLAMA2_7B,
    memory_row,
    plot_memory,
    quality_rows,
    quality_verdict,
    ratio_verdict,
    split_runs,
    state_bytes,
    task_average,
)
from reclaim.io import write_json

VERDICT_DEFAULTS = {"lisa": "lisa_g2", "lora": "lora_r128", "memory_ratio": 1.02, "quality_tolerance": 1.0,
                    "z": 2.0}
CSV_FIELDS = ["claim", "scale", "model", "task", "method", "optimizer", "metric", "value", "n_seeds", "seeds",
              "peak_mib", "steady_mib", "params_mib", "grads_mib", "opt_state_mib", "activations_mib",
              "trainable_params", "total_params", "metric_definition", "dtype", "batch", "device"]


class LisaGlue:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        v = verdict_config(claim, VERDICT_DEFAULTS, where)
        methods = {body["method"] for steps in claim.get("arms", {}).values() for st in steps for body in st.values()}
        for role in ("lisa", "lora"):
            if v[role] not in methods:
                raise ValueError(f"{where}.verdict.{role}: method {v[role]!r} is in none of the claim's arms")
        probed = {body["method"] for steps in claim.get("arms", {}).values() for st in steps
                  for stage, body in st.items() if stage == "probe"}
        for role in ("lisa", "lora"):
            if v[role] not in probed:
                raise ValueError(f"{where}.arms: no probe step for {v[role]!r} (the memory verdict needs one)")

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
                opt = res["optimizer"]["name"]
                row = {"claim": claim_name, "scale": scale, "model": model, "task": task, "method": method,
                       "optimizer": opt, "metric": "peak memory (MiB)", "value": csv_cell(m["peak_mib"], 2),
                       "n_seeds": 1, "seeds": res["spec"]["train_spec"]["seed"],
                       **{k: csv_cell(m[k], 2) for k in ("peak_mib", "steady_mib", "params_mib", "grads_mib",
                                                         "opt_state_mib", "activations_mib")},
                       "trainable_params": m["trainable_params"], "total_params": m["total_params"],
                       "metric_definition": "peak live tensor bytes, one training step (probe)",
                       "dtype": m["dtype"], "batch": m["batch"], "device": m["device"]}
                rows.append(row)
                mem_rows.append({**row, **m})
                flat[f"{model}/{task}/{method}/peak_mib"] = m["peak_mib"]
            lisa, lora = by_method.get(v["lisa"]), by_method.get(v["lora"])
            if lisa and lora:
                verdicts.setdefault(model, {})[f"a_memory_{task}"] = ratio_verdict(
                    lisa["peak_bytes"], lora["peak_bytes"], float(v["memory_ratio"]),
                    f"peak({v['lisa']}) / peak({v['lora']}) <= {v['memory_ratio']:g} on {task} "
                    f"(batch {memory_row(lisa)['batch']})", "peak live tensor bytes (probe)")
        q_rows, quality_mean = quality_rows(claim_name, scale, data, flat)
        rows += q_rows
        for model in sorted({m for m, _ in data.quality}):
            per_task = {t: d for (m, t), d in data.quality.items() if m == model}
            if all(v["lisa"] in d and v["lora"] in d for d in per_task.values()) and per_task:
                # the per-seed mean over tasks, as one "result" per seed
                lisa_avg = task_average([d[v["lisa"]] for d in per_task.values()])
                lora_avg = task_average([d[v["lora"]] for d in per_task.values()])
                verdicts.setdefault(model, {})["b_quality"] = quality_verdict(
                    lisa_avg, lora_avg, float(v["quality_tolerance"]), float(v["z"]),
                    f"{v['lisa']} - {v['lora']} >= -{v['quality_tolerance']:g} points (mean over "
                    f"{', '.join(sorted(per_task))})")
        specs = {res["spec"]["train_spec"]["method"]["name"]: res["spec"]["train_spec"]["method"]
                 for d in data.probes.values() for res in d.values()}
        paper = self._paper_scale(specs, v)
        if paper:
            rows += [{**r, "claim": claim_name, "scale": "paper (analytic)"} for r in paper["rows"]]
            verdicts["paper-scale (analytic)"] = {"c_paper_scale_memory": paper["verdict"]}
            flat["paper_scale/ratio"] = paper["verdict"]["estimate"]
        write_csv(out_csv, CSV_FIELDS, [{k: r.get(k, "") for k in CSV_FIELDS} for r in rows])
        payload = {"claim": claim_name, "scale": scale, "models": sorted({m for m, _ in data.probes}
                                                                         | {m for m, _ in data.quality}),
                   "tasks": sorted({t for _, t in data.probes} | {t for _, t in data.quality}), "missing_tasks": {},
                   "metrics": flat, "verdicts": verdicts, "verdict_config": v}
        write_json(out_json, payload)
        plot_memory(out_png, f"{claim_name} ({scale})", mem_rows,
                    quality_mean)
        return payload

    def _paper_scale(self, specs: dict[str, dict[str, Any]], v: dict[str, Any]) -> dict[str, Any] | None:
        """LISA (E + H + gamma blocks) vs LoRA rank r on q, v at LLaMA-2-7B's shapes, with the
        gamma and the rank the probed methods ran with."""
        lisa, lora = specs.get(v["lisa"]), specs.get(v["lora"])
        if not lisa or not lora:
            return None
        gamma = int(lisa.get("optimizer", {}).get("params", {}).get("gamma", 2))
        r = int(lora.get("params", {}).get("r", 8))
        targets = lora.get("params", {}).get("target_modules", "all-linear")
        s = LLAMA2_7B
        total = s.total_params()
        lisa_trainable = 2 * s.vocab * s.hidden + gamma * s.block_params() + s.hidden
        try:
            lora_trainable = s.lora_params(r, targets)
        except ValueError:
            return None  # targets named for another architecture: no analytic row
        lisa_b = state_bytes(total, lisa_trainable)
        lora_b = state_bytes(total + lora_trainable, lora_trainable)
        definition = ("analytic: weights bf16 + trainable x (grad bf16 + AdamW moments fp32); "
                      f"{s.name} shapes, activations excluded")
        verdict = ratio_verdict(lisa_b, lora_b, float(v["memory_ratio"]),
                                f"{s.name}: LISA E+H+{gamma}L / LoRA r{r} ({targets}) <= {v['memory_ratio']:g}",
                                definition)
        gib = 2**30
        rows = [{"claim": "", "model": s.name, "task": "", "method": name, "metric": "memory (GiB, analytic)",
                 "value": csv_cell(b / gib, 2), "trainable_params": t, "total_params": total,
                 "metric_definition": definition, "dtype": "bf16 weights/grads, fp32 AdamW moments"}
                for name, b, t in ((f"{v['lisa']} (E+H+{gamma}L)", lisa_b, lisa_trainable),
                                   (f"{v['lora']} (r{r}, {targets})", lora_b, lora_trainable))]
        return {"rows": rows, "verdict": verdict}

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        rows = [{"model": key, "reproduced": next((x.get("estimate") for k, x in sorted(g.items())
                                                   if k.startswith("a_")), None),
                 "verdicts": headline_verdicts(g)} for key, g in result.get("verdicts", {}).items()]
        return {"quantity": "peak(LISA) / peak(LoRA); paper: <= 1 ('similar or less')",
                "tasks": result.get("tasks", []), "paper_same_tasks": None, "paper_all_tasks": None,
                "paper_all_task_names": [], "rows": rows if result.get("metrics") else []}



AGGREGATOR = LisaGlue()
