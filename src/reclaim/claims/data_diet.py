"""Claim: data pruning by example difficulty.

- Data Diet (Paul, Ganguli, Dziugaite; NeurIPS 2021, arXiv 2107.07075, abstract): with EL2N
  scores computed a few epochs into training, half of CIFAR-10 can be pruned "while slightly
  improving test accuracy"; GraNd is also proposed at initialisation.
- Sorscher, Geirhos, Shekhar, Ganguli, Morcos (NeurIPS 2022, arXiv 2206.14486): the best
  pruning strategy depends on the amount of data: keep the easy examples when data is
  scarce, the hard ones when it is abundant; a self-supervised prototype metric is as good
  as supervised ones.

Each arm is ``[select, train]`` (or ``[train]`` alone: the full data). What an arm is comes
from its steps, never from its name: the scorer is the select step's selector name, the mode
is ``hard`` (subset top), ``easy`` (bottom), ``offset`` (Data Diet's window) or ``random``
(the baseline selector), and the kept fraction is the budget.

Verdicts, per (model, task), on dev accuracy (points); an image task's dev split is its test
split (reclaim.data.images), so its table and verdicts are on test accuracy, as in the papers. An arm's standard error combines the
seeds' spread (std / sqrt(n_seeds)) and the dev set's binomial error, as the LoRA-GA claim
does; a difference's se adds two arms' in quadrature (reclaim.verdicts for the rule):

  (a) acc(scorer keep-hard at fraction) - acc(full) >= -tolerance_points;
  (b) acc(scorer keep-hard at fraction) - acc(random at fraction) >= 0;
  (c) per crossover scorer: acc(hard) - acc(easy) <= 0 at the smallest kept fraction that
      has both, and >= 0 at the largest.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from reclaim.claims._common import csv_cell, verdict_config
from reclaim.io import atomic_path, write_json
from reclaim.verdicts import binomial_se, mean, std, threshold_verdict

VERDICT_DEFAULTS: dict[str, Any] = {"z": 2.0, "tolerance_points": 1.0, "scorer": "el2n", "fraction": 0.5,
                                    "baseline": "random", "crossover": ["prototypes", "el2n"]}
MODES = {"top": "hard", "bottom": "easy", "offset": "offset"}
CSV_FIELDS = ["claim", "scale", "model", "task", "arm", "scorer", "mode", "kept_fraction", "offset",
              "method", "status", "accuracy_mean", "accuracy_std", "accuracy_se", "n_seeds", "seeds",
              "n_train", "n_pool", "n_eval"]


def arm_info(steps: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    """scorer, mode, kept fraction, offset and training method of an arm, from its steps."""
    sel = next((s["select"] for s in steps if "select" in s), None)
    train = next(s["train"] for s in steps if "train" in s)
    if sel is None:
        return {"scorer": "full", "mode": "full", "kept_fraction": 1.0, "offset": 0.0, "method": train["method"]}
    mode = "random" if sel["selector"] == baseline else MODES.get(sel["subset"], sel["subset"])
    return {"scorer": sel["selector"], "mode": mode, "kept_fraction": float(sel["budget"]),
            "offset": float(sel.get("offset", 0.0)), "method": train["method"]}


class DataDiet:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        cfg = verdict_config(claim, VERDICT_DEFAULTS, where)
        arms = claim.get("arms")
        if not arms:
            raise ValueError(f"{where}: the data_diet aggregator needs arms (select + train steps)")
        infos = {}
        for arm, steps in arms.items():
            stages = [next(iter(s)) for s in steps]
            if stages not in (["train"], ["select", "train"]):
                raise ValueError(f"{where}.arms.{arm}: must be [train] (full data) or [select, train], "
                                 f"got {stages}")
            infos[arm] = arm_info(steps, cfg["baseline"])
        keys = {(i["scorer"], i["mode"], i["kept_fraction"]) for i in infos.values()}
        if not any(i["mode"] == "full" for i in infos.values()):
            raise ValueError(f"{where}.arms: no full-data arm (a [train] arm without a select step)")
        for need in ((cfg["scorer"], "hard", float(cfg["fraction"])), (cfg["baseline"], "random", float(cfg["fraction"]))):
            if need not in keys:
                raise ValueError(f"{where}.verdict: no arm selects with {need[0]!r} ({need[1]}) at kept fraction "
                                 f"{need[2]:g}")
        for scorer in cfg["crossover"]:
            if not {"hard", "easy"} <= {m for s, m, _ in keys if s == scorer}:
                raise ValueError(f"{where}.verdict.crossover: {scorer!r} needs keep-hard (top) and keep-easy "
                                 "(bottom) arms")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {})}
        infos = {arm: arm_info(steps, vcfg["baseline"]) for arm, steps in claim["arms"].items()}
        by: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in sorted(runs, key=lambda r: r["seed"]):
            by[(r["model"], r["task"], r["arm"])].append({"seed": r["seed"], **r["result"]})
        groups = list(dict.fromkeys((r["model"], r["task"]) for r in runs))
        rows: list[dict[str, Any]] = []
        flat: dict[str, float] = {}
        stats: dict[str, dict[str, dict[str, Any]]] = {}
        for model, task in groups:
            g = f"{model}/{task}"
            stats[g] = {}
            full = by.get((model, task, next(a for a, i in infos.items() if i["mode"] == "full")), [])
            for arm, info in infos.items():
                st = _arm_stats(by.get((model, task, arm), []))
                stats[g][arm] = st
                row = {"claim": claim_name, "scale": scale, "model": model, "task": task, "arm": arm, **info,
                       "status": "ok" if st["n"] else "no runs", "accuracy_mean": st["mean"],
                       "accuracy_std": st["std"], "accuracy_se": st["se"], "n_seeds": st["n"],
                       "seeds": " ".join(map(str, st["seeds"])), "n_train": st["n_train"],
                       "n_pool": full[0]["n_train"] if full else None, "n_eval": st["n_eval"]}
                rows.append(row)
                if st["n"]:
                    flat[f"{g}/{arm}/accuracy"] = st["mean"]
        verdicts = {g: self._verdicts(stats[g], infos, vcfg) for g in stats}
        with atomic_path(out_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            w.writeheader()
            for r in rows:
                w.writerow({k: csv_cell(r.get(k)) for k in CSV_FIELDS})
        payload = {"claim": claim_name, "scale": scale, "models": sorted({m for m, _ in groups}),
                   "tasks": sorted({t for _, t in groups}), "missing_tasks": {}, "arms": infos,
                   "metric": "accuracy", "metrics": flat, "verdicts": verdicts, "verdict_config": vcfg,
                   "devices": sorted({r["result"].get("device_name", "cpu") for r in runs})}
        write_json(out_json, payload)
        self._plot(out_png, groups, infos, stats, scale)
        return payload

    def _verdicts(self, st: dict[str, dict[str, Any]], infos: dict[str, dict[str, Any]],
                  v: dict[str, Any]) -> dict[str, Any]:
        def find(scorer: str, mode: str, fraction: float) -> str | None:
            return next((a for a, i in infos.items() if i["scorer"] == scorer and i["mode"] == mode
                         and math.isclose(i["kept_fraction"], fraction)), None)

        def diff(a: str | None, b: str | None) -> tuple[float, float]:
            if a is None or b is None or not st[a]["n"] or not st[b]["n"]:
                return float("nan"), float("nan")
            return st[a]["mean"] - st[b]["mean"], math.hypot(st[a]["se"], st[b]["se"])

        f, z, scorer = float(v["fraction"]), v["z"], v["scorer"]
        prop = find(scorer, "hard", f)
        full = next(a for a, i in infos.items() if i["mode"] == "full")
        out: dict[str, Any] = {}
        est, se = diff(prop, full)
        out["a_pruned_matches_full"] = {
            **threshold_verdict(est, se, -float(v["tolerance_points"]), z, ">="), "arms": [prop, full],
            "claim": f"{scorer} keep-hard {f:.0%} accuracy >= full data - {v['tolerance_points']:g} points"}
        est, se = diff(prop, find(v["baseline"], "random", f))
        out["b_beats_random"] = {
            **threshold_verdict(est, se, 0.0, z, ">="), "arms": [prop, find(v["baseline"], "random", f)],
            "claim": f"{scorer} keep-hard {f:.0%} accuracy >= {v['baseline']} {f:.0%}"}
        for sc in v["crossover"]:
            both = sorted({i["kept_fraction"] for i in infos.values() if i["scorer"] == sc and i["mode"] == "hard"}
                          & {i["kept_fraction"] for i in infos.values() if i["scorer"] == sc and i["mode"] == "easy"})
            if not both:
                continue
            lo, hi = both[0], both[-1]
            est, se = diff(find(sc, "hard", lo), find(sc, "easy", lo))
            out[f"c_{sc}_easy_wins_at_{lo:g}"] = {
                **threshold_verdict(est, se, 0.0, z, "<="), "arms": [find(sc, "hard", lo), find(sc, "easy", lo)],
                "claim": f"{sc}: keep-hard - keep-easy accuracy <= 0 at the smallest kept fraction ({lo:.0%})"}
            if hi > lo:
                est, se = diff(find(sc, "hard", hi), find(sc, "easy", hi))
                out[f"c_{sc}_hard_wins_at_{hi:g}"] = {
                    **threshold_verdict(est, se, 0.0, z, ">="), "arms": [find(sc, "hard", hi), find(sc, "easy", hi)],
                    "claim": f"{sc}: keep-hard - keep-easy accuracy >= 0 at the largest kept fraction ({hi:.0%})"}
        return out

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        """(a)'s estimate per (model, task): the scorer's keep-hard accuracy minus full data's.
        The paper's comparable number (CIFAR-10, "slightly improving") is not a number read in
        the paper, so the paper side stays empty."""
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {}), **result.get("verdict_config", {})}
        rows = []
        for group, vs in sorted(result.get("verdicts", {}).items()):
            verdicts = [{"id": key.split("_", 1)[0], "key": key, "claim": x.get("claim", ""), "verdict": x["verdict"],
                         "estimate": x.get("estimate")} for key, x in sorted(vs.items())]
            est = vs.get("a_pruned_matches_full", {}).get("estimate")
            rows.append({"model": group, "reproduced": None if est is None or math.isnan(est) else est,
                         "verdicts": verdicts})
        return {"quantity": f"accuracy {vcfg['scorer']} keep-hard {float(vcfg['fraction']):.0%} - full data (points)",
                "tasks": result.get("tasks", []), "paper_same_tasks": None, "paper_all_tasks": None,
                "paper_all_task_names": [], "rows": rows}

    def _plot(self, path: str | Path, groups: list[tuple[str, str]], infos: dict[str, dict[str, Any]],
              stats: dict[str, dict[str, dict[str, Any]]], scale: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = max(1, len(groups))
        fig, axes = plt.subplots(1, n, figsize=(6.8 * n, 4.0), squeeze=False)
        styles = {"hard": ("-", "o"), "easy": ("--", "s"), "random": (":", "x"), "offset": ("-.", "^")}
        lines = sorted({(i["scorer"], i["mode"]) for i in infos.values() if i["mode"] != "full"})
        scorers = sorted({s for s, _ in lines})
        cmap = plt.get_cmap("tab10")
        for ax, (model, task) in zip(axes[0], groups or [("?", "?")], strict=False):
            st = stats.get(f"{model}/{task}", {})
            for scorer, mode in lines:
                pts = sorted((i["kept_fraction"], st[a]) for a, i in infos.items()
                             if i["scorer"] == scorer and i["mode"] == mode and st.get(a, {}).get("n"))
                if not pts:
                    continue
                ls, marker = styles.get(mode, ("-", "o"))
                ax.errorbar([p for p, _ in pts], [s["mean"] for _, s in pts], yerr=[s["std"] for _, s in pts],
                            ls=ls, marker=marker, ms=5, capsize=3, lw=1.2, color=cmap(scorers.index(scorer) % 10),
                            label={"random": scorer, "offset": f"{scorer} offset window"}.get(mode, f"{scorer} keep-{mode}"))
            full = next((st[a] for a, i in infos.items() if i["mode"] == "full" and st.get(a, {}).get("n")), None)
            if full:
                ax.axhline(full["mean"], color="black", lw=1, label="full data")
                ax.axhspan(full["mean"] - full["std"], full["mean"] + full["std"], color="grey", alpha=0.15, lw=0)
            ax.set_xlabel("kept fraction of the training set")
            ax.set_ylabel("dev accuracy (%)")
            ax.set_title(f"{model} / {task} ({scale})", fontsize=9)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.suptitle("Pruning by difficulty: accuracy vs kept fraction (mean +/- std over seeds)", fontsize=10)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)


def _arm_stats(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std and se (seed spread and binomial dev error) of one arm's accuracy."""
    if not rs:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "se": float("nan"), "seeds": [],
                "n_train": None, "n_eval": None}
    acc = [r["metrics"]["accuracy"] for r in rs]
    m, n_eval = mean(acc), rs[0]["n_eval"]
    se_seeds = std(acc) / math.sqrt(len(acc)) if len(acc) > 1 else 0.0
    return {"n": len(acc), "mean": m, "std": std(acc), "se": math.hypot(se_seeds, binomial_se(m, n_eval)),
            "seeds": [r["seed"] for r in rs], "n_train": rs[0]["n_train"], "n_eval": n_eval}



AGGREGATOR = DataDiet()
