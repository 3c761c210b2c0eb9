"""Claim: Data Shapley (Ghorbani & Zou, ICML 2019, arXiv 1904.02868) values data better than
leave-one-out: on a pool with 10% flipped labels, (a) inspecting the lowest-valued points
finds the flipped labels faster than LOO order and random order, and (b) removing the
highest-valued points first hurts held-out accuracy more than random removal; with exact
KNN-Shapley (Jia et al., VLDB 2019, arXiv 1908.08619) as the fast variant, compared with TMC.

Each arm scores the pool with one valuation (``tmc_shapley``, ``knn_shapley``, ``loo``,
``random``) and ends with ``valuation_stats`` (detection recall curve and its area, removal
curves). Verdicts, over seeds (TMC and random vary with the seed; KNN and LOO are
deterministic and share one job across seeds):

  (a) detection area(method) - detection area(baseline) >= 0, for method in {TMC, KNN} and
      baseline in {LOO, random};
  (b) removal-curve area(random, i.e. random removal) - removal area(method, highest first)
      >= 0 (held-out accuracy after removing high-value points first is lower);
  (c) rank agreement of TMC and KNN values: Spearman correlation >= ``agreement_min``; the
      detection difference KNN - TMC is reported without a verdict (no claim states it).

Standard errors. Detection (a): the difference of two arms' seed-averaged areas gets
spread_A^2 / n_A + spread_B^2 / n_B (Monte Carlo and seed noise) plus the variance of the
same difference over ``bootstrap`` paired resamples of the pool's points (both arms scored
on the same resampled points: the sampling noise of "which 10% were flipped"). Removal (b):
per arm sqrt(spread^2 / n + the mean binomial se of its held-out accuracies^2) (an upper
bound on an area's sampling se), two arms combined as independent (conservative: they share
the held-out rows). No paper numbers: the notes mark the figures unverified.
"""

from __future__ import annotations

import math
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
from reclaim.verdicts import mean, std, threshold_verdict

VERDICT_DEFAULTS = {"z": 2.0, "tmc": "tmc_shapley", "knn": "knn_shapley", "loo": "loo", "random": "random",
                    "agreement_min": 0.0, "bootstrap": 500}
CSV_FIELDS = ["claim", "scale", "arm", "metric", "mean", "std", "se", "n_seeds", "seeds", "n_pool", "n_flipped",
              "protocol"]
METRICS = ("detection_area", "detection_at_10", "detection_at_20", "auroc", "removal_high_area",
           "removal_low_area")
GROUP = "valuation"


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


