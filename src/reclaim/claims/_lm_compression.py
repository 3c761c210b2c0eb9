"""What the compression claims measured as WikiText-2 perplexity share: per-arm rows, paired
bootstrap errors over evaluation windows, and verdict rules on orderings, gap fractions and
ratios (notes, Sec. 1.6: at smoke and small scale only shapes transfer, never absolute
perplexity; the paper's cells sit beside ours and are compared only at paper scale).

Every arm ends with an ``evaluate: perplexity`` step; all arms of a claim share one protocol
(subject, tokenizer, windows, seqlen), which is checked. A seed is a calibration draw: each
window's NLL is averaged over an arm's seeds, and the bootstrap resamples windows with the
same indices for every arm (paired), so the standard error of a difference or a gap fraction
is the window-sampling noise of that quantity.

Rules (``verdict.rules``, each with an ``id`` and a ``claim`` sentence):

- ``lower``: ppl(arm) - ppl(than) <= 0;
- ``gap_fraction``: g = (ppl(base) - ppl(arm)) / (ppl(base) - ppl(ref)) >= ``min``, the share
  of the baseline's loss that the method recovers;
- ``ratio``: ppl(arm) / ppl(than) >= ``min``;
- ``log_close``: |log ppl(arm) - log ppl(than)| <= ``max``.

A rule naming an arm the scale does not run is listed under ``skipped_rules``, never guessed.

Rows carry the compress step's params (bits, group size, sparsity, N:M pattern), the achieved
parameter-weighted sparsity, and the method's ``scope`` line when it has one (what it
compressed, e.g. a structured pruner's "MLP channels only").
"""

from __future__ import annotations

import json
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
from reclaim.verdicts import threshold_verdict

KINDS = {"lower": ("than",), "gap_fraction": ("base", "ref", "min"), "ratio": ("than", "min"),
         "log_close": ("than", "max")}
CSV_FIELDS = ["claim", "scale", "arm", "method", "base_method", "scope", "bits", "group_size", "sparsity", "pattern",
              "achieved_sparsity", "rank", "stored_bits",
              "subject", "reference", "reference_perplexity", "perplexity", "perplexity_se", "paper_perplexity", "n_seeds", "seeds",
              "seqlen", "n_windows", "tokens_scored", "calibration", "compress_s", "device", "protocol"]
GROUP = "wikitext"


def _compress_record(result: dict[str, Any]) -> dict[str, Any] | None:
    """The record of the step that wrote the evaluated model: a compress step's, or, for LoRA
    trained on a compressed base (reclaim.pretrain._lora), one shaped like it: method
    ``lora r<r> (<init>)``, its base the compress step under it."""
    model = result.get("metrics", {}).get("model", "")
    if not model:
        return None
    path = Path(model).parent / "compress.json"
    if path.is_file():
        return json.loads(path.read_text())
    path = Path(model).parent / "pretrain.json"
    if not path.is_file():
        return None
    pre = json.loads(path.read_text())
    lora, base = pre["spec"].get("lora"), pre.get("base_compress") or {}
    comp = base.get("compensation")
    start = f"from {comp['method']} r{comp['params']['rank']}" if comp else "zero init"
    return {"method": f"lora r{lora['r']} ({start})" if lora else "clm (all weights)",
            "params": {"rank": lora["r"]} if lora else {}, "trained": True,
            "base_compress": {"method": base.get("method", ""), "params": base.get("params") or {}},
            # stored bits are the base's plus the 16-bit factors, whose share of the weights the
            # record does not give: left blank rather than shown as the base's
            "summary": {k: v for k, v in (base.get("summary") or {}).items() if k != "mean_stored_bits"},
            "record": {"scope": f"{pre['steps']} steps on {pre['n_train']} WikiText-2 valid chunks; base "
                                f"{(base.get('summary') or {}).get('mean_stored_bits', '?')} bits/weight + "
                                f"{pre.get('trainable_params', '?')} 16-bit LoRA parameters"},
            "timings": {"compress_s": pre["timings"]["train_s"]}}


