"""Claim: fluctuation-based adaptive structured pruning (FLAP) loses far less perplexity than
structured Wanda (Wanda-sp) at the same share of removed structure, without retraining (An et
al., AAAI 2024, arXiv 2312.11983; FLAP README figure, WikiText-2 at seqlen 128, FLAP's and
LLM-Pruner's protocol: LLaMA-7B dense 12.62; 20% Wanda-sp 22.12, FLAP 14.62; 30% 38.88 /
17.62; 50% 366.43 / 31.80).

Verdicts (reclaim.claims._lm_compression), per ratio: FLAP below Wanda-sp in perplexity, and
the share of Wanda-sp's loss that FLAP avoids, g = (Wanda-sp - FLAP) / (Wanda-sp - dense) >=
0.25 (0.79 in the paper's 20% cells, shown beside ours). magnitude-sp (calibration-free channel
norms) is a reference row, not a paper row.

What applies to a grouped-query-attention subject (SmolLM2-135M: 9 query heads share 3 KV
heads): FLAP's fluctuation metric, per-layer standardisation, the global (adaptive-across-
layers) channel ranking and the bias compensation, all on MLP channels; head pruning and the
head-vs-channel ranking of AL-AM do not (FLAP's head removal assumes one KV head per query
head, CASIA-IVA-Lab/FLAP#14), so at smoke and small scale only MLP channels are removed and
``sparsity`` is the share of MLP channels (= of MLP weights). Every row's ``scope`` says so.
The plot is perplexity against that share, one line per method, the dense model as a line.
"""

from __future__ import annotations

from reclaim.claims._lm_compression import PerplexityClaim

AGGREGATOR = PerplexityClaim({}, headline_rule="g20",
                             quantity="share of Wanda-sp's 20% structured-pruning perplexity gap that FLAP avoids",
                             x_axis="sparsity", x_label="share of MLP channels removed")
