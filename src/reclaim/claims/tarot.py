"""Claim: TAROT (Feng, Nie, Liu, Alahi; ICML 2025, arXiv 2412.00420) selects data for a
multimodal target better than influence-based greedy selection, because it whitens the
gradient features (Sec. 3.2) and minimises the OT distance to the target instead of adding
per-example scores (Algorithms 1 and 2); OTM also estimates the selection ratio.

At smoke scale (params.yaml ``claims.tarot``): a GLUE mixture pool, a 60/30/10 % target over
three tasks, a 5 % budget; every arm's selection is evaluated by ``target_mixture`` on a
held-out draw of the same mixture. Verdicts, on held-out accuracy (joint task-label classes),
per-seed paired differences (seeds share the pool, the held-out set and, for the gradient
arms, the warm-up head):

  (a) whitening helps:            acc(TAROT fixed) - acc(unwhitened fixed) > 0;
  (b) OT beats greedy influence:  acc(TAROT fixed) - acc(LESS-style greedy) > 0;
  (c) TAROT beats random:         acc(TAROT fixed) - acc(random) > 0;
  (d) OTM beats greedy influence: acc(TAROT-OTM, its own ratio) - acc(LESS-style greedy) > 0.

se^2 = var over seeds of the paired difference / n_seeds + the two accuracies' binomial
variance on the held-out set (which every seed shares, so that part does not shrink with
seeds; treating the two as independent overstates it). The table also reports the OT
distance to the held-out target, per-mode shares and coverage, and OTM's ratio.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from reclaim.claims._common import (
    csv_cell,
    headline_verdicts,
    save_figure,
    verdict_config,
    write_csv,
)
from reclaim.io import write_json
from reclaim.verdicts import mean, std, threshold_verdict

VERDICT_DEFAULTS = {"z": 2.0, "proposed": "tarot", "unwhitened": "tarot_unwhitened", "greedy": "less_greedy",
                    "baseline": "random", "otm": "tarot_otm"}
ROLES = ("proposed", "unwhitened", "greedy", "baseline", "otm")
VERDICTS = (("a_whitening_helps", "unwhitened", "proposed"), ("b_ot_beats_greedy", "greedy", "proposed"),
            ("c_beats_random", "baseline", "proposed"), ("d_otm_beats_greedy", "greedy", "otm"))
CSV_FIELDS = ["claim", "scale", "arm", "metric", "mean", "std", "n_seeds", "seeds", "n_selected", "ratio",
              "n_pool", "n_heldout", "protocol"]
GROUP = "selection"


class Tarot:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        cfg = verdict_config(claim, VERDICT_DEFAULTS, where)
        arms = claim.get("arms", {})
        for role in ROLES:
            if cfg[role] not in arms:
                raise ValueError(f"{where}.verdict.{role}: arm {cfg[role]!r} is not in the claim's arms")
        if not isinstance(cfg["z"], (int, float)) or cfg["z"] <= 0:
            raise ValueError(f"{where}.verdict.z: must be > 0, got {cfg['z']!r}")
        for arm, steps in arms.items():
            if not steps or steps[-1].get("evaluate", {}).get("evaluator") != "target_mixture":
                raise ValueError(f"{where}.arms.{arm}: must end with an evaluate step (evaluator target_mixture)")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {})}
        by: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in sorted(runs, key=lambda r: r["seed"]):
            by[r["arm"]].append({"seed": r["seed"], **r["result"]["metrics"]})
        metrics = _metric_names(by)
        flat: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        for arm in claim["arms"]:
            rs = by.get(arm, [])
            for metric in metrics:
                vals = [x[metric] for x in rs if isinstance(x.get(metric), (int, float))]
                flat[f"{arm}/{metric}"] = mean(vals)
                rows.append({
                    "claim": claim_name, "scale": scale, "arm": arm, "metric": metric,
                    "mean": csv_cell(mean(vals)), "std": csv_cell(std(vals)), "n_seeds": len(vals),
                    "seeds": " ".join(str(x["seed"]) for x in rs),
                    "n_selected": csv_cell(mean([x["n_selected"] for x in rs])) if rs else "",
                    "ratio": csv_cell(mean([x["ratio"] for x in rs])) if rs else "",
                    "n_pool": rs[0]["n_pool"] if rs else "", "n_heldout": rs[0]["n_heldout"] if rs else "",
                    "protocol": _protocol(rs[0]) if rs else "",
                })
        verdicts = {GROUP: self._verdicts(by, vcfg)}
        write_csv(out_csv, CSV_FIELDS, rows)
        devices = sorted({r["result"].get("device_name", "cpu") for r in runs})
        payload = {"claim": claim_name, "scale": scale, "models": [GROUP], "tasks": [], "missing_tasks": {},
                   "arms": list(claim["arms"]), "metrics": flat, "verdicts": verdicts,
                   "verdict_config": vcfg, "devices": devices}
        write_json(out_json, payload)
        self._plot(out_png, list(claim["arms"]), by, scale)
        return payload

    def _verdicts(self, by: dict[str, list[dict[str, Any]]], v: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, base_role, prop_role in VERDICTS:
            est, se = paired_difference(by.get(v[prop_role], []), by.get(v[base_role], []), "accuracy")
            out[key] = {**threshold_verdict(est, se, 0.0, v["z"], ">="),
                        "claim": f"held-out accuracy: {v[prop_role]} - {v[base_role]} > 0"}
        return out

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        """Held-out accuracy of TAROT (fixed size) minus the LESS-style greedy arm's, in points.
        No paper number: the paper's tables are unverified (notes Sec. 2.1)."""
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {}), **result.get("verdict_config", {})}
        m = result.get("metrics", {})
        p, b = m.get(f"{vcfg['proposed']}/accuracy"), m.get(f"{vcfg['greedy']}/accuracy")
        verdicts = headline_verdicts(result.get("verdicts", {}).get(GROUP, {}))
        rows = [{"model": GROUP, "reproduced": None if p is None or b is None else 100 * (p - b), "verdicts": verdicts}]
        return {"quantity": f"held-out target accuracy {vcfg['proposed']} - {vcfg['greedy']} (points)",
                "tasks": [], "paper_same_tasks": None, "paper_all_tasks": None, "paper_all_task_names": [],
                "rows": rows if result.get("metrics") else []}

    def _plot(self, path: str | Path, arms: list[str], by: dict[str, list[dict[str, Any]]], scale: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tasks = sorted({k.split("/", 1)[1] for rs in by.values() for x in rs for k in x if k.startswith("share/")})
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, metric, label in ((axes[0], "accuracy", "held-out target accuracy"),
                                  (axes[1], "ot_heldout", "OT distance to held-out target (lower = closer)")):
            vals = [[x[metric] for x in by.get(a, [])] for a in arms]
            ax.bar(arms, [mean(v) for v in vals], yerr=[std(v) for v in vals], capsize=4, color="#4c72b0")
            ax.set_title(label, fontsize=9)
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        bottom = [0.0] * len(arms)
        for i, t in enumerate(tasks):
            shares = [mean([x.get(f"share/{t}", 0.0) for x in by.get(a, [])]) for a in arms]
            axes[2].bar(arms, shares, bottom=bottom, label=t, color=plt.cm.tab10(i))
            bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
        first = next((rs[0] for rs in by.values() if rs), {})
        acc = 0.0
        for t in tasks:
            acc += first.get(f"target_share/{t}", 0.0)
            axes[2].axhline(acc, color="grey", ls="--", lw=0.8)
        axes[2].set_title("selection's share per target mode (dashed: target mixture)", fontsize=9)
        axes[2].tick_params(axis="x", labelrotation=30, labelsize=8)
        axes[2].legend(fontsize=7)
        fig.suptitle(f"TAROT on a multimodal GLUE target ({scale} scale; mean +/- std over seeds)", fontsize=10)
        save_figure(fig, path)


def paired_difference(prop: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """(mean over shared seeds of prop - base, se): paired over seeds plus the held-out binomial
    variance of both accuracies; fewer than two shared seeds give no noise estimate (nan)."""
    pb = {x["seed"]: x for x in base}
    pairs = [(x, pb[x["seed"]]) for x in prop if x["seed"] in pb]
    if not pairs:
        return float("nan"), float("nan")
    diffs = [a[key] - b[key] for a, b in pairs]
    est = mean(diffs)
    if len(pairs) < 2:
        return est, float("nan")
    pa, pb_ = mean([a[key] for a, _ in pairs]), mean([b[key] for _, b in pairs])
    n = pairs[0][0]["n_heldout"]
    binom = (pa * (1 - pa) + pb_ * (1 - pb_)) / n
    return est, math.sqrt(std(diffs) ** 2 / len(diffs) + binom)


def _metric_names(by: dict[str, list[dict[str, Any]]]) -> list[str]:
    first = ("accuracy", "ot_heldout", "coverage_min", "ratio")
    rest = sorted({k for rs in by.values() for x in rs for k, v in x.items()
                   if isinstance(v, float) and k not in first and not k.startswith("target_share/")})
    return [*first, *rest]


def _protocol(r: dict[str, Any]) -> str:
    p = r.get("protocol", {})
    return f"{p.get('classifier')} ({p.get('model')}), C={p.get('C')}; OT eps {p.get('reg')} on unit embeddings"



AGGREGATOR = Tarot()