class PerplexityClaim:
    takes_runs = True

    def __init__(self, defaults: dict[str, Any], headline_rule: str, quantity: str, x_axis: str = "stored_bits",
                 x_label: str = "stored bits per weight") -> None:
        self.defaults = {"z": 2.0, "bootstrap": 2000, "rules": [], **defaults}
        self.headline_rule = headline_rule
        self.quantity = quantity
        self.x_axis, self.x_label = x_axis, x_label

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        cfg = verdict_config(claim, self.defaults, where)
        arms = claim.get("arms", {})
        for arm, steps in arms.items():
            if not steps or steps[-1].get("evaluate", {}).get("evaluator") != "perplexity":
                raise ValueError(f"{where}.arms.{arm}: must end with an evaluate step (evaluator perplexity)")
        if not isinstance(cfg["z"], (int, float)) or cfg["z"] <= 0:
            raise ValueError(f"{where}.verdict.z: must be > 0, got {cfg['z']!r}")
        for i, rule in enumerate(cfg["rules"]):
            at = f"{where}.verdict.rules[{i}]"
            kind = rule.get("kind")
            if kind not in KINDS:
                raise ValueError(f"{at}.kind: unknown {kind!r} (known: {', '.join(KINDS)})")
            for key in ("id", "arm", *KINDS[kind]):
                if key not in rule:
                    raise ValueError(f"{at}: a {kind} rule needs {key!r}")
            for key in ("arm", "than", "base", "ref"):
                if key in rule and rule[key] not in arms:
                    raise ValueError(f"{at}.{key}: {rule[key]!r} is not an arm of the claim")

    # --- aggregation -------------------------------------------------------------------------

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        vcfg = verdict_config(claim, self.defaults, claim_name)
        s = claim["scales"][scale]
        by: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for r in runs:
            by[r["arm"]][r["seed"]] = r["result"]
        arms = [a for a in (s.get("arms") or claim["arms"]) if a in by]  # the scale's order
        protocols = {a: _protocol_key(next(iter(by[a].values()))) for a in arms}
        if len(set(protocols.values())) > 1:
            raise ValueError(f"{claim_name}: arms were evaluated with different protocols: {protocols}")
        nll = {a: np.mean([np.asarray(res["metrics"]["window_nll"]) for _, res in sorted(by[a].items())], axis=0)
               for a in arms}
        rng = np.random.default_rng(0)
        n = len(next(iter(nll.values()))) if nll else 0
        idx = rng.integers(0, n, size=(int(vcfg["bootstrap"]), n)) if n else None
        boot = {a: np.exp(nll[a][idx].mean(axis=1)) for a in arms} if n else {}
        ppl = {a: float(math.exp(nll[a].mean())) for a in arms}
        paper = {a: v["perplexity"] for a, v in claim.get("paper_results", {}).items() if "perplexity" in v}
        rows, flat = [], {}
        for a in arms:
            res = next(iter(by[a].values()))
            rec = _compress_record(res)
            base = (rec or {}).get("base_compress") or {}  # a compensation step: the step it compensates
            p = {**(base.get("params") or {}), **(rec or {}).get("params", {})}
            prot = res["metrics"]["protocol"]
            cal = (rec or {}).get("calibration")
            flat[f"{a}/perplexity"] = ppl[a]
            if rec and rec["summary"].get("mean_stored_bits") is not None:
                flat[f"{a}/stored_bits"] = rec["summary"]["mean_stored_bits"]
            rows.append({
                "claim": claim_name, "scale": scale, "arm": a, "method": (rec or {}).get("method", "none (reference)"),
                "base_method": base.get("method", ""),
                "bits": p.get("bits", ""), "group_size": p.get("group_size", "") if p.get("axis", "group") == "group"
                else p.get("axis", ""), "sparsity": csv_cell(p.get("sparsity")), "rank": p.get("rank", ""),
                "pattern": p.get("pattern", ""), "scope": (rec or {}).get("record", {}).get("scope", ""),
                "achieved_sparsity": csv_cell((rec or {}).get("summary", {}).get("mean_sparsity"), 4),
                "stored_bits": csv_cell((rec or {}).get("summary", {}).get("mean_stored_bits"), 3),
                "subject": res["spec"]["model"]["name"], "reference": s.get("reference", ""),
                "perplexity": csv_cell(ppl[a], 3), "perplexity_se": csv_cell(float(np.std(boot[a], ddof=1)), 3),
                "paper_perplexity": csv_cell(paper.get(a)), "n_seeds": len(by[a]),
                "seeds": " ".join(str(x) for x in sorted(by[a])) if cal or (rec or {}).get("trained")
                else "(no calibration)",
                "seqlen": prot["seqlen"], "n_windows": prot["n_windows"], "tokens_scored": prot["tokens_scored"],
                "calibration": f"{cal['n_samples']}x{cal['seqlen']} wikitext-2 {cal['split']}" if cal else "",
                "compress_s": csv_cell((rec or {}).get("timings", {}).get("compress_s"), 1),
                "device": res.get("device_name", ""),
                "protocol": f"{prot['text']}, seqlen {prot['seqlen']}, {prot['n_windows']} of "
                            f"{prot['windows_available']} windows, BOS {prot['bos'].split(' ')[0]}, tail dropped"})
        skipped = {r["id"] + "_" + r["arm"]: f"arm(s) {', '.join(a for a in _rule_arms(r) if a not in ppl)} "
                   f"not run at scale {scale}" for r in vcfg["rules"] if any(a not in ppl for a in _rule_arms(r))}
        verdicts = {GROUP: {r["id"] + "_" + r["arm"]: self._verdict(r, ppl, boot, vcfg, paper)
                            for r in vcfg["rules"] if r["id"] + "_" + r["arm"] not in skipped}}
        # the subject's own perplexity (the arm with no compress step), same protocol, on every row
        refs = [r["perplexity"] for r in rows if r["method"] == "none (reference)"]
        for r in rows:
            r["reference_perplexity"] = refs[0] if refs else ""
        write_csv(out_csv, CSV_FIELDS, rows)
        payload = {"claim": claim_name, "scale": scale, "models": [GROUP], "tasks": [], "missing_tasks": {},
                   "arms": arms, "metrics": flat, "verdicts": verdicts, "skipped_rules": skipped, "verdict_config": vcfg,
                   "reference": s.get("reference", ""), "subject": s.get("subject"),
                   "devices": sorted({res.get("device_name", "cpu") for a in arms for res in by[a].values()})}
        write_json(out_json, payload)
        self._plot(out_png, claim_name, scale, rows)
        return payload

    def _verdict(self, rule: dict[str, Any], ppl: dict[str, float], boot: dict[str, np.ndarray],
                 vcfg: dict[str, Any], paper: dict[str, float]) -> dict[str, Any]:
        kind = rule["kind"]
        names = _rule_arms(rule)
        sentence = rule.get("claim", "")

        def stat(p: dict[str, Any]) -> Any:
            if kind == "lower":
                return p[rule["arm"]] - p[rule["than"]]
            if kind == "gap_fraction":
                return (p[rule["base"]] - p[rule["arm"]]) / (p[rule["base"]] - p[rule["ref"]])
            if kind == "ratio":
                return p[rule["arm"]] / p[rule["than"]]
            return abs(np.log(p[rule["arm"]]) - np.log(p[rule["than"]]))

        est = float(stat(ppl))
        se = float(np.std(stat(boot), ddof=1))
        threshold, direction = {"lower": (0.0, "<="), "gap_fraction": (rule.get("min"), ">="),
                                "ratio": (rule.get("min"), ">="), "log_close": (rule.get("max"), "<=")}[kind]
        out = {"claim": sentence, "kind": kind, "arms": names,
               **threshold_verdict(est, se, float(threshold), float(vcfg["z"]), direction)}
        if all(a in paper for a in names):
            out["paper_estimate"] = float(stat({a: paper[a] for a in names}))
        out["se_source"] = "paired bootstrap over evaluation windows"
        return out

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        group = result.get("verdicts", {}).get(GROUP, {})
        hit = next((v for k, v in group.items() if k.startswith(self.headline_rule + "_")), None)
        rows = ([{"model": result.get("subject") or GROUP, "reproduced": hit.get("estimate"),
                  "verdicts": headline_verdicts(group)}] if result.get("metrics") else [])
        return {"quantity": self.quantity, "tasks": [], "paper_same_tasks": hit.get("paper_estimate") if hit else None,
                "paper_all_tasks": None, "paper_all_task_names": [], "rows": rows}

    def _plot(self, path: str | Path, claim_name: str, scale: str, rows: list[dict[str, Any]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ref = [r for r in rows if r["method"] == "none (reference)"]
        for r in ref:
            ax.axhline(r["perplexity"], color="gray", ls="--", lw=1, label=f"{r['arm']} (reference)")
        methods = sorted({r["method"] for r in rows} - {"none (reference)"})
        for m in methods:
            pts = sorted((float(r[self.x_axis]), r["perplexity"], r["perplexity_se"], r["arm"]) for r in rows
                         if r["method"] == m and r[self.x_axis] not in ("", None))
            if not pts:
                continue
            xs, ys, es, labels = zip(*pts, strict=True)
            ax.errorbar(xs, ys, yerr=[2 * e for e in es], marker="o", capsize=3, label=m)
        ax.set_yscale("log")
        ax.set_xlabel(self.x_label)
        ax.set_ylabel("WikiText-2 perplexity (log scale; bars: 2 bootstrap SE)")
        ax.set_title(f"{claim_name} ({scale})", fontsize=10)
        ax.legend(fontsize=8)
        save_figure(fig, path)


def _rule_arms(rule: dict[str, Any]) -> list[str]:
    return [rule[k] for k in ("arm", "than", "base", "ref") if k in rule]


def _protocol_key(result: dict[str, Any]) -> str:
    p = result["metrics"]["protocol"]
    return f"{result['spec']['model']['name']}|{p['seqlen']}|{p['n_windows']}|{p['text_sha256']}"
