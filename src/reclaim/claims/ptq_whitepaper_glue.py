"""Claim: 8-bit post-training quantization with per-channel weights stays within 2% of float,
per-channel is at least as good as per-tensor ("per-layer"), and 4-bit weights collapse after
PTQ but quantization-aware training recovers most of the loss (Krishnamoorthi, arXiv
1806.08342, Tables 3 and 5: ImageNet top-1 of MobileNet-v1, W8A8 asymmetric per-layer 0.001
vs per-channel 0.703, float 0.709; W4A8 per-channel PTQ 0.001 vs QAT 0.65).

Transferred to the one true-fp32 subject here, MiniLM fine-tuned on GLUE by the train stage
(train -> compress -> evaluate). The paper attributes the per-layer collapse to batch-norm
folding giving kernels very different ranges; a transformer's Linears have no batch norm to
fold, so the per-tensor penalty may be small here: "does not hold" on (b) is an informative
outcome, and the paper's ImageNet numbers are shown beside ours, never compared.

Verdicts per task (reclaim.verdicts.threshold_verdict; the standard error is a paired
bootstrap over dev examples of the seed-averaged correctness, every arm scoring the same
examples):

  (a) float - W8A8 per-channel <= ``w8_tolerance`` points;
  (b) W8A8 per-channel - W8A8 per-tensor >= 0;
  (c) float - W4A8 PTQ >= ``w4_gap`` points (4-bit PTQ loses clearly more than the 8-bit
      tolerance);
  (d) QAT recovers at least ``recovery`` of the W4 PTQ gap: (QAT - PTQ) / (float - PTQ).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from reclaim.claims._common import (
    csv_cell,
    headline_verdicts,
    save_figure,
    verdict_config,
    write_csv,
)
from reclaim.io import write_json
from reclaim.verdicts import threshold_verdict

VERDICT_DEFAULTS = {"z": 2.0, "bootstrap": 2000, "w8_tolerance": 2.0, "w4_gap": 2.0, "recovery": 0.5,
                    "float": "float", "w8_tensor": "w8a8_tensor", "w8_channel": "w8a8_channel",
                    "w4_ptq": "w4a8_ptq", "w4_qat": "w4a8_qat"}
ROLES = ("float", "w8_tensor", "w8_channel", "w4_ptq", "w4_qat")
CSV_FIELDS = ["claim", "scale", "model", "task", "arm", "method", "bits", "axis", "act_bits", "accuracy",
              "accuracy_se", "main_metric", "main_value", "n_seeds", "seeds", "n_eval", "paper_top1",
              "calibration", "device"]


def _record(metrics: dict[str, Any]) -> dict[str, Any] | None:
    path = Path(metrics.get("model", "")).parent / "compress.json"
    return json.loads(path.read_text()) if metrics.get("model") and path.is_file() else None


class PTQWhitepaperGlue:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        cfg = verdict_config(claim, VERDICT_DEFAULTS, where)
        arms = claim.get("arms", {})
        for role in ROLES:
            if cfg[role] not in arms:
                raise ValueError(f"{where}.verdict.{role}: arm {cfg[role]!r} is not in the claim's arms")
        for arm, steps in arms.items():
            if not steps or steps[-1].get("evaluate", {}).get("evaluator") != "glue_accuracy":
                raise ValueError(f"{where}.arms.{arm}: must end with an evaluate step (evaluator glue_accuracy)")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        v = verdict_config(claim, VERDICT_DEFAULTS, claim_name)
        by: dict[tuple[str, str], dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
        for r in runs:
            by[(r["model"], r["task"])][r["arm"]][r["seed"]] = r["result"]
        paper = {a: x.get("top1") for a, x in claim.get("paper_results", {}).items()}
        rows, flat, verdicts = [], {}, {}
        rng = np.random.default_rng(0)
        for (model, task), arms in by.items():
            correct = {a: np.mean([np.asarray(res["metrics"]["correct"], float) for res in seeds.values()], axis=0)
                       for a, seeds in arms.items()}
            n = len(next(iter(correct.values())))
            idx = rng.integers(0, n, size=(int(v["bootstrap"]), n))
            boot = {a: 100 * c[idx].mean(axis=1) for a, c in correct.items()}
            acc = {a: 100 * float(c.mean()) for a, c in correct.items()}
            roles = [v[r] for r in ROLES]  # the claim config arrives with sorted keys: rows in role order
            for arm in roles + sorted(a for a in claim["arms"] if a not in roles):
                if arm not in arms:
                    continue
                res = next(iter(arms[arm].values()))
                rec = _record(res["metrics"])
                p = (rec or {}).get("params", {})
                main = next(iter(res["metrics"]))  # the task's first metric, as the train stage reports it
                flat[f"{model}/{task}/{arm}/accuracy"] = acc[arm]
                cal = (rec or {}).get("calibration") or {}
                rows.append({"claim": claim_name, "scale": scale, "model": model, "task": task, "arm": arm,
                             "method": (rec or {}).get("method", "none (float)"), "bits": p.get("bits", 32),
                             "axis": p.get("axis", ""), "act_bits": p.get("act_bits", ""),
                             "accuracy": csv_cell(acc[arm], 2), "accuracy_se": csv_cell(float(np.std(boot[arm], ddof=1)), 2),
                             "main_metric": main, "main_value": csv_cell(np.mean([r["metrics"][main] for r in
                                                                                   arms[arm].values()]), 2),
                             "n_seeds": len(arms[arm]), "seeds": " ".join(map(str, sorted(arms[arm]))),
                             "n_eval": n, "paper_top1": csv_cell(None if paper.get(arm) is None else 100 * paper[arm], 1),
                             "calibration": f"{cal['examples']} {cal['task']} train examples" if cal else "",
                             "device": res.get("device_name", "")})
            verdicts[f"{model}/{task}"] = self._verdicts(acc, boot, v)
        write_csv(out_csv, CSV_FIELDS, rows)
        payload = {"claim": claim_name, "scale": scale, "models": sorted({m for m, _ in by}),
                   "tasks": sorted({t for _, t in by}), "missing_tasks": {}, "arms": list(claim["arms"]),
                   "metrics": flat, "verdicts": verdicts, "verdict_config": v,
                   "devices": sorted({res.get("device_name", "cpu") for r in runs for res in [r["result"]]})}
        write_json(out_json, payload)
        self._plot(out_png, claim_name, scale, rows, list(claim["arms"]))
        return payload

    def _verdicts(self, acc: dict[str, float], boot: dict[str, np.ndarray], v: dict[str, Any]) -> dict[str, Any]:
        f, t, c, p, q = (v[r] for r in ROLES)
        out: dict[str, Any] = {}
        z = float(v["z"])

        def add(key: str, sentence: str, stat: Any, threshold: float, direction: str, arms: list[str]) -> None:
            if any(a not in acc for a in arms):
                return
            out[key] = {"claim": sentence, **threshold_verdict(float(stat(acc)), float(np.std(stat(boot), ddof=1)),
                                                                 threshold, z, direction)}

        add("a_w8_channel_within_tolerance", f"float - W8A8 per-channel <= {v['w8_tolerance']:g} points",
            lambda x: x[f] - x[c], float(v["w8_tolerance"]), "<=", [f, c])
        add("b_channel_ge_tensor", "W8A8 per-channel - per-tensor >= 0 points", lambda x: x[c] - x[t], 0.0, ">=",
            [c, t])
        add("c_w4_ptq_loses", f"float - W4A8 PTQ >= {v['w4_gap']:g} points", lambda x: x[f] - x[p],
            float(v["w4_gap"]), ">=", [f, p])
        add("d_qat_recovers", f"QAT recovers >= {v['recovery']:g} of the W4 PTQ gap",
            lambda x: _share(x[q] - x[p], x[f] - x[p]), float(v["recovery"]), ">=", [f, p, q])
        return out

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        rows = [{"model": key, "reproduced": (g.get("a_w8_channel_within_tolerance") or {}).get("estimate"),
                 "verdicts": headline_verdicts(g)} for key, g in result.get("verdicts", {}).items()]
        return {"quantity": "float - W8A8 per-channel accuracy (points); paper: MobileNet-v1 0.6",
                "tasks": result.get("tasks", []), "paper_same_tasks": None, "paper_all_tasks": None,
                "paper_all_task_names": [], "rows": rows if result.get("metrics") else []}

    def _plot(self, path: str | Path, claim_name: str, scale: str, rows: list[dict[str, Any]], arms: list[str]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = list(dict.fromkeys((r["model"], r["task"]) for r in rows))
        fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(keys) + 3), 4.0))
        width = 0.8 / max(1, len(arms))
        for i, arm in enumerate(arms):
            vals = [next((r["accuracy"] for r in rows if (r["model"], r["task"]) == k and r["arm"] == arm), 0)
                    for k in keys]
            errs = [2 * float(next((r["accuracy_se"] for r in rows if (r["model"], r["task"]) == k and r["arm"] == arm),
                                   0) or 0) for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], vals, width, yerr=errs, capsize=2, label=arm)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))], [f"{m}/{t}" for m, t in keys])
        ax.set_ylabel("dev accuracy (%; bars: 2 bootstrap SE)")
        ax.set_title(f"{claim_name} ({scale})", fontsize=10)
        ax.legend(fontsize=7, ncol=3)
        save_figure(fig, path)


def _share(part: Any, whole: Any) -> Any:
    """part / whole, NaN where there is no gap to recover (whole == 0): an undefined share
    gives an inconclusive verdict, never a division error."""
    whole = np.asarray(whole, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(part, dtype=float) / np.where(whole == 0, np.nan, whole)
    return float(out) if out.ndim == 0 else out


AGGREGATOR = PTQWhitepaperGlue()
