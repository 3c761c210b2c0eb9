"""Claim: LoRA-GA (Wang, Yu, Li; arXiv 2407.05000, Table 1 and sec. 4.1) beats LoRA by 5.69
points on the T5-base GLUE subset, lands close to full fine-tuning, and converges 2-4x
faster than LoRA.

Verdicts, per model, from the runs (each task's main GLUE metric: accuracy, the paper's metric,
for classification; Pearson r x 100 for STS-B, the GLUE convention; averaged over the tasks
present):
  (a) avg(LoRA-GA) - avg(LoRA) >= 0;
  (b) avg(full FT) - avg(LoRA-GA) <= within_points;
  (c) speed-up = steps LoRA needs to reach its own final (smoothed) training loss divided by
      the steps LoRA-GA needs to reach that same loss, averaged over (task, seed) pairs,
      >= speedup_min.
The standard error of a method's average combines the seeds' spread (std / sqrt(n_seeds))
and the evaluation-set sampling error (binomial, per task); a difference's se adds the two
methods' in quadrature. See reclaim.verdicts for the interval rule.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from reclaim.claims._common import verdict_config
from reclaim.data.glue import main_metric
from reclaim.io import atomic_path, write_json
from reclaim.verdicts import (
    binomial_se,
    mean,
    smooth,
    std,
    steps_to_reach,
    threshold_verdict,
)

VERDICT_DEFAULTS = {"z": 2.0, "within_points": 1.0, "speedup_min": 2.0, "smooth_steps": 10,
                    "proposed": "lora_ga", "baseline": "lora", "full": "full_ft"}
EXTRA_METRICS = ("mcc", "f1")
CSV_FIELDS = ["claim", "scale", "model", "method", "task", "status", "metric", "mean", "std",
              "n_seeds", "seeds", "paper", "delta_to_paper", "mcc_mean", "mcc_std", "f1_mean",
              "f1_std", "n_train", "n_eval", "tasks_in_avg"]


class LoraGaGlue:
    def check_config(self, claim: dict[str, Any], where: str) -> None:
        cfg = verdict_config(claim, VERDICT_DEFAULTS, where)
        for role in ("proposed", "baseline", "full"):
            if cfg[role] not in claim["methods"]:
                raise ValueError(f"{where}.verdict.{role}: method {cfg[role]!r} is not in the claim's methods")

    def aggregate(self, claim_name: str, claim: dict[str, Any], scale: str, tasks: list[str],
                  missing: dict[str, str], results: list[dict[str, Any]], out_csv: str | Path,
                  out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {})}
        paper = claim.get("paper_results", {})
        by: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in results:
            s = r["spec"]
            by[(s["model"]["name"], s["method"]["name"], s["task"])].append(r)
        for rs in by.values():
            rs.sort(key=lambda r: r["spec"]["seed"])
        models = list(dict.fromkeys(r["spec"]["model"]["name"] for r in results))
        present = [t for t in tasks if t not in missing]
        rows: list[dict[str, Any]] = []
        flat: dict[str, float] = {}
        summary: dict[str, dict[str, dict[str, Any]]] = {}
        for model in models:
            summary[model] = {}
            for method in claim["methods"]:
                for task in tasks:
                    rows.append(self._task_row(claim_name, scale, model, method, task, missing,
                                               by.get((model, method, task), []), paper, flat))
                avg = self._avg_row(claim_name, scale, model, method, present, by, paper, flat)
                rows.append(avg["row"])
                summary[model][method] = avg
        verdicts = {m: self._verdicts(m, present, by, summary[m], vcfg, paper) for m in models}
        self._write_csv(out_csv, rows)
        payload = {
            "claim": claim_name, "scale": scale, "models": models, "tasks": tasks,
            "missing_tasks": missing, "methods": claim["methods"], "metric": avg_metric(present),
            "task_metrics": {t: main_metric(t) for t in tasks},
            "metrics": flat, "verdicts": verdicts, "verdict_config": vcfg,
            "devices": sorted({r.get("device_name") or r.get("device", "?") for r in results}),
        }
        write_json(out_json, payload)
        self._plot(out_png, models, present, claim["methods"], by, vcfg["smooth_steps"], scale)
        return payload

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        """The claim's headline comparison, recomputed from an ``aggregate`` JSON (never typed):
        proposed minus baseline average accuracy per model, next to the paper's gap on the same
        tasks (what the run can be compared with) and over every task the paper reports (the
        title's number; the smoke scale covers fewer tasks, so the two differ)."""
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {}), **result.get("verdict_config", {})}
        prop, base = vcfg["proposed"], vcfg["baseline"]
        paper = claim.get("paper_results", {})
        missing = result.get("missing_tasks", {})
        present = [t for t in result.get("tasks", []) if t not in missing]

        def paper_gap(tasks: list[str]) -> float | None:
            pp, pb = paper.get(prop, {}), paper.get(base, {})
            if not tasks or any(pp.get(t) is None or pb.get(t) is None for t in tasks):
                return None
            return mean([pp[t] for t in tasks]) - mean([pb[t] for t in tasks])

        reported = [t for t in paper.get(prop, {})
                    if paper[prop][t] is not None and paper.get(base, {}).get(t) is not None]
        metrics = result.get("metrics", {})
        rows = []
        label = result.get("metric", "accuracy")
        for model in result.get("models", []):
            p = metrics.get(f"{model}/{prop}/avg/{label}")
            b = metrics.get(f"{model}/{base}/avg/{label}")
            verdicts = [{"id": key.split("_", 1)[0], "key": key, "claim": v.get("claim", ""),
                         "verdict": v["verdict"], "estimate": v.get("estimate")}
                        for key, v in sorted(result.get("verdicts", {}).get(model, {}).items())]
            rows.append({"model": model, "reproduced": None if p is None or b is None else p - b,
                         "verdicts": verdicts})
        return {
            "quantity": f"avg {label} {prop} - {base} (points)",
            "tasks": present,
            "paper_same_tasks": paper_gap(present),
            "paper_all_tasks": paper_gap(reported),
            "paper_all_task_names": reported,
            "rows": rows,
        }

    # -- rows -------------------------------------------------------------------------
    def _task_row(self, claim_name, scale, model, method, task, missing, rs, paper, flat):  # type: ignore[no-untyped-def]
        metric = main_metric(task)
        row: dict[str, Any] = {"claim": claim_name, "scale": scale, "model": model, "method": method,
                               "task": task, "metric": metric}
        if task in missing or not rs:
            row["status"] = "missing" if task in missing else "no runs"
            return row
        acc = [r["metrics"][metric] for r in rs]
        ref = paper.get(method, {}).get(task)
        row.update(status="ok", mean=mean(acc), std=std(acc), n_seeds=len(acc),
                   seeds=" ".join(str(r["spec"]["seed"]) for r in rs), paper=ref,
                   delta_to_paper=None if ref is None else mean(acc) - ref,
                   n_train=rs[0]["n_train"], n_eval=rs[0]["n_eval"])
        flat[f"{model}/{method}/{task}/{metric}"] = row["mean"]
        for extra in EXTRA_METRICS:
            if extra in rs[0]["metrics"]:
                vals = [r["metrics"][extra] for r in rs]
                row[f"{extra}_mean"], row[f"{extra}_std"] = mean(vals), std(vals)
                flat[f"{model}/{method}/{task}/{extra}"] = row[f"{extra}_mean"]
        return row

    def _avg_row(self, claim_name, scale, model, method, present, by, paper, flat):  # type: ignore[no-untyped-def]
        label = avg_metric(present)
        row: dict[str, Any] = {"claim": claim_name, "scale": scale, "model": model, "method": method,
                               "task": "avg", "metric": label, "tasks_in_avg": " ".join(present)}
        per_task = {t: by.get((model, method, t), []) for t in present}
        if not present or any(not rs for rs in per_task.values()):
            row["status"] = "incomplete"
            return {"row": row, "mean": float("nan"), "se": float("nan")}
        seeds = sorted(set.intersection(*({r["spec"]["seed"] for r in rs} for rs in per_task.values())))
        per_seed = [mean([next(r["metrics"][main_metric(t)] for r in per_task[t] if r["spec"]["seed"] == s)
                          for t in present]) for s in seeds]
        task_means = {t: mean([r["metrics"][main_metric(t)] for r in rs]) for t, rs in per_task.items()}
        se_eval = math.sqrt(sum(eval_se(main_metric(t), task_means[t], per_task[t][0]["n_eval"]) ** 2
                                for t in present)) / len(present)
        se_seeds = std(per_seed) / math.sqrt(len(per_seed)) if len(per_seed) > 1 else 0.0
        refs = [paper.get(method, {}).get(t) for t in present]
        ref = mean(refs) if refs and all(x is not None for x in refs) else None
        avg = mean(per_seed)
        row.update(status="ok", mean=avg, std=std(per_seed), n_seeds=len(seeds),
                   seeds=" ".join(map(str, seeds)), paper=ref,
                   delta_to_paper=None if ref is None else avg - ref)
        flat[f"{model}/{method}/avg/{label}"] = avg
        return {"row": row, "mean": avg, "se": math.sqrt(se_seeds**2 + se_eval**2),
                "se_seeds": se_seeds, "se_eval": se_eval, "paper": ref}

    # -- verdicts ---------------------------------------------------------------------
    def _verdicts(self, model, present, by, summary, v, paper):  # type: ignore[no-untyped-def]
        prop, base, full = summary[v["proposed"]], summary[v["baseline"]], summary[v["full"]]
        d = prop["mean"] - base["mean"]
        a = threshold_verdict(d, math.hypot(prop["se"], base["se"]), 0.0, v["z"], ">=")
        label = avg_metric(present)
        a["claim"] = f"{v['proposed']} average {label} >= {v['baseline']} average {label}"
        a["paper_estimate"] = _paper_diff(prop, base)
        e = full["mean"] - prop["mean"]
        b = threshold_verdict(e, math.hypot(full["se"], prop["se"]), v["within_points"], v["z"], "<=")
        b["claim"] = f"{v['proposed']} average within {v['within_points']:g} points of {v['full']}"
        b["paper_estimate"] = _paper_diff(full, prop)
        c = self._speedup(model, present, by, v)
        return {"a_beats_baseline": a, "b_close_to_full_ft": b, "c_convergence_speedup": c}

    def _speedup(self, model, present, by, v):  # type: ignore[no-untyped-def]
        pairs = []
        for t in present:
            base = {r["spec"]["seed"]: r for r in by.get((model, v["baseline"], t), [])}
            prop = {r["spec"]["seed"]: r for r in by.get((model, v["proposed"], t), [])}
            for s in sorted(set(base) & set(prop)):
                lb = smooth(base[s]["losses"], v["smooth_steps"])
                lp = smooth(prop[s]["losses"], v["smooth_steps"])
                target = lb[-1]
                n_base, _ = steps_to_reach(lb, target)
                n_prop, censored = steps_to_reach(lp, target)
                pairs.append({"task": t, "seed": s, "target_loss": target, "steps_baseline": n_base,
                              "steps_proposed": n_prop, "censored": censored, "ratio": n_base / n_prop})
        ratios = [p["ratio"] for p in pairs]
        se = std(ratios) / math.sqrt(len(ratios)) if len(ratios) > 1 else float("nan")
        out = threshold_verdict(mean(ratios), se, v["speedup_min"], v["z"], ">=")
        out["claim"] = (f"{v['proposed']} reaches {v['baseline']}'s final training loss "
                        f">= {v['speedup_min']:g}x sooner (paper: 2-4x)")
        out["pairs"] = pairs
        out["definition"] = (f"losses smoothed by a trailing {v['smooth_steps']}-step mean; target = "
                             "baseline's final smoothed loss; censored = proposed never reached it "
                             "(its step count is then the run length, so the ratio is an upper bound)")
        return out

    # -- outputs ----------------------------------------------------------------------
    def _write_csv(self, path, rows):  # type: ignore[no-untyped-def]
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            w.writeheader()
            for r in rows:
                w.writerow({k: _fmt(r.get(k)) for k in CSV_FIELDS})

    def _plot(self, path, models, tasks, methods, by, window, scale):  # type: ignore[no-untyped-def]
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ncols = max(1, len(tasks))
        legend_rows = -(-len(methods) // 5)
        legend_in = 0.25 + 0.2 * legend_rows  # inches kept free under the panels for the legend
        height = 3.2 * max(1, len(models)) + legend_in
        fig, axes = plt.subplots(len(models) or 1, ncols, figsize=(4.2 * ncols, height), squeeze=False)
        cmap = plt.get_cmap("tab10")
        for i, model in enumerate(models):
            for j, task in enumerate(tasks):
                ax = axes[i][j]
                for k, method in enumerate(methods):
                    curves = [smooth(r["losses"], window) for r in by.get((model, method, task), [])]
                    if not curves:
                        continue
                    n = min(len(c) for c in curves)
                    cols = list(zip(*(c[:n] for c in curves), strict=True))
                    x = range(1, n + 1)
                    ax.plot(x, [mean(c) for c in cols], label=method, color=cmap(k % 10), lw=1.2)
                    if len(curves) > 1:
                        ax.fill_between(x, [min(c) for c in cols], [max(c) for c in cols],
                                        color=cmap(k % 10), alpha=0.15, lw=0)
                ax.set_title(f"{model} / {task} ({scale})", fontsize=9)
                ax.set_xlabel("step")
                ax.set_ylabel(f"train loss ({window}-step mean)")
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
        fig.tight_layout(rect=(0, legend_in / height, 1, 1))
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)


def avg_metric(tasks: list[str]) -> str:
    """The average row's name: "accuracy" when every task's main metric is accuracy, else
    "score" (the GLUE score: the mean of the tasks' main metrics)."""
    return "accuracy" if all(main_metric(t) == "accuracy" for t in tasks) else "score"


def eval_se(metric: str, value: float, n: int) -> float:
    """Sampling error of a dev-set metric in points: binomial for accuracy; for a correlation
    the large-sample se of r, (1 - r^2) / sqrt(n - 1)."""
    if metric == "accuracy":
        return binomial_se(value, n)
    r = value / 100.0
    return 100.0 * (1.0 - r * r) / math.sqrt(max(n - 1, 1))


def _paper_diff(x: dict[str, Any], y: dict[str, Any]) -> float | None:
    if x.get("paper") is None or y.get("paper") is None:
        return None
    return x["paper"] - y["paper"]


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return "" if v is None else v


AGGREGATOR = LoraGaGlue()
