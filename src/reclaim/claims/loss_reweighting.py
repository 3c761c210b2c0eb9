"""Claim: dynamic loss-based sample reweighting (Sow, Woisetschläger, Bulusu, Wang, Jacobsen,
Liang; ICLR 2025, arXiv 2502.06733). Down-weighting low-loss samples (LinUpper) converges faster
than uniform weighting: in the paper's toy linear regression (Fig. 7) LinUpper converges fastest
and Quadratic also beats uniform; in LM pretraining it improves perplexity and downstream accuracy.

Two kinds of arms, told apart by their last step: toy arms (``evaluate: reweighting_toy``, a
seeded simulation, reclaim.evaluate.reweighting_toy) and fine-tuning arms (a ``train`` step with
``reweighting: {strategy, r, burn_in}``, reclaim.reweight; no ``reweighting`` = uniform).
Verdicts (reclaim.verdicts.threshold_verdict, interval estimate +/- z*se):

  (a) toy: test loss at step ``toy_step``, LinUpper - uniform <= 0;
  (b) toy: the same, Quadratic - uniform <= 0;
  (c) fine-tuning: dev accuracy, LinUpper - uniform >= 0 (per model, averaged over the tasks).

Strategies of one seed see the same data and batch order, so (a) and (b) use per-seed paired
differences (se = std / sqrt(n_seeds)). (c) pairs seeds too and adds both arms' dev-set binomial
errors in quadrature (conservative: the arms share one dev set). Fewer than two seeds give no
noise estimate, hence "inconclusive".

LM arms end with a ``pretrain`` step (reclaim.pretrain, objective ``clm``: SmolLM2-135M
continued pretraining on WikiText-2 valid chunks, the paper's LM setting in miniature; its
Sec. 5 pretrains GPT-2/Llama on SlimPajama), with the reweighting hook in the pretraining loop:

  (d) LM: held-out (WikiText-2 test chunks) perplexity after pretraining, LinUpper - uniform
      <= 0, per-seed paired differences (same data order and masks per seed).

A claim without LM arms gets an ``lm`` row saying so and no verdict (d).
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

TOY_EVALUATOR = "reweighting_toy"
VERDICT_DEFAULTS = {"z": 2.0, "toy_step": 100, "toy_proposed": "toy_linupper", "toy_second": "toy_quadratic",
                    "toy_baseline": "toy_uniform", "proposed": "sst2_linupper", "baseline": "sst2_uniform",
                    "lm_proposed": "lm_linupper", "lm_baseline": "lm_uniform"}
TOY_ROLES, TUNE_ROLES = ("toy_proposed", "toy_second", "toy_baseline"), ("proposed", "baseline")
PER_STRATEGY = ("strategy", "r", "burn_in")  # what toy arms may differ in; the rest is the data
CSV_FIELDS = ["claim", "scale", "part", "arm", "strategy", "r", "burn_in", "model", "task", "metric",
              "mean", "std", "n_seeds", "seeds", "n_train", "n_eval", "status", "note"]
LM_NOTE = "no LM arms in this claim (arms ending with a pretrain step: continued pretraining, perplexity)"


def _kind(steps: list[dict[str, Any]]) -> str:
    (stage, body), = steps[-1].items()
    if stage == "evaluate" and body.get("evaluator") == TOY_EVALUATOR:
        return "toy"
    if stage == "pretrain":
        return "lm"
    return "tune" if stage == "train" else "other"


def _strategy(steps: list[dict[str, Any]]) -> dict[str, Any]:
    (stage, body), = steps[-1].items()
    if stage == "evaluate":
        p = body.get("params") or {}
        return {"strategy": p.get("strategy", "uniform"), "r": p.get("r", 1.0), "burn_in": p.get("burn_in", 0)}
    rw = body.get("reweighting")  # a train or pretrain step
    return {"strategy": rw["strategy"], "r": rw.get("r", 1.0), "burn_in": rw.get("burn_in", 0)} if rw else \
        {"strategy": "uniform (no reweighting)", "r": "", "burn_in": ""}


class LossReweighting:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        from reclaim import evaluate

        cfg = verdict_config(claim, VERDICT_DEFAULTS, where)
        arms = claim.get("arms", {})
        for roles, kind, what in ((TOY_ROLES, "toy", f"end with an evaluate step ({TOY_EVALUATOR})"),
                                  (TUNE_ROLES, "tune", "end with a train step")):
            for role in roles:
                if cfg[role] not in arms:
                    raise ValueError(f"{where}.verdict.{role}: arm {cfg[role]!r} is not in the claim's arms")
                if _kind(arms[cfg[role]]) != kind:
                    raise ValueError(f"{where}.arms.{cfg[role]}: the verdict's {role} arm must {what}")
        ev = evaluate.get(TOY_EVALUATOR)
        base = ev.make_params(arms[cfg["toy_baseline"]][-1]["evaluate"].get("params"))
        for arm, steps in arms.items():
            if _kind(steps) != "toy":
                continue
            p = ev.make_params(steps[-1]["evaluate"].get("params"))
            differ = [k for k in base.__dict__ if k not in PER_STRATEGY and getattr(p, k) != getattr(base, k)]
            if differ:
                raise ValueError(f"{where}.arms.{arm}[-1].evaluate.params.{differ[0]}: differs from the baseline "
                                 f"arm {cfg['toy_baseline']!r}; toy arms may differ only in {', '.join(PER_STRATEGY)}")
            step = cfg["toy_step"]
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= p.steps:
                raise ValueError(f"{where}.verdict.toy_step: must be an integer in [0, {p.steps}] "
                                 f"(the toy's steps), got {step!r}")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        vcfg = {**VERDICT_DEFAULTS, **claim.get("verdict", {})}
        arms = claim["arms"]
        kinds = {a: _kind(steps) for a, steps in arms.items()}
        at = int(vcfg["toy_step"])
        toy: dict[str, dict[int, list[float]]] = defaultdict(dict)          # arm -> seed -> curve
        lm: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)        # arm -> seed -> pretrain record
        tune: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)  # (model, arm, task)
        for r in runs:
            res = r["result"]
            if kinds[r["arm"]] == "toy":
                toy[r["arm"]][r["seed"]] = res["metrics"]["test_loss_curve"]
            elif kinds[r["arm"]] == "lm":
                lm[r["arm"]][r["seed"]] = res
            else:
                tune[(r["model"], r["arm"], r["task"])][r["seed"]] = res
        models = list(dict.fromkeys(r["model"] for r in runs if r["model"]))
        tasks = list(dict.fromkeys(r["task"] for r in runs if r["task"]))
        rows: list[dict[str, Any]] = []
        flat: dict[str, float] = {}
        for arm in (a for a in arms if kinds[a] == "toy"):
            curves = toy.get(arm, {})
            for metric, idx in ((f"test_loss@{at}", at), ("test_loss@final", -1)):
                vals = [curves[s][idx] for s in sorted(curves)]
                flat[f"toy/{arm}/{metric}"] = mean(vals)
                rows.append(self._row(claim_name, scale, "toy", arm, arms[arm], None, None, metric, vals,
                                      sorted(curves)))
        for model in models:
            for arm in (a for a in arms if kinds[a] == "tune"):
                for task in tasks:
                    rs = tune.get((model, arm, task), {})
                    vals = [rs[s]["metrics"]["accuracy"] for s in sorted(rs)]
                    flat[f"{model}/{arm}/{task}/accuracy"] = mean(vals)
                    row = self._row(claim_name, scale, "fine-tune", arm, arms[arm], model, task, "accuracy", vals,
                                    sorted(rs))
                    if rs:
                        first = rs[min(rs)]
                        row.update(n_train=first["n_train"], n_eval=first["n_eval"])
                    rows.append(row)
        lm_arms = [a for a in arms if kinds[a] == "lm"]
        for arm in lm_arms:
            rs = lm.get(arm, {})
            first = rs[min(rs)] if rs else {}
            for metric, key in (("heldout_perplexity", "heldout_ppl_after"),
                                ("heldout_perplexity_before", "heldout_ppl_before")):
                vals = [rs[s][key] for s in sorted(rs)]
                flat[f"lm/{arm}/{metric}"] = mean(vals)
                row = self._row(claim_name, scale, "lm", arm, arms[arm], first.get("spec", {}).get("model", {}).get("name"),
                                "wikitext-2", metric, vals, sorted(rs))
                if first:
                    row.update(n_train=first["n_train"], n_eval=first["n_heldout"],
                               note=f"{first['steps']} steps of continued causal-LM pretraining")
                rows.append(row)
        if not lm_arms:
            rows.append({"claim": claim_name, "scale": scale, "part": "lm", "arm": "", "metric": "perplexity",
                         "status": "not run", "note": LM_NOTE})
        verdicts: dict[str, dict[str, Any]] = {"toy": self._toy_verdicts(toy, vcfg)}
        if vcfg["lm_proposed"] in lm_arms and vcfg["lm_baseline"] in lm_arms:
            verdicts["lm"] = {"d_lm_perplexity_vs_uniform": self._lm_verdict(lm, vcfg)}
        for model in models:
            verdicts[model] = {"c_accuracy_vs_uniform": self._tune_verdict(model, tasks, tune, vcfg)}
        with atomic_path(out_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows({k: csv_cell(r.get(k), 6) for k in CSV_FIELDS} for r in rows)
        devices = sorted({r["result"].get("device_name") or r["result"].get("device", "?") for r in runs})
        payload = {"claim": claim_name, "scale": scale, "models": models, "tasks": tasks, "missing_tasks": {},
                   "arms": list(arms), "metrics": flat, "verdicts": verdicts, "verdict_config": vcfg,
                   **({} if lm_arms else {"not_built": {"lm": LM_NOTE}}), "devices": devices}
        write_json(out_json, payload)
        self._plot(out_png, arms, kinds, toy, tune, models, tasks, at, scale)
        return payload

    @staticmethod
    def _row(claim_name: str, scale: str, part: str, arm: str, steps: list[dict[str, Any]], model: str | None,
             task: str | None, metric: str, vals: list[float], seeds: list[int]) -> dict[str, Any]:
        return {"claim": claim_name, "scale": scale, "part": part, "arm": arm, **_strategy(steps),
                "model": model or "", "task": task or "", "metric": metric,
                "mean": mean(vals), "std": std(vals), "n_seeds": len(vals), "seeds": " ".join(map(str, seeds)),
                "status": "ok" if vals else "no runs"}

    def _toy_verdicts(self, toy: dict[str, dict[int, list[float]]], v: dict[str, Any]) -> dict[str, Any]:
        at, base = int(v["toy_step"]), toy.get(v["toy_baseline"], {})
        out: dict[str, Any] = {}
        for key, role in (("a_toy_linupper_vs_uniform", "toy_proposed"), ("b_toy_quadratic_vs_uniform", "toy_second")):
            arm = toy.get(v[role], {})
            seeds = sorted(set(arm) & set(base))
            d = [arm[s][at] - base[s][at] for s in seeds]
            se = std(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
            out[key] = {**threshold_verdict(mean(d), se, 0.0, v["z"], "<="),
                        "claim": f"toy test loss at step {at}: {v[role]} <= {v['toy_baseline']}",
                        "seeds": seeds, "per_seed_differences": d,
                        "ratio": mean([arm[s][at] / base[s][at] for s in seeds]) if seeds else float("nan")}
        return out

    def _lm_verdict(self, lm: dict[str, dict[int, dict[str, Any]]], v: dict[str, Any]) -> dict[str, Any]:
        prop, base = lm.get(v["lm_proposed"], {}), lm.get(v["lm_baseline"], {})
        seeds = sorted(set(prop) & set(base))
        d = [prop[s]["heldout_ppl_after"] - base[s]["heldout_ppl_after"] for s in seeds]
        se = std(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        return {**threshold_verdict(mean(d), se, 0.0, v["z"], "<="),
                "claim": f"held-out perplexity after continued pretraining: {v['lm_proposed']} <= {v['lm_baseline']}",
                "seeds": seeds, "per_seed_differences": d}

    def _tune_verdict(self, model: str, tasks: list[str], tune: dict[tuple[str, str, str], dict[int, dict[str, Any]]],
                      v: dict[str, Any]) -> dict[str, Any]:
        prop = {t: tune.get((model, v["proposed"], t), {}) for t in tasks}
        base = {t: tune.get((model, v["baseline"], t), {}) for t in tasks}
        seeds = sorted(set.intersection(*(set(prop[t]) & set(base[t]) for t in tasks))) if tasks else []
        d = [mean([prop[t][s]["metrics"]["accuracy"] - base[t][s]["metrics"]["accuracy"] for t in tasks])
             for s in seeds]
        if len(d) > 1:
            se_eval = math.sqrt(sum(
                binomial_se(mean([x[s]["metrics"]["accuracy"] for s in seeds]), x[seeds[0]]["n_eval"]) ** 2
                for t in tasks for x in (prop[t], base[t]))) / len(tasks)
            se = math.hypot(std(d) / math.sqrt(len(d)), se_eval)
        else:
            se = float("nan")
        return {**threshold_verdict(mean(d), se, 0.0, v["z"], ">="),
                "claim": f"dev accuracy: {v['proposed']} >= {v['baseline']} ({', '.join(tasks)})",
                "seeds": seeds, "per_seed_differences": d}

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        """Per group, the tested difference (toy: LinUpper - uniform test loss at the verdict's step;
        fine-tuning: LinUpper - uniform accuracy). The paper gives Fig. 7 as curves, not numbers,
        so the paper side stays empty."""
        rows = []
        for group, vs in result.get("verdicts", {}).items():
            first = vs[sorted(vs)[0]] if vs else {}
            rows.append({"model": group, "reproduced": first.get("estimate"),
                         "verdicts": [{"id": key.split("_", 1)[0], "key": key, "claim": x.get("claim", ""),
                                       "verdict": x["verdict"], "estimate": x.get("estimate")}
                                      for key, x in sorted(vs.items())]})
        return {"quantity": "toy: test-loss difference LinUpper - uniform; fine-tuning: accuracy difference (points); "
                            "lm: held-out perplexity difference",
                "tasks": result.get("tasks", []), "paper_same_tasks": None, "paper_all_tasks": None,
                "paper_all_task_names": [], "rows": rows if result.get("metrics") else []}

    def _plot(self, path: str | Path, arms: dict[str, Any], kinds: dict[str, str],
              toy: dict[str, dict[int, list[float]]], tune: dict[tuple[str, str, str], dict[int, dict[str, Any]]],
              models: list[str], tasks: list[str], at: int, scale: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
        cmap = plt.get_cmap("tab10")
        for k, arm in enumerate(a for a in arms if kinds[a] == "toy"):
            curves = [toy[arm][s] for s in sorted(toy.get(arm, {}))]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            cols = list(zip(*(c[:n] for c in curves), strict=True))
            mu, sd = [mean(c) for c in cols], [std(c) for c in cols]
            x = range(n)
            left.plot(x, mu, label=f"{arm} (n={len(curves)})", color=cmap(k % 10), lw=1.2)
            # mean - std is often below 0 (seeds differ in scale): the band stops at the lowest seed
            low = [max(m - s, min(c)) for m, s, c in zip(mu, sd, cols, strict=True)]
            left.fill_between(x, low, [m + s for m, s in zip(mu, sd, strict=True)], color=cmap(k % 10),
                              alpha=0.15, lw=0)
        left.axvline(at, color="grey", ls="--", lw=1)
        left.set_yscale("log")
        left.set_xlabel("SGD step")
        left.set_ylabel("test loss (excess risk)")
        left.set_title("toy linear regression: mean +/- std over seeds\n(band floored at the lowest seed; "
                       "dashed: the verdicts' step)", fontsize=8)
        left.legend(fontsize=7)
        labels, heights, errs = [], [], []
        for model in models:
            for task in tasks:
                for arm in (a for a in arms if kinds[a] == "tune"):
                    vals = [r["metrics"]["accuracy"] for r in tune.get((model, arm, task), {}).values()]
                    labels.append(f"{arm}\n{model}/{task}" if len(models) * len(tasks) > 1 else arm)
                    heights.append(mean(vals) if vals else 0.0)
                    errs.append(std(vals))
        if labels:
            right.bar(range(len(labels)), heights, yerr=errs, capsize=4, color="#4c72b0")
            right.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7, ha="right")
            lo = min((h - e for h, e in zip(heights, errs, strict=True) if h), default=0.0)
            right.set_ylim(max(0.0, lo - 5), min(100.0, max(heights) + max(errs, default=0) + 5))
        right.set_ylabel("dev accuracy (%)")
        right.set_title("fine-tuning with the loss hook: mean +/- std over seeds", fontsize=9)
        fig.suptitle(f"Loss-based sample reweighting (Sow et al. 2025), {scale} scale", fontsize=10)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)



AGGREGATOR = LossReweighting()
