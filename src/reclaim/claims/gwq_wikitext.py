"""Claim: GWQ's gradient-located 1 % of 16-bit weights beats the same 1 % chosen by |W|, by
|W| * ||X|| and at random, and beats GPTQ and AWQ at 3 bits (arXiv 2411.00850).

**Unverified**: the algorithm is a reading of the paper's abstract (notes, Sec. 3.4; no
official code) and no per-model number was read, so there are no paper_results; every verdict
is an ordering computed here. The selection ablations are at an equal bit budget (same
fraction, same quantizer); GPTQ/AWQ W3 store fewer bits than GWQ (the 16-bit outliers and
their indices cost about 0.3 bits per weight at 1 %, see reclaim.compress.gwq), so the plot
puts every arm at its stored bits. The GPTQ, AWQ and RTN arms are the awq_wikitext claim's
steps, so the jobs are shared. Rules (reclaim.claims._lm_compression, kind ``lower``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.claims._common import save_figure
from reclaim.claims._lm_compression import PerplexityClaim


class GWQClaim(PerplexityClaim):
    def _plot(self, path: str | Path, claim_name: str, scale: str, rows: list[dict[str, Any]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for r in rows:
            if r["method"] == "none (reference)" or r["stored_bits"] in ("", None):
                ax.axhline(r["perplexity"], color="gray", ls="--", lw=1, label=f"{r['arm']} (reference)")
                continue
            ax.errorbar([float(r["stored_bits"])], [r["perplexity"]], yerr=[[2 * r["perplexity_se"]]] * 2,
                        marker="o" if r["method"] == "gwq" else "s", capsize=3, label=r["arm"])
        ax.set_yscale("log")
        ax.set_xlabel("stored bits per weight (16-bit outliers with their indices counted)")
        ax.set_ylabel("WikiText-2 perplexity (log scale; bars: 2 bootstrap SE)")
        ax.set_title(f"{claim_name} ({scale})", fontsize=10)
        ax.legend(fontsize=7)
        save_figure(fig, path)


AGGREGATOR = GWQClaim({}, headline_rule="g1",
                      quantity="GWQ W3 (gradient 1 %) vs the same 1 % chosen by |W|: ppl difference")
