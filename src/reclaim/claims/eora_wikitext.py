"""Claim: EoRA's eigenspace-projected low-rank compensation beats plain SVD compensation of
the same compression error at every rank (Liu et al., NVIDIA, arXiv 2410.21271, Sec. 4; the
SVD baseline is ZeroQuant-V2's LoRC, arXiv 2303.08302). The paper's per-rank numbers were not
read (notes, Sec. 3.7: unverified), so the claim has no paper_results; its verdicts are
orderings computed here.

Arms: a compressed model (W3 weights: RTN g64 at smoke, GPTQ at small and paper; magnitude
2:4 pruning), the same model plus SVD or EoRA factors at ranks 8, 32 (128 at small/paper),
the uncompensated model, and the reference. Rules (reclaim.claims._lm_compression, kind
``lower``): ppl(EoRA r) < ppl(SVD r) for each (base, rank); inconclusive when the pair's
difference is within one paired-bootstrap SE (``z: 1``, notes Sec. 3.7). ``every_rank_<base>``
combines them per base: holds if every rank holds, does not hold if any rank does not hold,
inconclusive otherwise. Plot: perplexity vs rank per (method, base); uncompensated bases and
the reference as horizontal lines.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from reclaim.claims._common import save_figure
from reclaim.claims._lm_compression import GROUP, PerplexityClaim
from reclaim.io import write_json

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


class EoRAClaim(PerplexityClaim):
    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        payload = super().aggregate_runs(claim_name, claim, scale, runs, out_csv, out_json, out_png)
        group = payload["verdicts"][GROUP]
        by_base: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for rule in claim.get("verdict", {}).get("rules", []):
            key = f"{rule['id']}_{rule['arm']}"
            if rule.get("every_rank") and key in group:
                by_base[rule["every_rank"]].append((key, group[key]))
        for base, items in by_base.items():
            verdicts = [v["verdict"] for _, v in items]
            overall = FAILS if FAILS in verdicts else HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE
            worst = max((v for _, v in items), key=lambda v: v["estimate"])  # the rank closest to failing
            group[f"every_rank_{base}"] = {
                **{k: worst[k] for k in ("estimate", "se", "z", "threshold", "direction", "lower", "upper")},
                "claim": f"EoRA perplexity below SVD at every rank tested on {base}", "kind": "all",
                "arms": sorted({a for _, v in items for a in v["arms"]}), "rules": [k for k, _ in items],
                "verdict": overall, "se_source": worst.get("se_source"),
                "rule": "holds if every rank's rule holds, does not hold if any does not hold, inconclusive "
                        "otherwise; estimate and interval: the rank with the largest ppl(EoRA) - ppl(SVD)"}
        write_json(out_json, payload)
        return payload

    def _plot(self, path: str | Path, claim_name: str, scale: str, rows: list[dict[str, Any]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        lines: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
        for r in rows:
            if r["method"] == "none (reference)":
                ax.axhline(r["perplexity"], color="gray", ls="--", lw=1, label=f"{r['arm']} (reference)")
            elif r["rank"] in ("", None):
                ax.axhline(r["perplexity"], color="black", ls=":", lw=1, label=f"{r['arm']} (uncompensated)")
            else:
                lines[(r["method"], r["base_method"])].append((float(r["rank"]), r["perplexity"], r["perplexity_se"]))
        for i, ((method, base), pts) in enumerate(sorted(lines.items())):
            xs, ys, es = zip(*sorted(pts), strict=True)
            ax.errorbar(xs, ys, yerr=[2 * e for e in es], marker="o", capsize=3, color=colors[i % len(colors)],
                        ls="-" if method == "eora" else "--", label=f"{method} on {base}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("rank of the compensation (per Linear)")
        ax.set_ylabel("WikiText-2 perplexity (log scale; bars: 2 bootstrap SE)")
        ax.set_title(f"{claim_name} ({scale})", fontsize=10)
        ax.legend(fontsize=7)
        save_figure(fig, path)


AGGREGATOR = EoRAClaim({"z": 1.0}, headline_rule="every", x_axis="rank", x_label="rank",
                       quantity="EoRA vs SVD compensation, worst rank: ppl(EoRA) - ppl(SVD)")
