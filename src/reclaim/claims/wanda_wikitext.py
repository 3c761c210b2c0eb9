"""Claim: pruning by weights and activations (Wanda) matches SparseGPT and beats magnitude
pruning at 50% unstructured and 2:4 sparsity, without any weight update (Sun et al., ICLR 2024,
arXiv 2306.11695; SparseGPT: Frantar & Alistarh, arXiv 2301.00774).

Paper cells: the Llama-2-7B column of the locuslab/wanda README (WikiText-2 at seqlen 4096,
Wanda's ``model.seqlen = max_position_embeddings``): dense 5.12; 50% magnitude 14.89,
SparseGPT 6.51, Wanda 6.42; 2:4 54.59 / 10.17 / 11.02. The paper's LLaMA-7B Table 2 cells
(seqlen 2048: 5.68 / 17.29 / 7.22 / 7.26) are marked unverified in the reference notes and are
not used; the paper scale therefore runs Llama-2-7B at seqlen 4096.

Verdicts (reclaim.claims._lm_compression), per pattern: magnitude's perplexity at least 1.5x
Wanda's and 1.5x SparseGPT's (ratio), and Wanda within |log ratio| <= 0.05 of SparseGPT
(log_close; the README's 2:4 cells themselves give 0.080, so that rule is expected to fail at
2:4 even on the paper's subject). The paper ties Wanda's edge to large activation outliers
that emerge at scale: on SmolLM2-135M (smoke) SparseGPT is expected at or below Wanda.
The plot shows each method's perplexity per pattern, with the dense reference as a line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.claims._common import save_figure
from reclaim.claims._lm_compression import PerplexityClaim


class PruningClaim(PerplexityClaim):
    """Grouped bars (one group per sparsity pattern) instead of a line over an x axis: both
    patterns are 50% sparse."""

    def _plot(self, path: str | Path, claim_name: str, scale: str, rows: list[dict[str, Any]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for r in rows:
            if r["method"] == "none (reference)":
                ax.axhline(r["perplexity"], color="gray", ls="--", lw=1, label=f"{r['arm']} (reference)")
        pruned = [r for r in rows if r["method"] != "none (reference)"]
        patterns = list(dict.fromkeys(f"{r['pattern']} {r['sparsity']}" for r in pruned))
        methods = list(dict.fromkeys(r["method"] for r in pruned))
        width = 0.8 / max(len(methods), 1)
        for j, m in enumerate(methods):
            pts = [(patterns.index(f"{r['pattern']} {r['sparsity']}"), r["perplexity"], r["perplexity_se"])
                   for r in pruned if r["method"] == m]
            if pts:
                xs, ys, es = zip(*pts, strict=True)
                ax.bar([x + (j - (len(methods) - 1) / 2) * width for x in xs], ys, width, yerr=[2 * e for e in es],
                       capsize=3, label=m)
        ax.set_xticks(range(len(patterns)), patterns)
        ax.set_yscale("log")
        ax.set_xlabel("pattern and sparsity")
        ax.set_ylabel("WikiText-2 perplexity (log scale; bars: 2 bootstrap SE)")
        ax.set_title(f"{claim_name} ({scale})", fontsize=10)
        ax.legend(fontsize=8)
        save_figure(fig, path)


AGGREGATOR = PruningClaim({}, headline_rule="a50", quantity="magnitude / Wanda perplexity ratio at 50% unstructured")