class DataShapley:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        cfg = verdict_config(claim, VERDICT_DEFAULTS, where)
        arms = claim.get("arms", {})
        for role in ("tmc", "knn", "loo", "random"):
            if cfg[role] not in arms:
                raise ValueError(f"{where}.verdict.{role}: arm {cfg[role]!r} is not in the claim's arms")
        if isinstance(cfg["bootstrap"], bool) or not isinstance(cfg["bootstrap"], int) or cfg["bootstrap"] < 2:
            raise ValueError(f"{where}.verdict.bootstrap: an integer >= 2, got {cfg['bootstrap']!r}")
        if not isinstance(cfg["agreement_min"], (int, float)) or not -1 <= cfg["agreement_min"] <= 1:
            raise ValueError(f"{where}.verdict.agreement_min: a correlation in [-1, 1], got {cfg['agreement_min']!r}")
        for arm, steps in arms.items():
            if not steps or "select" not in steps[0] or "evaluate" not in steps[-1] \
                    or steps[-1]["evaluate"].get("evaluator") != "valuation_stats":
                raise ValueError(f"{where}.arms.{arm}: must be a select step then an evaluate step "
                                 "with evaluator valuation_stats")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {})}
        by: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in sorted(runs, key=lambda r: r["seed"]):
            by[r["arm"]].append({"seed": r["seed"], **r["result"]["metrics"]})
        flat: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        for arm in claim["arms"]:
            rs = by.get(arm, [])
            for metric in METRICS:
                vals = [x[metric] for x in rs]
                se = _se(rs, metric)
                flat[f"{arm}/{metric}"] = mean(vals)
                if math.isfinite(se):
                    flat[f"{arm}/{metric}_se"] = se
                rows.append({
                    "claim": claim_name, "scale": scale, "arm": arm, "metric": metric,
                    "mean": csv_cell(mean(vals)), "std": csv_cell(std(vals)), "se": csv_cell(se), "n_seeds": len(vals),
                    "seeds": " ".join(str(x["seed"]) for x in rs),
                    "n_pool": rs[0]["n_pool"] if rs else "", "n_flipped": rs[0]["n_flipped"] if rs else "",
                    "protocol": _protocol(rs[0]) if rs else "",
                })
        comparisons = self._comparisons(by, vcfg)
        for key, (m, s, n) in comparisons.items():
            flat[key] = m
            rows.append({"claim": claim_name, "scale": scale, "arm": key.split("/")[0], "metric": key.split("/")[1],
                         "mean": csv_cell(m), "std": csv_cell(s), "se": "", "n_seeds": n, "seeds": "", "n_pool": "",
                         "n_flipped": "", "protocol": "Spearman correlation of the values (pairs over seeds)"})
        verdicts = {GROUP: self._verdicts(by, vcfg, comparisons)}
        # reported without a verdict: no claim states the sign of KNN - TMC
        est, se = paired_detection_diff(by.get(vcfg["knn"], []), by.get(vcfg["tmc"], []), int(vcfg["bootstrap"]))
        flat["knn_minus_tmc/detection_area"], flat["knn_minus_tmc/detection_area_se"] = est, se
        write_csv(out_csv, CSV_FIELDS, rows)
        devices = sorted({r["result"].get("device_name", "cpu") for r in runs})
        payload = {"claim": claim_name, "scale": scale, "models": [GROUP], "tasks": [], "missing_tasks": {},
                   "arms": list(claim["arms"]), "metrics": flat, "verdicts": verdicts,
                   "curves": {arm: self._mean_curves(by.get(arm, [])) for arm in claim["arms"]},
                   "verdict_config": vcfg, "devices": devices}
        write_json(out_json, payload)
        self._plot(out_png, list(claim["arms"]), payload["curves"], scale)
        return payload

    def _comparisons(self, by: dict[str, list[dict[str, Any]]], v: dict[str, Any]) -> dict[str, tuple]:
        """Rank agreement between valuations: (mean, std, pairs) of Spearman correlations, each
        TMC run against KNN and LOO, and TMC runs of different seeds against each other."""
        tmc, knn, loo = by.get(v["tmc"], []), by.get(v["knn"], []), by.get(v["loo"], [])
        out: dict[str, tuple] = {}

        def add(key: str, pairs: list[tuple[list[float], list[float]]]) -> None:
            rho = [spearman(a, b) for a, b in pairs]
            out[key] = (mean(rho), std(rho), len(rho))

        if tmc and knn:
            add(f"{v['tmc']}_vs_{v['knn']}/spearman", [(t["values"], knn[0]["values"]) for t in tmc])
        if tmc and loo:
            add(f"{v['tmc']}_vs_{v['loo']}/spearman", [(t["values"], loo[0]["values"]) for t in tmc])
        if len(tmc) >= 2:
            add(f"{v['tmc']}_vs_{v['tmc']}/spearman",
                [(a["values"], b["values"]) for i, a in enumerate(tmc) for b in tmc[i + 1:]])
        return out

    def _verdicts(self, by: dict[str, list[dict[str, Any]]], v: dict[str, Any],
                  comparisons: dict[str, tuple]) -> dict[str, Any]:
        z = v["z"]

        def diff(a: str, b: str, metric: str) -> tuple[float, float]:
            ra, rb = by.get(a, []), by.get(b, [])
            est = mean([x[metric] for x in ra]) - mean([x[metric] for x in rb])
            return est, math.sqrt(_se(ra, metric) ** 2 + _se(rb, metric) ** 2)

        out: dict[str, Any] = {}
        for method in ("tmc", "knn"):
            for base in ("loo", "random"):
                est, se = paired_detection_diff(by.get(v[method], []), by.get(v[base], []), int(v["bootstrap"]))
                out[f"a_{method}_detects_vs_{base}"] = {
                    **threshold_verdict(est, se, 0.0, z, ">="),
                    "claim": f"flipped-label recall area, lowest value first: {v[method]} >= {v[base]} order"}
            est, se = diff(v["random"], v[method], "removal_high_area")
            out[f"b_{method}_removal_vs_random"] = {
                **threshold_verdict(est, se, 0.0, z, ">="),
                "claim": f"held-out accuracy area, removing {v[method]}'s highest values first <= random removal"}
        key = f"{v['tmc']}_vs_{v['knn']}/spearman"
        if key in comparisons:
            m, s, n = comparisons[key]
            n_pool = by[v["tmc"]][0]["n_pool"]
            # spread over TMC seeds + the sampling se of a correlation over n_pool points
            est, se_v = m, math.sqrt((s ** 2 / n if n >= 2 else 0.0) + (1 - m ** 2) ** 2 / max(n_pool - 3, 1))
        else:
            est, se_v = float("nan"), float("nan")
        out["c_tmc_knn_agreement"] = {**threshold_verdict(est, se_v, float(v["agreement_min"]), z, ">="),
                                      "claim": f"Spearman({v['tmc']}, {v['knn']}) >= {v['agreement_min']}"}
        return out

    def _mean_curves(self, rs: list[dict[str, Any]]) -> dict[str, Any]:
        if not rs:
            return {}
        return {k: np.mean([x[k] for x in rs], axis=0).tolist()
                for k in ("recall_fractions", "recall_curve", "removal_fractions", "removal_high_curve",
                          "removal_low_curve")}

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        """Detection area of TMC minus random order's (recall AUC of the flipped labels); the
        paper's comparable figures are unverified in the notes, so the paper side stays empty."""
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {}), **result.get("verdict_config", {})}
        m = result.get("metrics", {})
        p, b = m.get(f"{vcfg['tmc']}/detection_area"), m.get(f"{vcfg['random']}/detection_area")
        verdicts = headline_verdicts(result.get("verdicts", {}).get(GROUP, {}))
        rows = [{"model": GROUP, "reproduced": None if p is None or b is None else p - b, "verdicts": verdicts}]
        return {"quantity": f"flipped-label detection area {vcfg['tmc']} - {vcfg['random']} order",
                "tasks": [], "paper_same_tasks": None, "paper_all_tasks": None, "paper_all_task_names": [],
                "rows": rows if result.get("metrics") else []}

    def _plot(self, path: str | Path, arms: list[str], curves: dict[str, dict[str, Any]], scale: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for arm in arms:
            c = curves.get(arm)
            if not c:
                continue
            line = axes[0].plot(c["recall_fractions"], c["recall_curve"], label=arm)[0]
            fr = [100 * f for f in c["removal_fractions"]]
            axes[1].plot(fr, [100 * a for a in c["removal_high_curve"]], color=line.get_color(),
                         label=f"{arm}: highest first")
            if arm != "random":
                axes[1].plot(fr, [100 * a for a in c["removal_low_curve"]], color=line.get_color(), ls="--",
                             label=f"{arm}: lowest first")
        axes[0].plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        axes[0].set(xlabel="fraction of the pool inspected (lowest value first)", ylabel="flipped labels found",
                    title="detection of flipped labels")
        axes[1].set(xlabel="% of the pool removed", ylabel="held-out accuracy (%)", title="removal curves")
        for ax in axes:
            ax.legend(fontsize=7)
        fig.suptitle(f"Data Shapley on a pool with flipped labels ({scale} scale; mean over seeds)", fontsize=10)
        save_figure(fig, path)


def paired_detection_diff(a: list[dict[str, Any]], b: list[dict[str, Any]], resamples: int) -> tuple[float, float]:
    """Detection area of arm a minus arm b (each averaged over its seeds) and its se: the
    seed spreads plus a paired bootstrap over pool points (fixed generator)."""
    from reclaim.evaluate.valuation_stats import curve_area, recall_curve

    if not a or not b:
        return float("nan"), float("nan")
    est = mean([x["detection_area"] for x in a]) - mean([x["detection_area"] for x in b])
    flipped = np.array(a[0]["flipped"], dtype=bool)
    va = [np.array(x["values"]) for x in a]
    vb = [np.array(x["values"]) for x in b]
    rng = np.random.default_rng([0, 0xD5])
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(flipped), len(flipped))
        if not flipped[idx].any():
            continue
        f = flipped[idx]
        diffs.append(np.mean([curve_area(recall_curve(v[idx], f)) for v in va])
                     - np.mean([curve_area(recall_curve(v[idx], f)) for v in vb]))
    spread = sum(std([x["detection_area"] for x in r]) ** 2 / len(r) for r in (a, b) if len(r) >= 2)
    return est, math.sqrt(spread + float(np.var(diffs, ddof=1)))


def _se(rs: list[dict[str, Any]], metric: str) -> float:
    """An arm's standard error of an area: the spread over seeds plus the per-run noise term;
    nan for the other metrics (the seed spread alone would give deterministic arms se 0)."""
    per_run = {"detection_area": "detection_area_se", "removal_high_area": "removal_area_se",
               "removal_low_area": "removal_area_se"}.get(metric)
    if not rs or per_run is None:
        return float("nan")
    vals = [x[metric] for x in rs]
    spread = std(vals) ** 2 / len(vals) if len(vals) >= 2 else 0.0
    return math.sqrt(spread + mean([x[per_run] for x in rs]) ** 2)


def _protocol(r: dict[str, Any]) -> str:
    p = r.get("protocol", {})
    return f"{p.get('learner')}, C={p.get('C')}; removal fractions {r.get('removal_fractions')}"



AGGREGATOR = DataShapley()
